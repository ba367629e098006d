//! The OpenAPI 3.1 document of the REST routes, generated from the same descriptors that
//! drive the routing (3.1, because 3.0 says a DELETE body is ignored and the seed's
//! remove-multiple sends its ids in one).

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use crate::routes::Route;

/// Every error status a route can answer, each with the one error body.
pub const ERROR_STATUSES: [u16; 14] = [400, 401, 403, 404, 405, 409, 412, 413, 429, 499, 500, 501, 503, 504];

fn schema_name(message: &MessageDescriptor) -> String {
    message.full_name().replace('.', "_")
}

/// The JSON schema of one field's value (proto3 JSON mapping).
fn kind_schema(kind: &Kind, messages: &mut BTreeSet<String>, pending: &mut Vec<MessageDescriptor>) -> Value {
    match kind {
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({"type": "integer", "format": "int32"}),
        Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int32", "minimum": 0}),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
        }
        Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "int64", "pattern": "^[0-9]+$"}),
        Kind::Float | Kind::Double => json!({"type": "number"}),
        Kind::Enum(e) => json!({"type": "string", "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>()}),
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
            json!({"type": "string", "format": "date-time"})
        }
        Kind::Message(m) => {
            if messages.insert(schema_name(m)) {
                pending.push(m.clone());
            }
            json!({"$ref": format!("#/components/schemas/{}", schema_name(m))})
        }
    }
}

fn field_schema(
    field: &FieldDescriptor,
    messages: &mut BTreeSet<String>,
    pending: &mut Vec<MessageDescriptor>,
) -> Value {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else { return json!({"type": "object"}) };
        let value = entry.map_entry_value_field();
        return json!({"type": "object", "additionalProperties": kind_schema(&value.kind(), messages, pending)});
    }
    let mut item = kind_schema(&field.kind(), messages, pending);
    // why: ids are decimal strings on the wire; saying so lets clients (and fuzzers) send real ones.
    let name = field.name();
    let not_snowflake = ["client_msg_id", "session_id", "upload_id"].iter().any(|n| name.contains(n));
    if field.kind() == Kind::String && (name.ends_with("_id") || name.ends_with("_ids")) && !not_snowflake {
        // empty where the contract gives it a meaning (e.g. "join myself", "from the start")
        item["pattern"] = json!("^([0-9]{1,20})?$");
    }
    if field.is_list() { json!({"type": "array", "items": item}) } else { item }
}

fn message_schema(
    message: &MessageDescriptor,
    messages: &mut BTreeSet<String>,
    pending: &mut Vec<MessageDescriptor>,
) -> Value {
    let mut properties = Map::new();
    for field in message.fields() {
        properties.insert(field.json_name().to_owned(), field_schema(&field, messages, pending));
    }
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["code", "status", "message", "details"],
        "properties": {
            "code": {"type": "integer", "description": "the HTTP status"},
            "status": {"type": "string", "description": "e.g. NOT_FOUND"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object"}},
        },
    })
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error")
}

/// The document for `routes`.
pub fn document(routes: &[Route]) -> Value {
    let mut messages = BTreeSet::new();
    let mut pending = Vec::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in routes {
        let path_params = route.path_params();
        let mut parameters = Vec::new();
        for name in &path_params {
            let schema = route
                .input
                .get_field_by_name(name)
                .map_or(json!({"type": "string"}), |f| field_schema(&f, &mut messages, &mut pending));
            parameters.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
        if !route.body {
            for field in route.input.fields() {
                if path_params.iter().any(|p| p == field.name()) {
                    continue;
                }
                let schema = field_schema(&field, &mut messages, &mut pending);
                let mut parameter =
                    json!({"name": field.json_name(), "in": "query", "required": false, "schema": schema});
                if field.is_list() {
                    parameter["style"] = json!("form");
                    parameter["explode"] = json!(true);
                }
                parameters.push(parameter);
            }
        }
        let output = kind_schema(&Kind::Message(route.output.clone()), &mut messages, &mut pending);
        let mut responses = Map::new();
        responses
            .insert("200".into(), json!({"description": "OK", "content": {"application/json": {"schema": output}}}));
        for status in ERROR_STATUSES {
            let mut response = json!({"description": reason(status), "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
            if status == 429 {
                response["headers"] =
                    json!({"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}});
            }
            responses.insert(status.to_string(), response);
        }
        let (service, method) = route.grpc_path.trim_start_matches('/').split_once('/').unwrap_or_default();
        let mut operation = json!({
            "operationId": format!("{}_{method}", service.rsplit('.').next().unwrap_or(service)),
            "tags": [service.rsplit('.').next().unwrap_or(service)],
            "summary": format!("{service}.{method}"),
            "parameters": parameters,
            "responses": responses,
            "security": if route.open { json!([]) } else { json!([{"bearer": []}]) },
        });
        if route.body {
            // why: fields bound by the path are not part of the body
            let mut input = message_schema(&route.input, &mut messages, &mut pending);
            if let Some(properties) = input["properties"].as_object_mut() {
                for name in &path_params {
                    if let Some(field) = route.input.get_field_by_name(name) {
                        properties.remove(field.json_name());
                    }
                }
            }
            operation["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": input}}});
        }
        paths.entry(route.path.clone()).or_default().insert(route.method.as_str().to_lowercase(), operation);
    }
    let mut schemas = Map::new();
    schemas.insert("Error".into(), error_schema());
    while let Some(message) = pending.pop() {
        let schema = message_schema(&message, &mut messages, &mut pending);
        schemas.insert(schema_name(&message), schema);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "chatmesh REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Generated from the google.api.http options of the gRPC contracts in proto/. JSON follows the proto3 JSON mapping; errors share one body.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes_with_their_errors() {
        let routes = crate::routes::routes();
        let doc = document(&routes);
        assert_eq!(doc["openapi"], "3.1.0");
        let listed: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
            .collect();
        let served: BTreeSet<(String, String)> =
            routes.iter().map(|r| (r.method.to_string(), r.path.clone())).collect();
        assert_eq!(listed, served);
        let remove = &doc["paths"]["/api/v1/chats/remove-multiple"]["delete"];
        assert!(remove["requestBody"].is_object(), "a DELETE with a body, as the seed has");
        for status in ERROR_STATUSES {
            assert!(remove["responses"][status.to_string()].is_object());
        }
        assert_eq!(doc["paths"]["/api/v1/users"]["post"]["security"], json!([]), "open routes need no token");
        let chat = &doc["components"]["schemas"]["chatmesh_chat_v1_Chat"]["properties"];
        assert_eq!(chat["chatId"]["type"], "string");
        assert_eq!(chat["createdAt"]["format"], "date-time");
    }
}
