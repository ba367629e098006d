//! The server's verdict through the RPC registry, and the field paths a case is set at.

use chatmesh_wire::registry::Rpc;
use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use tonic::Code;

use crate::generate::Generator;

/// A field reachable from a request: its dotted path (`events.channel_id`) and the fields that
/// lead to it from the request (a list leads through its first element).
#[derive(Debug, Clone)]
pub(crate) struct FieldAt {
    pub(crate) path: String,
    pub(crate) chain: Vec<FieldDescriptor>,
}

impl FieldAt {
    pub(crate) fn field(&self) -> &FieldDescriptor {
        self.chain.last().expect("a path names a field")
    }
}

/// The fields that lead to a dotted path from the message (`None`: the path names no field).
pub(crate) fn chain_at(root: &MessageDescriptor, path: &str) -> Option<Vec<FieldDescriptor>> {
    field_paths(root).into_iter().find(|at| at.path == path).map(|at| at.chain)
}

pub(crate) fn field_paths(root: &MessageDescriptor) -> Vec<FieldAt> {
    fn walk(message: &MessageDescriptor, prefix: &[FieldDescriptor], stack: &mut Vec<String>, out: &mut Vec<FieldAt>) {
        stack.push(message.full_name().to_owned());
        for field in message.fields() {
            let mut chain = prefix.to_vec();
            chain.push(field.clone());
            let path = chain.iter().map(|f| f.name()).collect::<Vec<_>>().join(".");
            out.push(FieldAt { path, chain: chain.clone() });
            if let Kind::Message(nested) = field.kind()
                && !field.is_map()
                && nested.full_name().starts_with("chatmesh.")
                && !stack.iter().any(|m| m == nested.full_name())
            {
                walk(&nested, &chain, stack, out);
            }
        }
        stack.pop();
    }
    let mut out = Vec::new();
    walk(root, &[], &mut Vec::new(), &mut out);
    out
}

/// The value at a path of the message, `Some(None)` when its last field is unset (and tracks
/// presence); `None` when a message or list on the way is absent.
pub(crate) fn read_at(message: &DynamicMessage, chain: &[FieldDescriptor]) -> Option<Option<Value>> {
    let (last, parents) = chain.split_last().expect("a path names a field");
    let mut current = message.clone();
    for field in parents {
        if !current.has_field(field) {
            return None;
        }
        let value = current.get_field(field).into_owned();
        current = match value {
            Value::List(items) => items.into_iter().next()?.as_message()?.clone(),
            Value::Message(m) => m,
            _ => return None,
        };
    }
    if last.supports_presence() && !current.has_field(last) {
        Some(None)
    } else {
        Some(Some(current.get_field(last).into_owned()))
    }
}

/// What the server answered.
#[derive(Debug)]
pub(crate) enum ServerVerdict {
    Accepted,
    /// INVALID_ARGUMENT, the message naming this field first.
    Refused(String),
    /// Anything else: another code, or another field named.
    Other(String),
    Undecodable,
}

pub(crate) fn server_verdict(rpc: &Rpc, message: &DynamicMessage, path: &str) -> ServerVerdict {
    match (rpc.check)(&message.encode_to_vec()) {
        None => ServerVerdict::Undecodable,
        Some(Ok(())) => ServerVerdict::Accepted,
        Some(Err(status))
            if status.code() == Code::InvalidArgument && status.message().starts_with(&format!("{path}: ")) =>
        {
            ServerVerdict::Refused(status.message().to_owned())
        }
        Some(Err(status)) => ServerVerdict::Other(format!("{:?}: {}", status.code(), status.message())),
    }
}

/// Makes every message and first list item on the way to the field present (synthesized when
/// the base has none); true when something was synthesized.
pub(crate) fn ensure_parents(
    message: &mut DynamicMessage,
    chain: &[FieldDescriptor],
    prefix: &str,
    generator: &Generator<'_>,
) -> Result<bool, String> {
    let Some((first, rest)) = chain.split_first() else { return Ok(false) };
    if rest.is_empty() {
        return Ok(false);
    }
    let Kind::Message(desc) = first.kind() else { unreachable!("a path goes through messages") };
    let path = if prefix.is_empty() { first.name().to_owned() } else { format!("{prefix}.{}", first.name()) };
    let mut synthesized = false;
    let child = if first.is_list() {
        let list = message.get_field_mut(first).as_list_mut().expect("a list");
        if list.is_empty() {
            list.push(Value::Message(generator.synthesize(&desc, &path)?));
            synthesized = true;
        }
        list[0].as_message_mut().expect("a message item")
    } else {
        if !message.has_field(first) {
            message.set_field(first, Value::Message(generator.synthesize(&desc, &path)?));
            synthesized = true;
        }
        message.get_field_mut(first).as_message_mut().expect("a message")
    };
    Ok(ensure_parents(child, rest, &path, generator)? || synthesized)
}

/// The message holding the path's last field (its parents present).
pub(crate) fn leaf_parent<'m>(message: &'m mut DynamicMessage, chain: &[FieldDescriptor]) -> &'m mut DynamicMessage {
    let mut current = message;
    for field in &chain[..chain.len() - 1] {
        current = match current.get_field_mut(field) {
            Value::List(items) => items[0].as_message_mut().expect("a message item"),
            Value::Message(m) => m,
            other => unreachable!("a path goes through messages, not {other:?}"),
        };
    }
    current
}
