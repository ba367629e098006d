//! The REST gateway's JSON → protobuf path: a request's path parameters, query and JSON body
//! become the route's request message, following the proto3 JSON mapping (unknown fields are
//! refused, so a client cannot set a field the contract does not give it).

use prost_reflect::{DeserializeOptions, DynamicMessage, Kind, MessageDescriptor};
use serde_json::{Map, Value};

/// The request message of a route taking `input` from `path` parameters, the `query` and, when
/// `body` is the message (`body: "*"`), the JSON `json_body`. The error is the 400's message.
pub fn request_message(
    input: &MessageDescriptor,
    takes_body: bool,
    path: &[(&str, &str)],
    query: &[(String, String)],
    json_body: &[u8],
) -> Result<DynamicMessage, String> {
    let json = request_json(input, takes_body, path, query, json_body)?;
    DynamicMessage::deserialize_with_options(input.clone(), json, &DeserializeOptions::new().deny_unknown_fields(true))
        .map_err(|e| format!("invalid request: {e}"))
}

fn request_json(
    input: &MessageDescriptor,
    takes_body: bool,
    path: &[(&str, &str)],
    query: &[(String, String)],
    body: &[u8],
) -> Result<Value, String> {
    let mut fields = Map::new();
    // why: no body at all is an empty message; white space alone is not JSON and is refused
    if takes_body && !body.is_empty() {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => fields = object,
            Ok(_) => return Err("the body must be a JSON object".into()),
            Err(e) => return Err(format!("malformed JSON: {e}")),
        }
    }
    if takes_body && !query.is_empty() {
        // why: with `body: "*"` everything not in the path is the body; credentials never ride URLs
        return Err("this route takes its fields in the JSON body, not the query".into());
    }
    for (name, value) in query {
        let field = input
            .get_field_by_json_name(name)
            .or_else(|| input.get_field_by_name(name))
            .ok_or_else(|| format!("unknown query parameter {name:?}"))?;
        let value = match field.kind() {
            Kind::Bool => match value.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(format!("{name}: must be true or false")),
            },
            _ => Value::String(value.clone()),
        };
        if field.is_list() {
            let entry = fields.entry(field.json_name().to_owned()).or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(values) = entry {
                values.push(value);
            }
        } else {
            fields.insert(field.json_name().to_owned(), value);
        }
    }
    for (name, value) in path {
        let json_name = input.get_field_by_name(name).map_or((*name).to_owned(), |f| f.json_name().to_owned());
        let in_body = fields.get(&json_name).or_else(|| fields.get(*name)).and_then(Value::as_str);
        if in_body.is_some_and(|v| v != *value) {
            return Err(format!("{json_name}: the body names another resource than the path"));
        }
        fields.remove(*name);
        fields.insert(json_name, Value::String((*value).to_owned()));
    }
    Ok(Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str) -> MessageDescriptor {
        chatmesh_api::descriptor_pool().get_message_by_name(name).expect("a message")
    }

    #[test]
    fn path_query_and_body_make_one_message() {
        let chats = input("chatmesh.chat.v1.ListChatsRequest");
        let query = [("pageSize".to_owned(), "5".to_owned())];
        let message = request_message(&chats, false, &[("channel_id", "42")], &query, b"").unwrap();
        assert_eq!(message.get_field_by_name("channel_id").unwrap().as_str(), Some("42"));
        let create = input("chatmesh.chat.v1.CreateChatRequest");
        let refused = request_message(&create, true, &[], &[], br#"{"text":"hi","senderId":"7"}"#).unwrap_err();
        assert!(refused.contains("senderId"), "{refused}");
        let clash = request_message(&chats, false, &[("channel_id", "42")], &[("channelId".into(), "9".into())], b"");
        assert!(clash.is_ok() || clash.unwrap_err().contains("channel"));
        assert!(request_message(&create, true, &[], &[], b"[1]").unwrap_err().contains("JSON object"));
    }

    #[test]
    fn no_body_is_an_empty_message_and_white_space_alone_is_malformed() {
        let unfollow = input("chatmesh.user.v1.UnfollowUserRequest");
        let message = request_message(&unfollow, true, &[("user_id", "42")], &[], b"").unwrap();
        assert_eq!(message.get_field_by_name("user_id").unwrap().as_str(), Some("42"));
        let refused = request_message(&unfollow, true, &[("user_id", "42")], &[], b" \n").unwrap_err();
        assert!(refused.starts_with("malformed JSON"), "{refused}");
    }
}
