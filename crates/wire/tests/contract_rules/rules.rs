//! The rules as annotated: `(buf.validate.field)` and `google.api.field_behavior` options read
//! from the descriptors.

use std::time::{SystemTime, UNIX_EPOCH};

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage as _, Value};
use regex::Regex;

use crate::{
    contracts::{map_entry, reachable_messages, service_of},
    report::Run,
};

// google.api.FieldBehavior
pub(crate) const OPTIONAL: i32 = 1;
pub(crate) const REQUIRED: i32 = 2;
pub(crate) const OUTPUT_ONLY: i32 = 3;

pub(crate) const TIMESTAMP: &str = "google.protobuf.Timestamp";
const DURATION: &str = "google.protobuf.Duration";
pub(crate) const NANOS: i128 = 1_000_000_000;

pub(crate) fn behaviours(field: &FieldDescriptor) -> Vec<i32> {
    let pool = chatmesh_api::descriptor_pool();
    let extension =
        pool.get_extension_by_name("google.api.field_behavior").expect("google.api.field_behavior is in the pool");
    let options = field.options();
    let value = options.get_extension(&extension);
    value.as_list().unwrap_or_default().iter().filter_map(Value::as_enum_number).collect()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Ignore {
    #[default]
    Unspecified,
    IfZeroValue,
    Always,
}

/// `buf.validate.FieldRules`, as far as this evaluator understands them (anything else is an
/// error when parsed).
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    pub(crate) required: bool,
    pub(crate) ignore: Ignore,
    pub(crate) kind: Option<TypeRules>,
}

