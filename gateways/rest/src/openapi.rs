//! The OpenAPI 3.1 document of the REST routes, generated from the descriptors that drive the
//! routing and from the contracts' annotations (docs/contracts.md): field behaviours (AIP-203)
//! become `required`, `readOnly` and `writeOnly`; protovalidate rules become lengths, patterns,
//! formats, ranges, item counts and enums; an id one operation returns becomes a link to the
//! operations that take it. 3.1, because 3.0 says a DELETE body is ignored and the seed's
//! remove-multiple sends its ids in one.

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    Value as Proto,
};
use serde_json::{Map, Value, json};

use crate::routes::Route;

/// Every error status a route can answer, each with the one error body.
pub const ERROR_STATUSES: [u16; 13] = [400, 401, 403, 404, 405, 409, 413, 429, 499, 500, 501, 503, 504];

/// `buf.validate.Ignore.IGNORE_IF_ZERO_VALUE`: the rules apply only to a non-empty value.
const IGNORE_IF_ZERO_VALUE: i32 = 1;

/// Where a schema is used: the document differs only in what a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// A JSON request body: proto3 JSON, so `null` stands for "not given".
    Body,
    /// A query or path parameter: a string on the wire, never `null`.
    Parameter,
    /// A response: what the server sends (defaults left out, never `null`).
    Response,
}

/// What the contract says about one field: its behaviours (`google.api.field_behavior`) and
/// its rules (`buf.validate.field`).
struct Contract {
    behaviors: BTreeSet<String>,
    rules: Option<DynamicMessage>,
}

impl Contract {
    fn of(field: &FieldDescriptor) -> Self {
        let pool = field.parent_pool();
        let options = field.options();
        let extension = |name: &str| {
            pool.get_extension_by_name(name)
                .filter(|e| options.has_extension(e))
                .map(|e| (options.get_extension(&e).into_owned(), e))
        };
        let behaviors = match extension("google.api.field_behavior") {
            Some((Proto::List(values), e)) => values
                .iter()
                .filter_map(|v| match (e.kind(), v.as_enum_number()) {
                    (Kind::Enum(behavior), Some(n)) => behavior.get_value(n).map(|v| v.name().to_owned()),
                    _ => None,
                })
                .collect(),
            _ => BTreeSet::new(),
        };
        let rules = match extension("buf.validate.field") {
            Some((Proto::Message(rules), _)) => Some(rules),
            _ => None,
        };
        Self { behaviors, rules }
    }

    fn has(&self, behavior: &str) -> bool {
        self.behaviors.contains(behavior)
    }

    /// REQUIRED, or protovalidate's `required`: the zero value is refused.
    fn required(&self) -> bool {
        self.has("REQUIRED")
            || self.rules.as_ref().and_then(|r| rule(r, "required")).and_then(|v| v.as_bool()) == Some(true)
    }

    fn ignore_if_zero(&self) -> bool {
        self.rules.as_ref().and_then(|r| rule(r, "ignore")).and_then(|v| v.as_enum_number())
            == Some(IGNORE_IF_ZERO_VALUE)
    }
}

/// A rule that is set (not merely defaulted).
fn rule(rules: &DynamicMessage, name: &str) -> Option<Proto> {
    rules.has_field_by_name(name).then(|| rules.get_field_by_name(name)).flatten().map(|v| v.into_owned())
}

fn rule_message(rules: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    match rule(rules, name) {
        Some(Proto::Message(message)) => Some(message),
        _ => None,
    }
}

fn integer(value: &Proto) -> Option<i128> {
    match value {
        Proto::I32(v) => Some((*v).into()),
        Proto::I64(v) => Some((*v).into()),
        Proto::U32(v) => Some((*v).into()),
        Proto::U64(v) => Some((*v).into()),
        Proto::EnumNumber(v) => Some((*v).into()),
        _ => None,
    }
}

fn integers(value: Option<Proto>) -> Vec<i128> {
    match value {
        Some(Proto::List(values)) => values.iter().filter_map(integer).collect(),
        Some(value) => integer(&value).into_iter().collect(),
        None => Vec::new(),
    }
}

/// An RE2 pattern as ECMA-262 and Python's `re` read it: `\x{HHHH}` becomes `\uHHHH`.
fn ecma_pattern(re2: &str) -> String {
    let mut out = String::with_capacity(re2.len());
    let mut rest = re2;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        if let Some(hex) = escape.strip_prefix("\\x{").and_then(|s| s.split_once('}')).map(|(hex, _)| hex)
            && (1..=4).contains(&hex.len())
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            out.push_str(&format!("\\u{hex:0>4}"));
            rest = &escape[3 + hex.len() + 1..];
        } else {
            // any other escape is the same in all three dialects: copy it whole
            let len = escape.chars().nth(1).map_or(1, |c| 1 + c.len_utf8());
            out.push_str(&escape[..len]);
            rest = &escape[len..];
        }
    }
    out.push_str(rest);
    out
}

