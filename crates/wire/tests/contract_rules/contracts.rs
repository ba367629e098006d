//! The contracts of `tests/contracts/`: entries, samples and `also_valid`, and the request
//! messages they are for.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::PathBuf,
};

use chatmesh_wire::registry::Rpc;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::Value as Json;

use crate::{
    evaluate::{describe_violations, verdict},
    rules::field_rules,
    server::{ServerVerdict, chain_at, field_paths, read_at, server_verdict},
};

/// The key of `patterns.json` whose samples go to every `string.email` field.
pub(crate) const EMAIL_SAMPLES: &str = "(buf.validate.field).string.email";

/// An entry of `tests/contracts/<service>.json`.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    file: String,
    valid: Json,
    /// Further valid requests, where a relation between fields needs another context (a
    /// direct channel, which has no name; another RPC taking the same nested message).
    pub(crate) also_valid: Vec<AlsoValid>,
    /// Field path → sample values (proto3 JSON).
    pub(crate) samples: BTreeMap<String, Vec<Json>>,
    /// Field path → the relation to other fields its comment states (docs/contracts.md: not
    /// annotated, enforced by the server): a value the rules accept that `valid` refuses must
    /// be accepted in one of `also_valid`.
    pub(crate) relations: BTreeMap<String, String>,
}

/// An item of an entry's `also_valid`: a request of the entry's own message, or (`"@request"`)
/// of another request message that carries, at each relation's field path, the same field.
#[derive(Debug, Clone)]
pub(crate) struct AlsoValid {
    /// The other request message's full name; `None` for the entry's own.
    request: Option<String>,
    /// The request in proto3 JSON, without `@request`.
    json: Json,
}

#[derive(Debug, Default)]
pub(crate) struct Contracts {
    pub(crate) entries: BTreeMap<String, Entry>,
    /// Pattern (as written in the descriptor) → sample strings.
    pub(crate) patterns: BTreeMap<String, Vec<String>>,
    pub(crate) problems: Vec<String>,
}

impl Contracts {
    pub(crate) fn load() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/contracts");
        let mut contracts = Contracts::default();
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for path in files {
            let file = path.file_name().expect("a file name").to_string_lossy().into_owned();
            let json: Json = match fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            {
                Ok(json) => json,
                Err(e) => {
                    contracts.problems.push(format!("tests/contracts/{file}: {e}"));
                    continue;
                }
            };
            let Json::Object(map) = json else {
                contracts.problems.push(format!("tests/contracts/{file}: not a JSON object"));
                continue;
            };
            if file == "patterns.json" {
                for (pattern, samples) in map {
                    match serde_json::from_value::<Vec<String>>(samples) {
                        Ok(samples) => {
                            contracts.patterns.insert(pattern, samples);
                        }
                        Err(e) => contracts
                            .problems
                            .push(format!("tests/contracts/{file}: {pattern}: a list of strings: {e}")),
                    }
                }
                continue;
            }
            for (message, entry) in map {
                contracts.add_entry(&file, message, entry);
            }
        }
        contracts
    }

    fn add_entry(&mut self, file: &str, message: String, entry: Json) {
        let at = format!("tests/contracts/{file}: {message}");
        let Some(desc) = chatmesh_api::descriptor_pool().get_message_by_name(&message) else {
            self.problems.push(format!("{at}: no such message"));
            return;
        };
        let Json::Object(mut entry) = entry else {
            self.problems.push(format!("{at}: not an object {{\"valid\": …, \"samples\": …}}"));
            return;
        };
        let valid = entry.remove("valid").unwrap_or(Json::Null);
        let also_valid = match entry.remove("also_valid") {
            None => Vec::new(),
            Some(Json::Array(requests)) => requests,
            Some(_) => {
                self.problems.push(format!("{at}: also_valid is a list of requests"));
                Vec::new()
            }
        };
        let samples = match entry.remove("samples").map(serde_json::from_value::<BTreeMap<String, Vec<Json>>>) {
            None => BTreeMap::new(),
            Some(Ok(samples)) => samples,
            Some(Err(e)) => {
                self.problems.push(format!("{at}: samples: {{\"field.path\": [values]}}: {e}"));
                BTreeMap::new()
            }
        };
        let relations = match entry.remove("relations").map(serde_json::from_value::<BTreeMap<String, String>>) {
            None => BTreeMap::new(),
            Some(Ok(relations)) => relations,
            Some(Err(e)) => {
                self.problems
                    .push(format!("{at}: relations: {{\"field.path\": \"the rule its comment states\"}}: {e}"));
                BTreeMap::new()
            }
        };
        if let Some(key) = entry.keys().next() {
            self.problems.push(format!("{at}: unknown key {key:?} (only valid, also_valid, samples and relations)"));
        }
        let paths: BTreeSet<String> = field_paths(&desc).into_iter().map(|a| a.path).collect();
        for path in samples.keys().chain(relations.keys()).filter(|p| !paths.contains(*p)) {
            self.problems
                .push(format!("{at}: samples or relations for {path:?}, which is no field path of the message"));
        }
        let mut items = Vec::new();
        for (i, json) in also_valid.into_iter().enumerate() {
            match also_valid_item(&desc, &relations, json) {
                Ok(item) => items.push(item),
                Err(problem) => self.problems.push(format!("{at}: also_valid[{i}]: {problem}")),
            }
        }
        let entry = Entry { file: file.to_owned(), valid, also_valid: items, samples, relations };
        if let Some(previous) = self.entries.insert(message.clone(), entry) {
            self.problems.push(format!("{at}: also in tests/contracts/{}", previous.file));
        }
    }
}