#[derive(Debug, Clone)]
pub(crate) enum TypeRules {
    String(StringRules),
    Int(&'static str, IntRules),
    Enum(EnumRules),
    Bool(Option<bool>),
    Repeated(Box<RepeatedRules>),
    Map(Box<MapRules>),
    Timestamp(TimestampRules),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct StringRules {
    pub(crate) min_len: Option<u64>,
    pub(crate) max_len: Option<u64>,
    pub(crate) len: Option<u64>,
    pub(crate) min_bytes: Option<u64>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) len_bytes: Option<u64>,
    pub(crate) pattern: Option<(String, Regex)>,
    pub(crate) email: bool,
    pub(crate) r#const: Option<String>,
    pub(crate) r#in: Vec<String>,
    pub(crate) not_in: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct IntRules {
    pub(crate) r#const: Option<i128>,
    pub(crate) lt: Option<i128>,
    pub(crate) lte: Option<i128>,
    pub(crate) gt: Option<i128>,
    pub(crate) gte: Option<i128>,
    pub(crate) r#in: Vec<i128>,
    pub(crate) not_in: Vec<i128>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct EnumRules {
    pub(crate) defined_only: bool,
    pub(crate) r#const: Option<i32>,
    pub(crate) r#in: Vec<i32>,
    pub(crate) not_in: Vec<i32>,
}

/// Times in nanoseconds since the epoch, `within` in nanoseconds (see [`nanos_of`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct TimestampRules {
    pub(crate) r#const: Option<i128>,
    pub(crate) lt: Option<i128>,
    pub(crate) lte: Option<i128>,
    pub(crate) gt: Option<i128>,
    pub(crate) gte: Option<i128>,
    pub(crate) lt_now: bool,
    pub(crate) gt_now: bool,
    pub(crate) within: Option<i128>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RepeatedRules {
    pub(crate) min_items: Option<u64>,
    pub(crate) max_items: Option<u64>,
    pub(crate) items: Option<Rules>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct MapRules {
    pub(crate) min_pairs: Option<u64>,
    pub(crate) max_pairs: Option<u64>,
    pub(crate) keys: Option<Rules>,
    pub(crate) values: Option<Rules>,
}

/// The field's `(buf.validate.field)` rules, `None` without any; an error for a rule this
/// evaluator does not implement, or one that does not fit the field's type.
pub(crate) fn field_rules(field: &FieldDescriptor) -> Result<Option<Rules>, String> {
    let pool = chatmesh_api::descriptor_pool();
    let extension = pool.get_extension_by_name("buf.validate.field").expect("buf.validate.field is in the pool");
    let options = field.options();
    if !options.has_extension(&extension) {
        return Ok(None);
    }
    let value = options.get_extension(&extension);
    let rules = parse_rules(value.as_message().expect("FieldRules is a message"), field.name())?;
    let shape = if field.is_map() {
        let (key, value) = map_entry(field);
        Shape::Map(key.kind(), value.kind())
    } else if field.is_list() {
        Shape::List(field.kind())
    } else {
        Shape::Single(field.kind())
    };
    check_shape(&rules, &shape, field.name())?;
    Ok(Some(rules))
}

enum Shape {
    Single(Kind),
    List(Kind),
    Map(Kind, Kind),
}

pub(crate) fn unsupported(rule: &str, field: &str) -> String {
    format!("unsupported rule {rule} on {field}: extend the evaluator")
}

fn parse_rules(message: &DynamicMessage, field: &str) -> Result<Rules, String> {
    no_extras(message, "", field)?;
    let mut rules = Rules::default();
    for (desc, value) in message.fields() {
        match desc.name() {
            "required" => rules.required = value.as_bool() == Some(true),
            "ignore" => {
                rules.ignore = match value.as_enum_number() {
                    Some(0) => Ignore::Unspecified,
                    Some(1) => Ignore::IfZeroValue,
                    Some(3) => Ignore::Always,
                    other => return Err(unsupported(&format!("ignore = {other:?}"), field)),
                }
            }
            "cel" | "cel_expression" => {
                return Err(format!(
                    "CEL rule on {field}: the contracts state relations between fields in comments (docs/contracts.md)"
                ));
            }
            "string" => rules.kind = Some(TypeRules::String(parse_string(sub(value), field)?)),
            name @ ("int32" | "int64" | "uint32" | "uint64" | "sint32" | "sint64" | "fixed32" | "fixed64"
            | "sfixed32" | "sfixed64") => {
                let name: &'static str = INT_RULES.iter().find(|n| **n == name).expect("listed");
                rules.kind = Some(TypeRules::Int(name, parse_int(sub(value), name, field)?));
            }
            "enum" => rules.kind = Some(TypeRules::Enum(parse_enum(sub(value), field)?)),
            "bool" => {
                let bool_rules = sub(value);
                no_extras(bool_rules, "bool.", field)?;
                let mut r#const = None;
                for (desc, value) in bool_rules.fields() {
                    match desc.name() {
                        "const" => r#const = value.as_bool(),
                        "example" => {}
                        other => return Err(unsupported(&format!("bool.{other}"), field)),
                    }
                }
                rules.kind = Some(TypeRules::Bool(r#const));
            }
            "repeated" => rules.kind = Some(TypeRules::Repeated(Box::new(parse_repeated(sub(value), field)?))),
            "map" => rules.kind = Some(TypeRules::Map(Box::new(parse_map(sub(value), field)?))),
            "timestamp" => rules.kind = Some(TypeRules::Timestamp(parse_timestamp(sub(value), field)?)),
            other => return Err(unsupported(other, field)),
        }
    }
    Ok(rules)
}

const INT_RULES: [&str; 10] =
    ["int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64", "sfixed32", "sfixed64"];

fn sub(value: &Value) -> &DynamicMessage {
    value.as_message().expect("a rules message")
}

/// Predefined-rule extensions and unknown fields are rules too, and not understood here.
fn no_extras(message: &DynamicMessage, prefix: &str, field: &str) -> Result<(), String> {
    if let Some((extension, _)) = message.extensions().next() {
        return Err(unsupported(&format!("{prefix}({})", extension.full_name()), field));
    }
    if message.unknown_fields().next().is_some() {
        return Err(unsupported(&format!("{prefix}<unknown field>"), field));
    }
    Ok(())
}

fn parse_string(message: &DynamicMessage, field: &str) -> Result<StringRules, String> {
    no_extras(message, "string.", field)?;
    let mut rules = StringRules::default();
    let strings = |value: &Value| -> Vec<String> {
        value.as_list().unwrap_or_default().iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    };
    for (desc, value) in message.fields() {
        match desc.name() {
            "min_len" => rules.min_len = value.as_u64(),
            "max_len" => rules.max_len = value.as_u64(),
            "len" => rules.len = value.as_u64(),
            "min_bytes" => rules.min_bytes = value.as_u64(),
            "max_bytes" => rules.max_bytes = value.as_u64(),
            "len_bytes" => rules.len_bytes = value.as_u64(),
            "pattern" => {
                let pattern = value.as_str().expect("a string").to_owned();
                let regex = Regex::new(&pattern).map_err(|e| {
                    format!("string.pattern on {field} is not in the RE2/Rust regex common subset: {e}")
                })?;
                rules.pattern = Some((pattern, regex));
            }
            "email" => rules.email = value.as_bool() == Some(true),
            "const" => rules.r#const = value.as_str().map(str::to_owned),
            "in" => rules.r#in = strings(value),
            "not_in" => rules.not_in = strings(value),
            "example" => {}
            other => return Err(unsupported(&format!("string.{other}"), field)),
        }
    }
    Ok(rules)
}

pub(crate) fn int_of(value: &Value) -> Option<i128> {
    match value {
        Value::I32(v) => Some((*v).into()),
        Value::I64(v) => Some((*v).into()),
        Value::U32(v) => Some((*v).into()),
        Value::U64(v) => Some((*v).into()),
        Value::EnumNumber(v) => Some((*v).into()),
        _ => None,
    }
}

fn parse_int(message: &DynamicMessage, name: &str, field: &str) -> Result<IntRules, String> {
    no_extras(message, &format!("{name}."), field)?;
    let mut rules = IntRules::default();
    let ints = |value: &Value| value.as_list().unwrap_or_default().iter().filter_map(int_of).collect::<Vec<_>>();
    for (desc, value) in message.fields() {
        match desc.name() {
            "const" => rules.r#const = int_of(value),
            "lt" => rules.lt = int_of(value),
            "lte" => rules.lte = int_of(value),
            "gt" => rules.gt = int_of(value),
            "gte" => rules.gte = int_of(value),
            "in" => rules.r#in = ints(value),
            "not_in" => rules.not_in = ints(value),
            "example" => {}
            other => return Err(unsupported(&format!("{name}.{other}"), field)),
        }
    }
    Ok(rules)
}

/// A `google.protobuf.Timestamp` in nanoseconds since the epoch, or a `Duration` in nanoseconds;
/// nanos outside 0..1e9 carry over into the seconds.
pub(crate) fn nanos_of(value: &Value) -> Option<i128> {
    // why: such a value is no time (Timestamp's own definition) and protovalidate defines no
    // verdict on one (its conformance suite has none), so no case makes one.
    let message = value.as_message().filter(|m| [TIMESTAMP, DURATION].contains(&m.descriptor().full_name()))?;
    let seconds = message.get_field_by_name("seconds")?.as_i64()?;
    let nanos = message.get_field_by_name("nanos")?.as_i32()?;
    Some(i128::from(seconds) * NANOS + i128::from(nanos))
}

/// The wall clock in nanoseconds since the epoch: `now` in the `_now` and `within` rules.
pub(crate) fn now_nanos() -> i128 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970");
    i128::try_from(since_epoch.as_nanos()).expect("nanoseconds since 1970 fit an i128")
}

fn parse_timestamp(message: &DynamicMessage, field: &str) -> Result<TimestampRules, String> {
    no_extras(message, "timestamp.", field)?;
    let mut rules = TimestampRules::default();
    for (desc, value) in message.fields() {
        match desc.name() {
            "const" => rules.r#const = nanos_of(value),
            "lt" => rules.lt = nanos_of(value),
            "lte" => rules.lte = nanos_of(value),
            "gt" => rules.gt = nanos_of(value),
            "gte" => rules.gte = nanos_of(value),
            "lt_now" => rules.lt_now = value.as_bool() == Some(true),
            "gt_now" => rules.gt_now = value.as_bool() == Some(true),
            "within" => rules.within = nanos_of(value),
            "example" => {}
            other => return Err(unsupported(&format!("timestamp.{other}"), field)),
        }
    }
    Ok(rules)
}

fn parse_enum(message: &DynamicMessage, field: &str) -> Result<EnumRules, String> {
    no_extras(message, "enum.", field)?;
    let mut rules = EnumRules::default();
    let ints = |value: &Value| value.as_list().unwrap_or_default().iter().filter_map(Value::as_i32).collect::<Vec<_>>();
    for (desc, value) in message.fields() {
        match desc.name() {
            "defined_only" => rules.defined_only = value.as_bool() == Some(true),
            "const" => rules.r#const = value.as_i32(),
            "in" => rules.r#in = ints(value),
            "not_in" => rules.not_in = ints(value),
            "example" => {}
            other => return Err(unsupported(&format!("enum.{other}"), field)),
        }
    }
    Ok(rules)
}

fn parse_repeated(message: &DynamicMessage, field: &str) -> Result<RepeatedRules, String> {
    no_extras(message, "repeated.", field)?;
    let mut rules = RepeatedRules::default();
    for (desc, value) in message.fields() {
        match desc.name() {
            "min_items" => rules.min_items = value.as_u64(),
            "max_items" => rules.max_items = value.as_u64(),
            "items" => rules.items = Some(parse_rules(sub(value), &format!("{field} (items)"))?),
            other => return Err(unsupported(&format!("repeated.{other}"), field)),
        }
    }
    Ok(rules)
}

fn parse_map(message: &DynamicMessage, field: &str) -> Result<MapRules, String> {
    no_extras(message, "map.", field)?;
    let mut rules = MapRules::default();
    for (desc, value) in message.fields() {
        match desc.name() {
            "min_pairs" => rules.min_pairs = value.as_u64(),
            "max_pairs" => rules.max_pairs = value.as_u64(),
            "keys" => rules.keys = Some(parse_rules(sub(value), &format!("{field} (keys)"))?),
            "values" => rules.values = Some(parse_rules(sub(value), &format!("{field} (values)"))?),
            other => return Err(unsupported(&format!("map.{other}"), field)),
        }
    }
    Ok(rules)
}

/// The rules fit the field's type (protovalidate refuses a schema where they do not).
fn check_shape(rules: &Rules, shape: &Shape, field: &str) -> Result<(), String> {
    let mismatch = |what: &str| Err(format!("{what} rules on {field}, which is not of that type"));
    match (&rules.kind, shape) {
        (None, _) => Ok(()),
        (Some(TypeRules::Repeated(repeated)), Shape::List(kind)) => match &repeated.items {
            Some(items) => check_shape(items, &Shape::Single(kind.clone()), &format!("{field} (items)")),
            None => Ok(()),
        },
        (Some(TypeRules::Map(map)), Shape::Map(key, value)) => {
            if let Some(keys) = &map.keys {
                check_shape(keys, &Shape::Single(key.clone()), &format!("{field} (keys)"))?;
            }
            match &map.values {
                Some(values) => check_shape(values, &Shape::Single(value.clone()), &format!("{field} (values)")),
                None => Ok(()),
            }
        }
        (Some(TypeRules::Repeated(_)), _) => mismatch("repeated"),
        (Some(TypeRules::Map(_)), _) => mismatch("map"),
        (Some(_), Shape::List(_) | Shape::Map(..)) => mismatch("scalar"),
        (Some(TypeRules::String(_)), Shape::Single(Kind::String)) => Ok(()),
        (Some(TypeRules::Enum(_)), Shape::Single(Kind::Enum(_))) => Ok(()),
        (Some(TypeRules::Bool(_)), Shape::Single(Kind::Bool)) => Ok(()),
        (Some(TypeRules::Int(name, _)), Shape::Single(kind)) if *name == int_rules_name(kind).unwrap_or("") => Ok(()),
        (Some(TypeRules::Timestamp(_)), Shape::Single(Kind::Message(m))) if m.full_name() == TIMESTAMP => Ok(()),
        (Some(TypeRules::String(_)), _) => mismatch("string"),
        (Some(TypeRules::Enum(_)), _) => mismatch("enum"),
        (Some(TypeRules::Bool(_)), _) => mismatch("bool"),
        (Some(TypeRules::Int(name, _)), _) => mismatch(name),
        (Some(TypeRules::Timestamp(_)), _) => mismatch("timestamp"),
    }
}

fn int_rules_name(kind: &Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Int32 => "int32",
        Kind::Int64 => "int64",
        Kind::Uint32 => "uint32",
        Kind::Uint64 => "uint64",
        Kind::Sint32 => "sint32",
        Kind::Sint64 => "sint64",
        Kind::Fixed32 => "fixed32",
        Kind::Fixed64 => "fixed64",
        Kind::Sfixed32 => "sfixed32",
        Kind::Sfixed64 => "sfixed64",
        _ => return None,
    })
}

/// Message- and oneof-level rules: none are implemented, so any fails.
pub(crate) fn check_message_rules(request: &MessageDescriptor, run: &mut Run) {
    let pool = chatmesh_api::descriptor_pool();
    let message_rules =
        pool.get_extension_by_name("buf.validate.message").expect("buf.validate.message is in the pool");
    let oneof_rules = pool.get_extension_by_name("buf.validate.oneof").expect("buf.validate.oneof is in the pool");
    let service = service_of(request.full_name());
    for message in reachable_messages(request) {
        if message.options().has_extension(&message_rules) {
            run.problem(
                &service,
                format!(
                    "{}: {} (CEL is not used by convention)",
                    message.full_name(),
                    unsupported("(buf.validate.message)", message.name())
                ),
            );
        }
        for oneof in message.oneofs() {
            if oneof.options().has_extension(&oneof_rules) {
                run.problem(
                    &service,
                    format!("{}: {}", message.full_name(), unsupported("(buf.validate.oneof)", oneof.name())),
                );
            }
        }
    }
}