/// The leading comment of the element at `path` in `file`, as one paragraph.
fn comment(pool: &DescriptorPool, file: &str, path: &[i32]) -> Option<String> {
    let file = pool.get_file_by_name(file)?;
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

fn field_comment(field: &FieldDescriptor) -> Option<String> {
    comment(field.parent_pool(), field.parent_file().name(), field.path())
}

/// A message's name in `components.schemas`: its own (`Channel`), or its full name where two
/// packages have messages of that name.
fn schema_name(message: &MessageDescriptor) -> String {
    let namesakes = message.parent_pool().all_messages().filter(|m| m.name() == message.name()).count();
    if namesakes == 1 { message.name().to_owned() } else { message.full_name().to_owned() }
}

/// Adds `null` to what a schema accepts.
fn nullable(mut schema: Value) -> Value {
    let Some(object) = schema.as_object_mut() else { return schema };
    let types = match object.get("type") {
        Some(Value::String(single)) => json!([single, "null"]),
        Some(Value::Array(types)) => Value::Array(types.iter().cloned().chain([json!("null")]).collect()),
        _ => return json!({"anyOf": [schema, {"type": "null"}]}),
    };
    object.insert("type".into(), types);
    if let Some(values) = object.get_mut("enum").and_then(Value::as_array_mut) {
        values.push(Value::Null);
    }
    schema
}

/// The messages referenced so far, written into `components.schemas` at the end.
#[derive(Default)]
struct Components {
    named: BTreeSet<String>,
    pending: Vec<MessageDescriptor>,
}

impl Components {
    fn reference(&mut self, message: &MessageDescriptor) -> Value {
        if self.named.insert(schema_name(message)) {
            self.pending.push(message.clone());
        }
        json!({"$ref": format!("#/components/schemas/{}", schema_name(message))})
    }
}

/// The JSON type of an integer kind and its range (proto3 JSON writes 64-bit integers as strings).
fn integer_range(kind: &Kind) -> Option<(&'static str, i128, i128)> {
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Some(("int32", i32::MIN.into(), i32::MAX.into())),
        Kind::Uint32 | Kind::Fixed32 => Some(("uint32", 0, u32::MAX.into())),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Some(("int64", i64::MIN.into(), i64::MAX.into())),
        Kind::Uint64 | Kind::Fixed64 => Some(("uint64", 0, u64::MAX.into())),
        _ => None,
    }
}

/// The rule message of a kind inside `FieldRules` (`string`, `int32`, …).
fn rules_of_kind(kind: &Kind) -> &'static str {
    match kind {
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Bool => "bool",
        Kind::Int32 => "int32",
        Kind::Sint32 => "sint32",
        Kind::Sfixed32 => "sfixed32",
        Kind::Uint32 => "uint32",
        Kind::Fixed32 => "fixed32",
        Kind::Int64 => "int64",
        Kind::Sint64 => "sint64",
        Kind::Sfixed64 => "sfixed64",
        Kind::Uint64 => "uint64",
        Kind::Fixed64 => "fixed64",
        Kind::Float => "float",
        Kind::Double => "double",
        Kind::Enum(_) => "enum",
        Kind::Message(_) => "message",
    }
}

/// The values of `e` the rules allow (all, when they do not restrict them).
fn allowed_enum_values(
    e: &EnumDescriptor,
    rules: Option<&DynamicMessage>,
    required: bool,
    ignore_zero: bool,
) -> Vec<(String, i32)> {
    let enum_rules = rules.and_then(|r| rule_message(r, "enum"));
    let only = integers(enum_rules.as_ref().and_then(|r| rule(r, "in")));
    let only = if only.is_empty() { integers(enum_rules.as_ref().and_then(|r| rule(r, "const"))) } else { only };
    let not = integers(enum_rules.as_ref().and_then(|r| rule(r, "not_in")));
    e.values()
        .filter(|v| {
            let n = i128::from(v.number());
            let zero_ignored = n == 0 && ignore_zero && !required;
            zero_ignored || ((only.is_empty() || only.contains(&n)) && !not.contains(&n) && !(required && n == 0))
        })
        .map(|v| (v.name().to_owned(), v.number()))
        .collect()
}