/// An item of `also_valid`; one naming another request (`"@request"`) must name a request
/// message some RPC takes, for an entry with relations, each of whose paths leads there to the
/// same field as in the entry's own request (the nested message they share).
fn also_valid_item(
    own: &MessageDescriptor,
    relations: &BTreeMap<String, String>,
    mut json: Json,
) -> Result<AlsoValid, String> {
    let Some(name) = json.as_object_mut().and_then(|o| o.remove("@request")) else {
        return Ok(AlsoValid { request: None, json });
    };
    let Json::String(name) = name else { return Err(format!("@request is a message's full name, not {name}")) };
    let other = chatmesh_api::descriptor_pool()
        .get_message_by_name(&name)
        .ok_or_else(|| format!("@request {name}: no such message"))?;
    if Rpc::by_request(&name).is_none() {
        return Err(format!("@request {name}: no RPC takes it"));
    }
    if relations.is_empty() {
        return Err(format!("@request {name}: the entry states no relation for it to excuse"));
    }
    for path in relations.keys() {
        let theirs = chain_at(&other, path).map(|c| c.last().expect("a path names a field").full_name().to_owned());
        let ours = chain_at(own, path).map(|c| c.last().expect("a path names a field").full_name().to_owned());
        if ours.is_none() || theirs != ours {
            return Err(format!(
                "@request {name}: the relation's path {path:?} does not lead to the same field there ({})",
                theirs.as_deref().unwrap_or("no such field path")
            ));
        }
    }
    Ok(AlsoValid { request: Some(name), json })
}

/// Every request message of a chatmesh service, with its RPC.
pub(crate) fn requests() -> Vec<(MessageDescriptor, &'static Rpc)> {
    let pool = chatmesh_api::descriptor_pool();
    let mut requests = Vec::new();
    for service in pool.services().filter(|s| s.full_name().starts_with("chatmesh.")) {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            let rpc = Rpc::by_path(&path).unwrap_or_else(|| panic!("{path} is not in chatmesh_wire::registry"));
            requests.push((method.input(), rpc));
        }
    }
    requests
}

/// `chatmesh.user.v1.CreateUserRequest` → `user`.
pub(crate) fn service_of(full_name: &str) -> String {
    full_name.split('.').nth(1).unwrap_or(full_name).to_owned()
}

/// The message and every chatmesh message nested in it (through message, list and map fields).
pub(crate) fn reachable_messages(root: &MessageDescriptor) -> Vec<MessageDescriptor> {
    let mut found: Vec<MessageDescriptor> = vec![root.clone()];
    let mut next = 0;
    while next < found.len() {
        let message = found[next].clone();
        next += 1;
        for field in message.fields() {
            let kind = if field.is_map() { map_entry(&field).1.kind() } else { field.kind() };
            if let Kind::Message(nested) = kind
                && nested.full_name().starts_with("chatmesh.")
                && !found.iter().any(|m| m.full_name() == nested.full_name())
            {
                found.push(nested);
            }
        }
    }
    found
}

pub(crate) fn map_entry(field: &FieldDescriptor) -> (FieldDescriptor, FieldDescriptor) {
    let Kind::Message(entry) = field.kind() else { unreachable!("a map field's kind is its entry") };
    (entry.map_entry_key_field(), entry.map_entry_value_field())
}

/// A valid request to set a field's cases in, and the RPC that judges it.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub(crate) message: DynamicMessage,
    pub(crate) rpc: &'static Rpc,
}

/// The `valid` request of an entry, then those of `also_valid`, each parsed (as the request it
/// names, if any), checked against the annotated rules and accepted by its RPC.
pub(crate) fn valid_bases(request: &MessageDescriptor, entry: &Entry) -> Result<Vec<Base>, String> {
    let at = format!("{} (tests/contracts/{})", request.full_name(), entry.file);
    let mut bases = vec![valid_base(request, &entry.valid, &format!("{at}: valid"))?];
    for (i, item) in entry.also_valid.iter().enumerate() {
        let desc = match &item.request {
            None => request.clone(),
            Some(name) => chatmesh_api::descriptor_pool().get_message_by_name(name).expect("checked when loaded"),
        };
        bases.push(valid_base(&desc, &item.json, &format!("{at}: also_valid[{i}]"))?);
    }
    Ok(bases)
}

fn valid_base(request: &MessageDescriptor, json: &Json, at: &str) -> Result<Base, String> {
    let base = DynamicMessage::deserialize(request.clone(), json.clone())
        .map_err(|e| format!("{at} is not a {} in proto3 JSON: {e}", request.name()))?;
    for at_field in field_paths(request) {
        let Some(value) = read_at(&base, &at_field.chain) else { continue };
        if let Ok(Some(rules)) = field_rules(at_field.field())
            && let Err(violations) = verdict(at_field.field(), &rules, value.as_ref())
        {
            return Err(format!("{at} breaks the rules of {}: {}", at_field.path, describe_violations(&violations)));
        }
    }
    let rpc = Rpc::by_request(request.full_name()).ok_or_else(|| format!("{at}: no RPC takes it"))?;
    match server_verdict(rpc, &base, "") {
        ServerVerdict::Accepted => Ok(Base { message: base, rpc }),
        refused => Err(format!("{at} is refused by the server: {refused:?}")),
    }
}