/// The schema of one value of `kind` (a field's value, or one item of a list) under `rules`
/// (the `FieldRules` that apply to it), and whether its zero value is accepted beside them.
fn value_schema(
    kind: &Kind,
    rules: Option<&DynamicMessage>,
    required: bool,
    ignore_zero: bool,
    side: Side,
    components: &mut Components,
) -> Value {
    let kind_rules = rules.and_then(|r| rule_message(r, rules_of_kind(kind)));
    let kind_rules = kind_rules.as_ref();
    // `constraints` are the rules' keywords, applied only to a non-empty value when the field
    // ignores its zero value
    let mut constraints = Map::new();
    let (mut schema, zero) = match kind {
        Kind::String => {
            if let Some(r) = kind_rules {
                let len = rule(r, "len").as_ref().and_then(integer);
                if let Some(min) = len.or_else(|| rule(r, "min_len").as_ref().and_then(integer)) {
                    constraints.insert("minLength".into(), json!(min));
                }
                if let Some(max) = len.or_else(|| rule(r, "max_len").as_ref().and_then(integer)) {
                    constraints.insert("maxLength".into(), json!(max));
                }
                if rule(r, "email").and_then(|v| v.as_bool()) == Some(true) {
                    constraints.insert("format".into(), json!("email"));
                    if let Some(max) = rule(r, "max_bytes").as_ref().and_then(integer) {
                        let max =
                            constraints.get("maxLength").and_then(Value::as_i64).map_or(max, |m| max.min(m.into()));
                        constraints.insert("maxLength".into(), json!(max));
                    }
                }
                if let Some(Proto::String(pattern)) = rule(r, "pattern") {
                    constraints.insert("pattern".into(), json!(ecma_pattern(&pattern)));
                }
                if let Some(Proto::List(values)) = rule(r, "in") {
                    constraints.insert("enum".into(), values.iter().filter_map(|v| v.as_str()).collect());
                }
                if let Some(Proto::String(value)) = rule(r, "const") {
                    constraints.insert("const".into(), json!(value));
                }
            }
            if required && constraints.get("minLength").and_then(Value::as_u64).unwrap_or(0) == 0 {
                constraints.insert("minLength".into(), json!(1));
            }
            (json!({"type": "string"}), json!(""))
        }
        Kind::Bytes => (json!({"type": "string", "contentEncoding": "base64"}), json!("")),
        Kind::Bool => (json!({"type": "boolean"}), json!(false)),
        Kind::Float | Kind::Double => (json!({"type": "number"}), json!(0)),
        Kind::Enum(e) if side == Side::Response => (
            json!({"type": "string", "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>()}),
            Value::Null,
        ),
        Kind::Enum(e) => {
            let restricted = kind_rules.is_some() || required;
            let allowed = allowed_enum_values(e, rules, required, ignore_zero);
            let names: Vec<Value> = allowed.iter().map(|(name, _)| json!(name)).collect();
            let schema = if side == Side::Parameter || restricted {
                // why: proto3 JSON takes an enum by name or by number, a query value by name only
                let numbers = allowed.iter().map(|(_, n)| json!(n));
                let values: Vec<Value> =
                    if side == Side::Body { names.into_iter().chain(numbers).collect() } else { names };
                let types = if side == Side::Body { json!(["string", "integer"]) } else { json!("string") };
                json!({"type": types, "enum": values})
            } else {
                // any number is taken as is (an unknown value is kept, not refused)
                json!({"anyOf": [{"type": "string", "enum": names}, {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}]})
            };
            (schema, Value::Null)
        }
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
            let mut schema = json!({"type": "string", "format": "date-time"});
            if let Some(r) = rules.and_then(|r| rule_message(r, "timestamp")) {
                relative_to_now(&r, &mut schema);
            }
            (schema, Value::Null)
        }
        Kind::Message(m) => (components.reference(m), Value::Null),
        _ => {
            let Some((format, lowest, highest)) = integer_range(kind) else { return json!({}) };
            let (mut low, mut high) = (lowest, highest);
            if let Some(r) = kind_rules {
                let bound = |name: &str| rule(r, name).as_ref().and_then(integer);
                if let Some(v) = bound("gt") {
                    low = low.max(v + 1);
                }
                if let Some(v) = bound("gte") {
                    low = low.max(v);
                }
                if let Some(v) = bound("lt") {
                    high = high.min(v - 1);
                }
                if let Some(v) = bound("lte") {
                    high = high.min(v);
                }
                let only = integers(rule(r, "in"));
                let only = if only.is_empty() { integers(rule(r, "const")) } else { only };
                if !only.is_empty() {
                    constraints.insert("enum".into(), json!(only.iter().map(|v| *v as i64).collect::<Vec<_>>()));
                }
            }
            if required && low <= 0 && high >= 0 {
                constraints.insert("not".into(), json!({"const": 0}));
            }
            let wide = format.ends_with("64");
            if side == Side::Response && wide {
                // proto3 JSON writes 64-bit integers as decimal strings
                let pattern = if lowest < 0 { "^-?[0-9]+$" } else { "^[0-9]+$" };
                return json!({"type": "string", "format": format, "pattern": pattern});
            }
            let mut schema = json!({"type": "integer", "format": format});
            // why: a bound the rules do not set is the type's own (generated values must fit it)
            schema["minimum"] = json!(low as i64);
            if high > i64::MAX.into() {
                schema["maximum"] = json!(high as u64);
            } else {
                schema["maximum"] = json!(high as i64);
            }
            (schema, json!(0))
        }
    };
    if constraints.is_empty() {
        return schema;
    }
    if ignore_zero && !required && !zero.is_null() {
        schema["anyOf"] = json!([{"const": zero}, Value::Object(constraints)]);
    } else if let Some(object) = schema.as_object_mut() {
        object.extend(constraints);
    }
    schema
}

/// Rules relative to the server's clock, which JSON Schema cannot state: as extension keywords
/// (`x-after-now`, `x-before-now`, `x-within-seconds`), the field's description saying them in
/// words.
fn relative_to_now(rules: &DynamicMessage, schema: &mut Value) {
    if rule(rules, "gt_now").and_then(|v| v.as_bool()) == Some(true) {
        schema["x-after-now"] = json!(true);
    }
    if rule(rules, "lt_now").and_then(|v| v.as_bool()) == Some(true) {
        schema["x-before-now"] = json!(true);
    }
    if let Some(within) = rule_message(rules, "within")
        && let Some(seconds) = rule(&within, "seconds").as_ref().and_then(integer)
    {
        schema["x-within-seconds"] = json!(seconds as i64);
    }
}

/// The schema of a field on `side`: its value (or list of values) under its rules, `null`
/// where proto3 JSON takes it for "not given", and its behaviours.
fn field_schema(field: &FieldDescriptor, side: Side, components: &mut Components) -> Value {
    let contract = Contract::of(field);
    let required = contract.required() && side != Side::Response;
    let ignore_zero = contract.ignore_if_zero();
    let rules = contract.rules.as_ref().filter(|_| side != Side::Response);
    let mut schema = if field.is_map() {
        let Kind::Message(entry) = field.kind() else { return json!({"type": "object"}) };
        let value = entry.map_entry_value_field();
        json!({"type": "object", "additionalProperties": value_schema(&value.kind(), None, false, false, side, components)})
    } else if field.is_list() {
        let repeated = rules.and_then(|r| rule_message(r, "repeated"));
        let items = repeated.as_ref().and_then(|r| rule_message(r, "items"));
        let item_ignores = items.as_ref().and_then(|r| rule(r, "ignore")).and_then(|v| v.as_enum_number())
            == Some(IGNORE_IF_ZERO_VALUE);
        let item = value_schema(&field.kind(), items.as_ref(), false, item_ignores, side, components);
        let mut schema = json!({"type": "array", "items": item});
        let count = |name: &str| repeated.as_ref().and_then(|r| rule(r, name)).as_ref().and_then(integer);
        let min = count("min_items").unwrap_or(0).max(i128::from(required));
        if min > 0 {
            schema["minItems"] = json!(min as u64);
        }
        if let Some(max) = count("max_items") {
            schema["maxItems"] = json!(max as u64);
        }
        if repeated.as_ref().and_then(|r| rule(r, "unique")).and_then(|v| v.as_bool()) == Some(true) {
            schema["uniqueItems"] = json!(true);
        }
        schema
    } else {
        value_schema(&field.kind(), rules, required, ignore_zero, side, components)
    };
    // why: proto3 JSON reads `null` as the field's default, which a field that is not required takes
    if side == Side::Body && !required {
        schema = nullable(schema);
    }
    let Some(object) = schema.as_object_mut() else { return schema };
    // why: a page token (AIP-158) is one the server issued; a format of its own tells clients
    // (and fuzzers) not to make one up
    if field.name() == "page_token" && side != Side::Response {
        object.insert("format".into(), json!("page-token"));
    }
    if contract.has("OUTPUT_ONLY") {
        object.insert("readOnly".into(), json!(true));
    }
    if contract.has("INPUT_ONLY") {
        object.insert("writeOnly".into(), json!(true));
    }
    if let Some(text) = field_comment(field) {
        object.insert("description".into(), json!(text));
    }
    schema
}

/// The schema of a message: a request body (`Side::Body`, minus the fields its path binds)
/// or a component of the responses.
fn message_schema(message: &MessageDescriptor, side: Side, skip: &[String], components: &mut Components) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for field in message.fields() {
        if skip.iter().any(|s| s == field.name()) {
            continue;
        }
        if side == Side::Body && Contract::of(&field).required() {
            required.push(json!(field.json_name()));
        }
        properties.insert(field.json_name().to_owned(), field_schema(&field, side, components));
    }
    let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    if let Some(rules) = rules_between_fields(message.full_name()).filter(|_| side == Side::Body) {
        schema["allOf"] = rules;
    }
    if let Some(text) = comment(message.parent_pool(), message.parent_file().name(), message.path()) {
        schema["description"] = json!(text);
    }
    schema
}

/// The rules between fields of a request body, which no annotation carries (the fields'
/// comments state them, docs/contracts.md): JSON Schema for the body of `message`, so the
/// document is as strict as the server there too.
fn rules_between_fields(message: &str) -> Option<Value> {
    let non_empty =
        |field: &str| json!({"properties": {field: {"type": "string", "minLength": 1}}, "required": [field]});
    let masks = |field: &str| json!({"properties": {"updateMask": {"type": "array", "contains": {"const": field}}}, "required": ["updateMask"]});
    let rules = match message {
        // a direct channel has no name and names the other user; a group or broadcast has a name
        "chatmesh.channel.v1.CreateChannelRequest" => json!([{
            "if": {"properties": {"kind": {"enum": ["CHANNEL_KIND_DIRECT", 2]}}},
            "then": {"properties": {"name": {"enum": ["", null]}, "memberIds": {"type": "array", "minItems": 1, "maxItems": 1}}, "required": ["memberIds"]},
            "else": non_empty("name"),
        }]),
        // a field the mask names is set to the value given: a name and a visibility cannot be cleared
        "chatmesh.channel.v1.UpdateChannelRequest" => json!([
            {"if": masks("name"), "then": non_empty("name")},
            {"if": masks("visibility"), "then": {"properties": {"visibility": {"enum": ["CHANNEL_VISIBILITY_PUBLIC", 1, "CHANNEL_VISIBILITY_PRIVATE", 2]}}, "required": ["visibility"]}},
        ]),
        "chatmesh.user.v1.UpdateMeRequest" => json!([{"if": masks("name"), "then": non_empty("name")}]),
        // text, or attachments, or both
        "chatmesh.chat.v1.CreateChatRequest" => json!([{"anyOf": [
            non_empty("text"),
            {"properties": {"attachmentUploadIds": {"type": "array", "minItems": 1}}, "required": ["attachmentUploadIds"]},
        ]}]),
        // a report names a user, a chat or a status; a chat goes with its channel, a status alone
        "chatmesh.user.v1.CreateReportRequest" => json!([
            {"anyOf": [non_empty("userId"), non_empty("chatId"), non_empty("statusId")]},
            {"if": non_empty("statusId"), "then": {"properties": {"chatId": {"enum": ["", null]}, "channelId": {"enum": ["", null]}}}},
            {"if": non_empty("chatId"), "then": non_empty("channelId")},
            {"if": non_empty("channelId"), "then": non_empty("chatId")},
        ]),
        // up to a chat, or up to a time
        "chatmesh.chat.v1.AckChatsRequest" => json!([{"anyOf": [
            non_empty("chatId"),
            {"properties": {"createdAt": {"type": "string"}}, "required": ["createdAt"]},
        ]}]),
        _ => return None,
    };
    Some(rules)
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

fn method_of(route: &Route) -> Option<MethodDescriptor> {
    let (service, method) = route.grpc_path.trim_start_matches('/').split_once('/')?;
    route.input.parent_pool().get_service_by_name(service)?.methods().find(|m| m.name() == method)
}

fn operation_id(route: &Route) -> String {
    let (service, method) = route.grpc_path.trim_start_matches('/').split_once('/').unwrap_or_default();
    format!("{}_{method}", service.rsplit('.').next().unwrap_or(service))
}

/// Where each id a response surely carries sits in it: field name (`channel_id`) → JSON
/// pointer (`/channel/channelId`), the shallowest first. A listed resource is read through the
/// first item of a list at the top; deeper lists and oneof members may be empty or absent.
fn returned_ids(message: &MessageDescriptor, prefix: &str, depth: usize, ids: &mut BTreeMap<String, String>) {
    let mut nested = Vec::new();
    for field in message.fields() {
        let pointer = format!("{prefix}/{}", field.json_name());
        let in_oneof = field.containing_oneof().is_some_and(|o| !o.is_synthetic());
        match field.kind() {
            Kind::String if !field.is_list() && field.name().ends_with("_id") => {
                ids.entry(field.name().to_owned()).or_insert(pointer);
            }
            Kind::Message(m)
                if depth > 0
                    && !in_oneof
                    && !field.is_map()
                    && (!field.is_list() || prefix.is_empty())
                    && m.package_name() != "google.protobuf" =>
            {
                let pointer = if field.is_list() { format!("{pointer}/0") } else { pointer };
                nested.push((m, pointer));
            }
            _ => {}
        }
    }
    // why: breadth first, so an id at the top (`upload_id`) wins over a deeper one of the same name
    for (m, pointer) in nested {
        returned_ids(&m, &pointer, depth - 1, ids);
    }
}

/// Links from `source`'s answer to every operation that takes one of the ids it returns
/// (`x_id` feeds `x_id`, and `x_ids` as a one-item list), when it fills every id the target
/// requires. Only creates and lists are sources: what they return is what the others take.
fn links(source: &Route, routes: &[Route]) -> Map<String, Value> {
    let mut links = Map::new();
    let Some(method) = method_of(source) else { return links };
    if !(method.name().starts_with("Create") || method.name().starts_with("List")) {
        return links;
    }
    let mut ids = BTreeMap::new();
    returned_ids(&source.output, "", 2, &mut ids);
    for target in routes {
        if target.grpc_path == source.grpc_path {
            continue;
        }
        let path_params = target.path_params();
        let (mut parameters, mut body) = (Map::new(), Map::new());
        let mut misses_a_required_id = false;
        for field in target.input.fields() {
            let name = field.name();
            let single = name.strip_suffix('s').filter(|_| field.is_list()).unwrap_or(name);
            let Some(pointer) = ids.get(single).filter(|_| single.ends_with("_id")) else {
                misses_a_required_id |=
                    (name.ends_with("_id") && Contract::of(&field).required()) || path_params.iter().any(|p| p == name);
                continue;
            };
            let value = json!(format!("$response.body#{pointer}"));
            if path_params.iter().any(|p| p == name) {
                parameters.insert(format!("path.{name}"), value);
            } else if target.body {
                // a list in a body is a one-item list; a repeated query parameter is given once
                let value = if field.is_list() { json!([value]) } else { value };
                body.insert(field.json_name().to_owned(), value);
            } else {
                parameters.insert(format!("query.{}", field.json_name()), value);
            }
        }
        if misses_a_required_id || (parameters.is_empty() && body.is_empty()) {
            continue;
        }
        let mut link = json!({"operationId": operation_id(target)});
        if !parameters.is_empty() {
            link["parameters"] = Value::Object(parameters);
        }
        if !body.is_empty() {
            // why: the generated body keeps its other fields; only the ids come from the answer
            link["requestBody"] = Value::Object(body);
        }
        let name = operation_id(target).split_once('_').map_or(operation_id(target), |(_, m)| m.to_owned());
        links.insert(name, link);
    }
    links
}

/// A rule of this deployment on a request field, beyond what the contract says (the largest
/// upload, the media types accepted): merged into the field's schema wherever it is sent.
#[derive(Debug, Clone)]
pub struct Narrowing {
    /// The request message, fully qualified (`chatmesh.chat.v1.CreateUploadRequest`).
    pub message: String,
    /// The field's proto name.
    pub field: String,
    /// JSON Schema keywords added to (or replacing those of) the field's schema.
    pub schema: Map<String, Value>,
}

/// Applies `narrowings` to the request bodies and query parameters of `document`.
fn narrow(document: &mut Value, routes: &[Route], narrowings: &[Narrowing]) {
    for route in routes {
        let operation = &mut document["paths"][&route.path][route.method.as_str().to_lowercase()];
        for narrowing in narrowings.iter().filter(|n| n.message == route.input.full_name()) {
            let Some(field) = route.input.get_field_by_name(&narrowing.field) else { continue };
            let apply = |schema: &mut Value| {
                if let Some(schema) = schema.as_object_mut() {
                    schema.extend(narrowing.schema.clone());
                }
            };
            let in_body = format!("/requestBody/content/application~1json/schema/properties/{}", field.json_name());
            if let Some(schema) = operation.pointer_mut(&in_body) {
                apply(schema);
            }
            if let Some(parameters) = operation["parameters"].as_array_mut() {
                parameters.iter_mut().filter(|p| p["name"] == field.json_name()).for_each(|p| apply(&mut p["schema"]));
            }
        }
    }
}

/// The document for `routes`, with this deployment's `narrowings`.
pub fn document(routes: &[Route], narrowings: &[Narrowing]) -> Value {
    let mut document = contract_document(routes);
    narrow(&mut document, routes, narrowings);
    document["paths"][crate::stream::PATH] = json!({"get": crate::stream::operation()});
    document
}

/// The document for `routes` as the contracts state it.
fn contract_document(routes: &[Route]) -> Value {
    let mut components = Components::default();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in routes {
        let path_params = route.path_params();
        let mut parameters = Vec::new();
        for name in &path_params {
            let schema = route
                .input
                .get_field_by_name(name)
                .map_or(json!({"type": "string"}), |f| field_schema(&f, Side::Parameter, &mut components));
            parameters.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
        if !route.body {
            for field in route.input.fields() {
                if path_params.iter().any(|p| p == field.name()) {
                    continue;
                }
                let schema = field_schema(&field, Side::Parameter, &mut components);
                let required = Contract::of(&field).required();
                let mut parameter =
                    json!({"name": field.json_name(), "in": "query", "required": required, "schema": schema});
                if field.is_list() {
                    parameter["style"] = json!("form");
                    parameter["explode"] = json!(true);
                }
                parameters.push(parameter);
            }
        }
        let output = components.reference(&route.output);
        let mut ok = json!({"description": "OK", "content": {"application/json": {"schema": output}}});
        let links = links(route, routes);
        if !links.is_empty() {
            ok["links"] = Value::Object(links);
        }
        let mut responses = Map::new();
        responses.insert("200".into(), ok);
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
            "operationId": operation_id(route),
            "tags": [service.rsplit('.').next().unwrap_or(service)],
            "summary": format!("{service}.{method}"),
            "parameters": parameters,
            "responses": responses,
            "security": if route.open { json!([]) } else { json!([{"bearer": []}]) },
        });
        if let Some(text) = method_of(route).and_then(|m| comment(m.parent_pool(), m.parent_file().name(), m.path())) {
            operation["description"] = json!(text);
        }
        if route.body {
            // why: fields bound by the path are not part of the body
            let input = message_schema(&route.input, Side::Body, &path_params, &mut components);
            let required = input.get("required").is_some();
            operation["requestBody"] =
                json!({"required": required, "content": {"application/json": {"schema": input}}});
        }
        paths.entry(route.path.clone()).or_default().insert(route.method.as_str().to_lowercase(), operation);
    }
    let mut schemas = Map::new();
    schemas.insert("Error".into(), error_schema());
    while let Some(message) = components.pending.pop() {
        let schema = message_schema(&message, Side::Response, &[], &mut components);
        schemas.insert(schema_name(&message), schema);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "chatmesh REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Generated from the gRPC contracts in proto/: routes from their google.api.http options, required fields and rules from their google.api.field_behavior and buf.validate annotations. JSON follows the proto3 JSON mapping (null stands for a field not given); errors share one body.",
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
    use prost_reflect::ReflectMessage;

    use super::*;

    /// The protovalidate rules the document can state exactly, by rule message; any other rule
    /// set on a request field is a rule the document would leave out (see [`unmapped_rules`]).
    const MAPPED_RULES: &[(&str, &[&str])] = &[
        (
            "buf.validate.FieldRules",
            &[
                "required",
                "ignore",
                "string",
                "enum",
                "repeated",
                "int32",
                "int64",
                "uint32",
                "uint64",
                "sint32",
                "sint64",
                "fixed32",
                "fixed64",
                "sfixed32",
                "sfixed64",
                "timestamp",
            ],
        ),
        ("buf.validate.TimestampRules", &["gt_now", "lt_now", "within"]),
        ("google.protobuf.Duration", &["seconds"]),
        ("buf.validate.StringRules", &["len", "min_len", "max_len", "pattern", "email", "in", "const"]),
        ("buf.validate.EnumRules", &["defined_only", "in", "not_in", "const"]),
        ("buf.validate.RepeatedRules", &["min_items", "max_items", "unique", "items"]),
        ("buf.validate.Int32Rules", &["lt", "lte", "gt", "gte", "in", "const"]),
        ("buf.validate.Int64Rules", &["lt", "lte", "gt", "gte", "in", "const"]),
        ("buf.validate.UInt32Rules", &["lt", "lte", "gt", "gte", "in", "const"]),
        ("buf.validate.UInt64Rules", &["lt", "lte", "gt", "gte", "in", "const"]),
        ("buf.validate.SInt32Rules", &["lt", "lte", "gt", "gte", "in", "const"]),
        ("buf.validate.SInt64Rules", &["lt", "lte", "gt", "gte", "in", "const"]),
        ("buf.validate.Fixed32Rules", &["lt", "lte", "gt", "gte", "in", "const"]),
        ("buf.validate.Fixed64Rules", &["lt", "lte", "gt", "gte", "in", "const"]),
        ("buf.validate.SFixed32Rules", &["lt", "lte", "gt", "gte", "in", "const"]),
        ("buf.validate.SFixed64Rules", &["lt", "lte", "gt", "gte", "in", "const"]),
    ];

    /// The rule names set on `rules` (and the rule messages inside it) that the document cannot
    /// state, as `Message.rule`.
    fn unmapped_rules(rules: &DynamicMessage) -> Vec<String> {
        let message = rules.descriptor();
        let mapped = MAPPED_RULES.iter().find(|(name, _)| *name == message.full_name()).map_or(&[][..], |(_, r)| *r);
        let mut unmapped = Vec::new();
        for (field, value) in rules.fields() {
            if !mapped.contains(&field.name()) {
                unmapped.push(format!("{}.{}", message.name(), field.name()));
            } else if let Proto::Message(inner) = value {
                unmapped.extend(unmapped_rules(inner));
            }
        }
        // why: an email is ASCII (the HTML standard's rule), so its byte limit is a length limit
        if message.name() == "StringRules"
            && rule(rules, "max_bytes").is_some()
            && rule(rules, "email").and_then(|v| v.as_bool()) == Some(true)
        {
            unmapped.retain(|r| r != "StringRules.max_bytes");
        }
        if let Some(Proto::String(pattern)) = rule(rules, "pattern").filter(|_| message.name() == "StringRules")
            && ecma_pattern(&pattern).contains("\\x{")
        {
            unmapped.push("StringRules.pattern: a code point above U+FFFF".into());
        }
        unmapped
    }

    fn doc() -> Value {
        document(&crate::routes::routes(), &[])
    }

    fn body(doc: &Value, path: &str, method: &str) -> Value {
        doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"].clone()
    }

    #[test]
    fn the_document_lists_exactly_the_routes_with_their_errors() {
        let routes = crate::routes::routes();
        let doc = document(&routes, &[]);
        assert_eq!(doc["openapi"], "3.1.0");
        let listed: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
            .collect();
        let mut served: BTreeSet<(String, String)> =
            routes.iter().map(|r| (r.method.to_string(), r.path.clone())).collect();
        served.insert(("GET".into(), crate::stream::PATH.into()));
        assert_eq!(listed, served, "the transcoded routes and the timeline's event stream");
        let stream = &doc["paths"][crate::stream::PATH]["get"];
        assert!(stream["responses"]["200"]["content"]["text/event-stream"].is_object());
        let remove = &doc["paths"]["/api/v1/chats/remove-multiple"]["delete"];
        assert!(remove["requestBody"].is_object(), "a DELETE with a body, as the seed has");
        for status in ERROR_STATUSES {
            assert!(remove["responses"][status.to_string()].is_object());
        }
        assert_eq!(doc["paths"]["/api/v1/users"]["post"]["security"], json!([]), "open routes need no token");
        let chat = &doc["components"]["schemas"]["Chat"]["properties"];
        assert_eq!(chat["chatId"]["type"], "string");
        assert_eq!(chat["createdAt"]["format"], "date-time");
    }

    #[test]
    fn required_fields_are_listed_and_refuse_their_empty_value() {
        let doc = doc();
        let create = body(&doc, "/api/v1/users", "post");
        assert_eq!(create["required"], json!(["email", "password", "name"]));
        assert_eq!(doc["paths"]["/api/v1/users"]["post"]["requestBody"]["required"], true);
        assert_eq!(create["properties"]["name"]["type"], "string", "a required field takes no null");
        assert_eq!(create["properties"]["name"]["minLength"], 1, "nor the empty string");
        let get = &doc["paths"]["/api/v1/channels/{channel_id}/members"]["get"]["parameters"];
        assert_eq!(get[0]["in"], "path");
        assert_eq!(get[0]["required"], true);
    }

    #[test]
    fn lengths_count_characters_and_emails_are_formats() {
        let create = body(&doc(), "/api/v1/users", "post");
        let password = &create["properties"]["password"];
        assert_eq!((password["minLength"].clone(), password["maxLength"].clone()), (json!(8), json!(128)));
        let email = &create["properties"]["email"];
        assert_eq!(email["format"], "email");
        assert_eq!(email["maxLength"], 254, "an email is ASCII: its byte limit is its length");
    }

    #[test]
    fn patterns_are_written_for_ecma_262_and_python() {
        assert_eq!(ecma_pattern(r"^[^\x00-\x20\x{1680}\x{2000}-\x{200A}]$"), r"^[^\x00-\x20\u1680\u2000-\u200A]$");
        assert_eq!(ecma_pattern(r"^\x{A0}\\x{1}\.$"), r"^\u00A0\\x{1}\.$", "an escaped backslash is not an escape");
        let name = &body(&doc(), "/api/v1/users", "post")["properties"]["name"]["pattern"];
        assert!(name.as_str().unwrap().contains(r"\u3000") && !name.as_str().unwrap().contains(r"\x{"), "{name}");
    }

    #[test]
    fn times_relative_to_the_clock_are_stated_as_extensions() {
        let publish = body(&doc(), "/api/v1/statuses", "post")["properties"]["publishTime"].to_string();
        assert!(publish.contains(r#""x-after-now":true"#), "{publish}");
        assert!(publish.contains(r#""x-within-seconds":31536000"#), "{publish}");
    }

    #[test]
    fn ids_take_their_pattern_from_the_contract() {
        let doc = doc();
        let get = &doc["paths"]["/api/v1/channels/{channel_id}"]["get"]["parameters"][0]["schema"];
        assert_eq!(get["pattern"], "^[1-9][0-9]{0,18}$");
        let create = body(&doc, "/api/v1/channels", "post");
        assert_eq!(create["properties"]["memberIds"]["items"]["pattern"], "^[1-9][0-9]{0,18}$");
        assert_eq!(create["properties"]["memberIds"]["maxItems"], 100);
        let remove = body(&doc, "/api/v1/chats/remove-multiple", "delete");
        assert_eq!(remove["properties"]["chatIds"]["minItems"], 1, "a required list is not empty");
        assert_eq!(remove["properties"]["chatIds"]["type"], "array", "nor null");
        let chat = &doc["components"]["schemas"]["Chat"]["properties"];
        assert!(chat["clientMsgId"].get("pattern").is_none(), "no pattern guessed from a name");
    }

    #[test]
    fn an_ignored_empty_value_is_accepted_beside_the_rule() {
        let username = &body(&doc(), "/api/v1/users", "post")["properties"]["username"];
        assert_eq!(username["type"], json!(["string", "null"]), "proto3 JSON takes null for a field not given");
        assert_eq!(username["anyOf"][0], json!({"const": ""}));
        assert_eq!(username["anyOf"][1]["pattern"], "^[A-Za-z][A-Za-z0-9_]{2,31}$");
    }

    #[test]
    fn enums_name_the_values_the_rules_allow() {
        let create = body(&doc(), "/api/v1/channels", "post");
        let kind = &create["properties"]["kind"]["enum"];
        assert!(kind.as_array().unwrap().contains(&json!("CHANNEL_KIND_GROUP")));
        assert!(kind.as_array().unwrap().contains(&json!(1)), "proto3 JSON takes a number too");
        assert!(!kind.as_array().unwrap().contains(&json!("CHANNEL_KIND_UNSPECIFIED")), "required: not unspecified");
        assert!(!kind.as_array().unwrap().contains(&json!(0)));
        let mask = &body(&doc(), "/api/v1/users/me", "patch")["properties"]["updateMask"]["items"]["enum"];
        assert_eq!(mask, &json!(["name", "username", "avatar_url", "bio"]), "a string rule's `in`");
        let visibility = &create["properties"]["visibility"]["enum"];
        assert!(visibility.as_array().unwrap().contains(&json!("CHANNEL_VISIBILITY_UNSPECIFIED")), "optional");
        assert!(visibility.as_array().unwrap().contains(&Value::Null));
    }

    #[test]
    fn integer_rules_become_ranges_within_the_type() {
        let pool = chatmesh_api::descriptor_pool();
        let page_size = pool
            .get_message_by_name("chatmesh.channel.v1.ListMembersRequest")
            .and_then(|m| m.get_field_by_name("page_size"))
            .unwrap();
        let schema = field_schema(&page_size, Side::Parameter, &mut Components::default());
        assert_eq!((schema["minimum"].clone(), schema["maximum"].clone()), (json!(i32::MIN), json!(i32::MAX)));
        let rules = DynamicMessage::deserialize(
            pool.get_message_by_name("buf.validate.FieldRules").unwrap(),
            &mut serde_json::Deserializer::from_str(r#"{"int32": {"gt": 0, "lte": 100}}"#),
        )
        .unwrap();
        let schema = value_schema(&Kind::Int32, Some(&rules), true, false, Side::Body, &mut Components::default());
        assert_eq!((schema["minimum"].clone(), schema["maximum"].clone()), (json!(1), json!(100)));
        assert!(schema.get("not").is_none(), "0 is out of range already");
    }

    #[test]
    fn page_tokens_are_a_format_of_their_own() {
        let doc = doc();
        let list = doc["paths"]["/api/v1/channels"]["get"]["parameters"].as_array().unwrap().clone();
        let token = list.iter().find(|p| p["name"] == "pageToken").unwrap();
        assert_eq!(token["schema"]["format"], "page-token");
        assert_eq!(token["required"], false);
    }

    #[test]
    fn behaviours_become_read_only_and_write_only() {
        let doc = doc();
        let user = &doc["components"]["schemas"]["User"]["properties"];
        assert_eq!(user["userId"]["readOnly"], true);
        assert!(user["name"].get("readOnly").is_none());
        assert_eq!(body(&doc, "/api/v1/users", "post")["properties"]["password"]["writeOnly"], true);
    }

    #[test]
    fn fields_and_operations_carry_their_comments() {
        let doc = doc();
        let password = &body(&doc, "/api/v1/users", "post")["properties"]["password"]["description"];
        assert!(password.as_str().unwrap().contains("8 to 128"), "{password}");
        assert!(doc["paths"]["/api/v1/users"]["post"]["description"].as_str().unwrap().contains("Registers"));
    }

    #[test]
    fn ids_returned_by_creates_and_lists_link_to_the_operations_taking_them() {
        let doc = doc();
        let links = |path: &str, method: &str| doc["paths"][path][method]["responses"]["200"]["links"].clone();
        let channel = links("/api/v1/channels", "post");
        assert_eq!(channel["GetChannel"]["operationId"], "ChannelService_GetChannel");
        assert_eq!(channel["GetChannel"]["parameters"]["path.channel_id"], "$response.body#/channel/channelId");
        assert_eq!(channel["CreateMember"]["requestBody"]["channelId"], "$response.body#/channel/channelId");
        assert_eq!(channel["ListChats"]["parameters"]["query.channelId"], "$response.body#/channel/channelId");
        assert_eq!(channel["GetUnreadCounts"]["parameters"]["query.channelIds"], "$response.body#/channel/channelId");
        let chat = links("/api/v1/chats", "post");
        assert_eq!(chat["RemoveChats"]["requestBody"]["chatIds"], json!(["$response.body#/chat/chatId"]));
        assert!(channel.get("DeleteMember").is_none(), "a channel does not name the member's user");
        let members = links("/api/v1/channels/{channel_id}/members", "get");
        assert_eq!(members["DeleteMember"]["parameters"]["path.user_id"], "$response.body#/members/0/userId");
        let user = links("/api/v1/users", "post");
        assert_eq!(user["GetUser"]["parameters"]["path.user_id"], "$response.body#/user/userId");
        assert!(user.get("CreateMember").is_none(), "a user alone cannot name the channel to join");
        assert!(links("/api/v1/channels/{channel_id}", "get").is_null(), "a get is no source");
    }

    #[test]
    fn rules_between_fields_name_fields_of_request_bodies() {
        let doc = doc();
        let mut stated = 0;
        for route in crate::routes::routes().into_iter().filter(|r| r.body) {
            let Some(rules) = rules_between_fields(route.input.full_name()) else { continue };
            stated += 1;
            let named = |text: &str| route.input.fields().any(|f| text.contains(&format!("\"{}\"", f.json_name())));
            assert!(named(&rules.to_string()), "{} names its own fields", route.input.full_name());
            assert_eq!(body(&doc, &route.path, &route.method.as_str().to_lowercase())["allOf"], rules);
        }
        assert_eq!(stated, 6, "every table entry is a request body");
    }

    #[test]
    fn every_rule_on_a_request_field_is_stated_in_the_document() {
        let mut unmapped = Vec::new();
        for route in crate::routes::routes() {
            for field in route.input.fields() {
                if let Some(rules) = Contract::of(&field).rules {
                    unmapped.extend(unmapped_rules(&rules).into_iter().map(|r| format!("{}: {r}", field.full_name())));
                }
            }
        }
        assert!(unmapped.is_empty(), "rules the OpenAPI generator cannot state: {unmapped:?}");
    }

    #[test]
    fn a_deployments_narrowings_join_the_field_schemas_where_they_are_sent() {
        let narrowing = |message: &str, field: &str, schema: Value| Narrowing {
            message: message.into(),
            field: field.into(),
            schema: schema.as_object().unwrap().clone(),
        };
        let narrowed = document(
            &crate::routes::routes(),
            &[
                narrowing("chatmesh.chat.v1.CreateUploadRequest", "size_bytes", json!({"maximum": 1000})),
                narrowing("chatmesh.chat.v1.ListChatsRequest", "page_size", json!({"maximum": 7})),
            ],
        );
        let upload = body(&narrowed, "/api/v1/uploads", "post");
        assert_eq!(upload["properties"]["sizeBytes"]["maximum"], 1000, "{upload}");
        let contract = body(&doc(), "/api/v1/uploads", "post");
        assert_eq!(
            upload["properties"]["sizeBytes"]["type"], contract["properties"]["sizeBytes"]["type"],
            "the rest stays"
        );
        let page_size = narrowed["paths"]["/api/v1/chats"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "pageSize")
            .unwrap()
            .clone();
        assert_eq!(page_size["schema"]["maximum"], 7, "query parameters too: {page_size}");
    }
}
