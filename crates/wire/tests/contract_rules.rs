//! The contracts say what the server enforces (docs/contracts.md): generated from the
//! descriptors, for every request message of every chatmesh service and every message nested
//! in one. Each field declares its behaviour; each annotated `buf.validate` rule is evaluated
//! here on boundary values generated from the rule and on the samples of `tests/contracts/`,
//! and the verdict must be the one `chatmesh_wire` gives (through the RPC registry): accepted,
//! or refused naming the field. A rule this evaluator does not know fails the test.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Write as _,
    fs,
    path::PathBuf,
    sync::OnceLock,
};

use chatmesh_wire::registry::Rpc;
use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage as _, Value};
use regex::Regex;
use serde_json::Value as Json;
use tonic::Code;

/// Fewer cases than this means the generation lost its way.
const MIN_CASES: usize = 2000;

/// The HTML standard's valid e-mail address, which protovalidate's `string.email` follows.
const WHATWG_EMAIL: &str = r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$";
/// The key of `patterns.json` whose samples go to every `string.email` field.
const EMAIL_SAMPLES: &str = "(buf.validate.field).string.email";

// google.api.FieldBehavior
const OPTIONAL: i32 = 1;
const REQUIRED: i32 = 2;
const OUTPUT_ONLY: i32 = 3;

#[test]
fn every_request_message_has_a_contract_entry_whose_valid_request_is_accepted() {
    let contracts = Contracts::load();
    let mut problems = contracts.problems.clone();
    for (request, _) in requests() {
        let Some(entry) = contracts.entries.get(request.full_name()) else {
            problems.push(format!("{}: no entry in tests/contracts/*.json", request.full_name()));
            continue;
        };
        if let Err(problem) = valid_bases(&request, entry) {
            problems.push(problem);
        }
    }
    fail_on(problems, "contract entries");
}

#[test]
fn every_field_declares_its_behaviour_and_required_goes_with_the_required_rule() {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (request, _) in requests() {
        for message in reachable_messages(&request) {
            if !seen.insert(message.full_name().to_owned()) {
                continue;
            }
            let is_request = message.full_name() == request.full_name();
            for field in message.fields() {
                let at = format!("{}.{}", message.full_name(), field.name());
                let behaviours = behaviours(&field);
                let required = behaviours.contains(&REQUIRED);
                let declared = [REQUIRED, OPTIONAL, OUTPUT_ONLY].iter().filter(|b| behaviours.contains(b)).count();
                if declared != 1 || (is_request && behaviours.contains(&OUTPUT_ONLY)) {
                    problems.push(format!(
                        "{at}: says {behaviours:?}; a request field says exactly one of REQUIRED or OPTIONAL \
                         (OUTPUT_ONLY only in a nested resource)"
                    ));
                }
                let rules = match field_rules(&field) {
                    Ok(rules) => rules,
                    Err(problem) => {
                        problems.push(format!("{at}: {problem}"));
                        continue;
                    }
                };
                let has_required_rule = rules.as_ref().is_some_and(|r| r.required);
                if required != has_required_rule {
                    problems.push(format!(
                        "{at}: REQUIRED is {required} but (buf.validate.field).required is {has_required_rule}"
                    ));
                }
                if behaviours.contains(&OPTIONAL)
                    && let Some(rules) = &rules
                    && !field.supports_presence()
                    && let Err(violations) = verdict(&field, rules, Some(&field.default_value()))
                {
                    problems.push(format!(
                        "{at}: OPTIONAL but its zero value is refused ({}): add ignore = IGNORE_IF_ZERO_VALUE or say REQUIRED",
                        describe_violations(&violations)
                    ));
                }
            }
        }
    }
    fail_on(problems, "field behaviours");
}

#[test]
fn every_annotated_rule_is_enforced_exactly_and_nothing_stricter() {
    let contracts = Contracts::load();
    let mut run = Run::default();
    run.problems.extend(contracts.problems.iter().cloned());
    for (request, _) in requests() {
        let service = service_of(request.full_name());
        let Some(entry) = contracts.entries.get(request.full_name()) else {
            run.problem(
                &service,
                format!("{}: no entry in tests/contracts, its rules are not checked", request.full_name()),
            );
            continue;
        };
        let bases = match valid_bases(&request, entry) {
            Ok(bases) => bases,
            Err(problem) => {
                run.problem(&service, problem);
                continue;
            }
        };
        check_message_rules(&request, &mut run);
        for at in field_paths(&request) {
            check_field(&request, &bases, &at, &contracts, entry, &mut run);
        }
    }

    let mut summary = String::new();
    for (service, tally) in &run.per_service {
        writeln!(
            summary,
            "  {service}: {} cases, {} disagreements, {} problems, {} refused by a stated relation",
            tally.cases, tally.disagreements, tally.problems, tally.by_relation
        )
        .expect("writing to a String");
    }
    println!("contract rules: {} cases checked\n{summary}", run.cases);
    let mut failures = run.problems;
    failures.extend(run.disagreements);
    assert!(
        failures.is_empty(),
        "{} failures ({} cases checked)\n{summary}\n{}",
        failures.len(),
        run.cases,
        failures.join("\n")
    );
    assert!(run.cases >= MIN_CASES, "only {} cases were generated (at least {MIN_CASES} expected)", run.cases);
}

#[test]
fn the_evaluator_counts_characters_and_reads_email_addresses_as_the_html_standard_does() {
    let name = StringRules { max_len: Some(3), ..Default::default() };
    let rules = Rules { kind: Some(TypeRules::String(name)), ..Default::default() };
    assert!(scalar_violations(&rules, &Kind::String, &Value::String("ééé".into())).is_empty());
    assert_eq!(scalar_violations(&rules, &Kind::String, &Value::String("éééé".into()))[0].rule, "string.max_len");
    let email = Rules {
        kind: Some(TypeRules::String(StringRules { email: true, ..Default::default() })),
        ..Default::default()
    };
    for (value, ok) in [("a@b", true), ("a.b+c@example.org", true), ("", false), (" a@b.co", false), ("a@-b.co", false)]
    {
        assert_eq!(scalar_violations(&email, &Kind::String, &Value::String(value.into())).is_empty(), ok, "{value:?}");
    }
}

#[test]
fn every_shared_pattern_sample_list_is_used_and_has_values_on_both_sides() {
    let mut used = BTreeSet::from([EMAIL_SAMPLES.to_owned()]);
    for (request, _) in requests() {
        for at in field_paths(&request) {
            if let Ok(Some(rules)) = field_rules(at.field()) {
                collect_patterns(&rules, &mut used);
            }
        }
    }
    let patterns = Contracts::load().patterns;
    for required in ["^[1-9][0-9]{0,18}$", "^[A-Za-z][A-Za-z0-9_]{2,31}$", EMAIL_SAMPLES] {
        assert!(patterns.contains_key(required), "patterns.json has samples for {required}");
    }
    for (key, samples) in &patterns {
        assert!(used.contains(key), "patterns.json: {key} is the pattern of no field (is it written as in the proto?)");
        let regex = if key == EMAIL_SAMPLES { email_regex().clone() } else { Regex::new(key).expect("a pattern") };
        let matching = samples.iter().filter(|s| regex.is_match(s)).count();
        assert!(
            matching > 0 && matching < samples.len(),
            "patterns.json: {key} needs samples it accepts and samples it refuses"
        );
    }
}

fn collect_patterns(rules: &Rules, out: &mut BTreeSet<String>) {
    match &rules.kind {
        Some(TypeRules::String(StringRules { pattern: Some((pattern, _)), .. })) => {
            out.insert(pattern.clone());
        }
        Some(TypeRules::Repeated(r)) => r.items.iter().for_each(|items| collect_patterns(items, out)),
        Some(TypeRules::Map(r)) => r.keys.iter().chain(&r.values).for_each(|rules| collect_patterns(rules, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// The contracts: descriptors, entries, samples.

/// An entry of `tests/contracts/<service>.json`.
#[derive(Debug, Clone)]
struct Entry {
    file: String,
    valid: Json,
    /// Further valid requests, where a relation between fields needs another context (a
    /// direct channel, which has no name; another RPC taking the same nested message).
    also_valid: Vec<AlsoValid>,
    /// Field path → sample values (proto3 JSON).
    samples: BTreeMap<String, Vec<Json>>,
    /// Field path → the relation to other fields its comment states (docs/contracts.md: not
    /// annotated, enforced by the server): a value the rules accept that `valid` refuses must
    /// be accepted in one of `also_valid`.
    relations: BTreeMap<String, String>,
}

/// An item of an entry's `also_valid`: a request of the entry's own message, or (`"@request"`)
/// of another request message that carries, at each relation's field path, the same field.
#[derive(Debug, Clone)]
struct AlsoValid {
    /// The other request message's full name; `None` for the entry's own.
    request: Option<String>,
    /// The request in proto3 JSON, without `@request`.
    json: Json,
}

#[derive(Debug, Default)]
struct Contracts {
    entries: BTreeMap<String, Entry>,
    /// Pattern (as written in the descriptor) → sample strings.
    patterns: BTreeMap<String, Vec<String>>,
    problems: Vec<String>,
}

impl Contracts {
    fn load() -> Self {
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
fn requests() -> Vec<(MessageDescriptor, &'static Rpc)> {
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
fn service_of(full_name: &str) -> String {
    full_name.split('.').nth(1).unwrap_or(full_name).to_owned()
}

/// The message and every chatmesh message nested in it (through message, list and map fields).
fn reachable_messages(root: &MessageDescriptor) -> Vec<MessageDescriptor> {
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

fn map_entry(field: &FieldDescriptor) -> (FieldDescriptor, FieldDescriptor) {
    let Kind::Message(entry) = field.kind() else { unreachable!("a map field's kind is its entry") };
    (entry.map_entry_key_field(), entry.map_entry_value_field())
}

/// A field reachable from a request: its dotted path (`events.channel_id`) and the fields that
/// lead to it from the request (a list leads through its first element).
#[derive(Debug, Clone)]
struct FieldAt {
    path: String,
    chain: Vec<FieldDescriptor>,
}

impl FieldAt {
    fn field(&self) -> &FieldDescriptor {
        self.chain.last().expect("a path names a field")
    }
}

/// The fields that lead to a dotted path from the message (`None`: the path names no field).
fn chain_at(root: &MessageDescriptor, path: &str) -> Option<Vec<FieldDescriptor>> {
    field_paths(root).into_iter().find(|at| at.path == path).map(|at| at.chain)
}

fn field_paths(root: &MessageDescriptor) -> Vec<FieldAt> {
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

fn behaviours(field: &FieldDescriptor) -> Vec<i32> {
    let pool = chatmesh_api::descriptor_pool();
    let extension =
        pool.get_extension_by_name("google.api.field_behavior").expect("google.api.field_behavior is in the pool");
    let options = field.options();
    let value = options.get_extension(&extension);
    value.as_list().unwrap_or_default().iter().filter_map(Value::as_enum_number).collect()
}

/// A valid request to set a field's cases in, and the RPC that judges it.
#[derive(Debug, Clone)]
struct Base {
    message: DynamicMessage,
    rpc: &'static Rpc,
}

/// The `valid` request of an entry, then those of `also_valid`, each parsed (as the request it
/// names, if any), checked against the annotated rules and accepted by its RPC.
fn valid_bases(request: &MessageDescriptor, entry: &Entry) -> Result<Vec<Base>, String> {
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

/// The value at a path of the message, `Some(None)` when its last field is unset (and tracks
/// presence); `None` when a message or list on the way is absent.
fn read_at(message: &DynamicMessage, chain: &[FieldDescriptor]) -> Option<Option<Value>> {
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

// ---------------------------------------------------------------------------------------------
// The rules, as annotated.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Ignore {
    #[default]
    Unspecified,
    IfZeroValue,
    Always,
}

/// `buf.validate.FieldRules`, as far as this evaluator understands them (anything else is an
/// error when parsed).
#[derive(Debug, Clone, Default)]
struct Rules {
    required: bool,
    ignore: Ignore,
    kind: Option<TypeRules>,
}

#[derive(Debug, Clone)]
enum TypeRules {
    String(StringRules),
    Int(&'static str, IntRules),
    Enum(EnumRules),
    Bool(Option<bool>),
    Repeated(Box<RepeatedRules>),
    Map(Box<MapRules>),
}

#[derive(Debug, Clone, Default)]
struct StringRules {
    min_len: Option<u64>,
    max_len: Option<u64>,
    len: Option<u64>,
    min_bytes: Option<u64>,
    max_bytes: Option<u64>,
    len_bytes: Option<u64>,
    pattern: Option<(String, Regex)>,
    email: bool,
    r#const: Option<String>,
    r#in: Vec<String>,
    not_in: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct IntRules {
    r#const: Option<i128>,
    lt: Option<i128>,
    lte: Option<i128>,
    gt: Option<i128>,
    gte: Option<i128>,
    r#in: Vec<i128>,
    not_in: Vec<i128>,
}

#[derive(Debug, Clone, Default)]
struct EnumRules {
    defined_only: bool,
    r#const: Option<i32>,
    r#in: Vec<i32>,
    not_in: Vec<i32>,
}

#[derive(Debug, Clone, Default)]
struct RepeatedRules {
    min_items: Option<u64>,
    max_items: Option<u64>,
    items: Option<Rules>,
}

#[derive(Debug, Clone, Default)]
struct MapRules {
    min_pairs: Option<u64>,
    max_pairs: Option<u64>,
    keys: Option<Rules>,
    values: Option<Rules>,
}

/// The field's `(buf.validate.field)` rules, `None` without any; an error for a rule this
/// evaluator does not implement, or one that does not fit the field's type.
fn field_rules(field: &FieldDescriptor) -> Result<Option<Rules>, String> {
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

fn unsupported(rule: &str, field: &str) -> String {
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

fn int_of(value: &Value) -> Option<i128> {
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
        (Some(TypeRules::String(_)), _) => mismatch("string"),
        (Some(TypeRules::Enum(_)), _) => mismatch("enum"),
        (Some(TypeRules::Bool(_)), _) => mismatch("bool"),
        (Some(TypeRules::Int(name, _)), _) => mismatch(name),
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
fn check_message_rules(request: &MessageDescriptor, run: &mut Run) {
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

// ---------------------------------------------------------------------------------------------
// The evaluator: the annotated rules' verdict on a value.

/// A rule a value breaks: its name (`string.max_len`, `repeated.items.string.pattern`) and why.
#[derive(Debug, Clone)]
struct Violation {
    rule: String,
    why: String,
}

fn violation(rule: &str, why: impl Into<String>) -> Violation {
    Violation { rule: rule.to_owned(), why: why.into() }
}

fn describe_violations(violations: &[Violation]) -> String {
    violations.iter().map(|v| format!("{} ({})", v.why, v.rule)).collect::<Vec<_>>().join("; ")
}

/// The verdict of the field's rules on its value (`None`: unset, for a field tracking presence).
fn verdict(field: &FieldDescriptor, rules: &Rules, value: Option<&Value>) -> Result<(), Vec<Violation>> {
    if rules.ignore == Ignore::Always {
        return Ok(());
    }
    let Some(value) = value else {
        return if rules.required { Err(vec![violation("required", "is required")]) } else { Ok(()) };
    };
    let zero = !field.supports_presence() && value.is_default_for_field(field);
    // why: every rule broken is named (as protovalidate lists them), so the check that each
    // annotated rule refuses some case also sees `min_items = 1` beside `required`.
    let mut violations = Vec::new();
    if rules.required && zero {
        violations.push(violation("required", "is required"));
    } else if zero && rules.ignore == Ignore::IfZeroValue {
        return Ok(());
    }
    violations.extend(match (&rules.kind, value) {
        (Some(TypeRules::Repeated(repeated)), Value::List(items)) => list_violations(repeated, &field.kind(), items),
        (Some(TypeRules::Map(map)), Value::Map(pairs)) => {
            let (key, value) = map_entry(field);
            map_violations(map, &key.kind(), &value.kind(), pairs)
        }
        _ => scalar_violations(rules, &field.kind(), value),
    });
    if violations.is_empty() { Ok(()) } else { Err(violations) }
}

/// The verdict on one list item, map key or map value (no presence: zero is the default).
fn item_violations(rules: &Rules, kind: &Kind, value: &Value, prefix: &str) -> Vec<Violation> {
    if rules.ignore == Ignore::Always {
        return Vec::new();
    }
    let zero = value.is_default(kind);
    let mut violations = Vec::new();
    if rules.required && zero {
        violations.push(violation("required", "is required"));
    } else if zero && rules.ignore == Ignore::IfZeroValue {
        return Vec::new();
    }
    violations.extend(scalar_violations(rules, kind, value));
    violations.into_iter().map(|v| Violation { rule: format!("{prefix}{}", v.rule), why: v.why }).collect()
}

fn list_violations(rules: &RepeatedRules, kind: &Kind, items: &[Value]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let n = items.len() as u64;
    if let Some(min) = rules.min_items
        && n < min
    {
        violations.push(violation("repeated.min_items", format!("{n} items, fewer than {min}")));
    }
    if let Some(max) = rules.max_items
        && n > max
    {
        violations.push(violation("repeated.max_items", format!("{n} items, more than {max}")));
    }
    if let Some(item_rules) = &rules.items {
        for item in items {
            violations.extend(item_violations(item_rules, kind, item, "repeated.items."));
        }
    }
    violations
}

fn map_violations(
    rules: &MapRules,
    key_kind: &Kind,
    value_kind: &Kind,
    pairs: &HashMap<MapKey, Value>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let n = pairs.len() as u64;
    if let Some(min) = rules.min_pairs
        && n < min
    {
        violations.push(violation("map.min_pairs", format!("{n} pairs, fewer than {min}")));
    }
    if let Some(max) = rules.max_pairs
        && n > max
    {
        violations.push(violation("map.max_pairs", format!("{n} pairs, more than {max}")));
    }
    for (key, value) in pairs {
        if let Some(keys) = &rules.keys {
            violations.extend(item_violations(keys, key_kind, &Value::from(key.clone()), "map.keys."));
        }
        if let Some(values) = &rules.values {
            violations.extend(item_violations(values, value_kind, value, "map.values."));
        }
    }
    violations
}

fn email_regex() -> &'static Regex {
    static EMAIL: OnceLock<Regex> = OnceLock::new();
    EMAIL.get_or_init(|| Regex::new(WHATWG_EMAIL).expect("the WHATWG email pattern compiles"))
}

fn scalar_violations(rules: &Rules, kind: &Kind, value: &Value) -> Vec<Violation> {
    let mut violations = Vec::new();
    match (&rules.kind, value) {
        (None, _) => {}
        (Some(TypeRules::String(r)), Value::String(s)) => {
            let chars = s.chars().count() as u64;
            let bytes = s.len() as u64;
            let mut bound = |rule: &str, ok: bool, why: String| {
                if !ok {
                    violations.push(violation(rule, why));
                }
            };
            if let Some(n) = r.min_len {
                bound("string.min_len", chars >= n, format!("{chars} characters, fewer than {n}"));
            }
            if let Some(n) = r.max_len {
                bound("string.max_len", chars <= n, format!("{chars} characters, more than {n}"));
            }
            if let Some(n) = r.len {
                bound("string.len", chars == n, format!("{chars} characters, not {n}"));
            }
            if let Some(n) = r.min_bytes {
                bound("string.min_bytes", bytes >= n, format!("{bytes} bytes, fewer than {n}"));
            }
            if let Some(n) = r.max_bytes {
                bound("string.max_bytes", bytes <= n, format!("{bytes} bytes, more than {n}"));
            }
            if let Some(n) = r.len_bytes {
                bound("string.len_bytes", bytes == n, format!("{bytes} bytes, not {n}"));
            }
            if let Some((pattern, regex)) = &r.pattern {
                bound("string.pattern", regex.is_match(s), format!("does not match {pattern}"));
            }
            if r.email {
                bound("string.email", !s.is_empty() && email_regex().is_match(s), "not an email address".into());
            }
            if let Some(c) = &r.r#const {
                bound("string.const", s == c, format!("not {c:?}"));
            }
            if !r.r#in.is_empty() {
                bound("string.in", r.r#in.contains(s), format!("not in {:?}", r.r#in));
            }
            bound("string.not_in", !r.not_in.contains(s), format!("in {:?}", r.not_in));
        }
        (Some(TypeRules::Int(name, r)), _) if int_of(value).is_some() => {
            let v = int_of(value).expect("an integer");
            let rule = |suffix: &str| format!("{name}.{suffix}");
            if let Some(c) = r.r#const
                && v != c
            {
                violations.push(violation(&rule("const"), format!("not {c}")));
            }
            // why: protovalidate reads `gt: 10, lt: 5` (upper below lower) as "outside 5..=10".
            let lower =
                r.gt.map(|b| (v > b, format!("> {b}"), "gt", b))
                    .or(r.gte.map(|b| (v >= b, format!(">= {b}"), "gte", b)));
            let upper =
                r.lt.map(|b| (v < b, format!("< {b}"), "lt", b))
                    .or(r.lte.map(|b| (v <= b, format!("<= {b}"), "lte", b)));
            match (lower, upper) {
                (Some((lo_ok, lo, lo_rule, lo_b)), Some((up_ok, up, up_rule, up_b))) if up_b < lo_b => {
                    if !(lo_ok || up_ok) {
                        violations.push(violation(
                            &rule(&format!("{lo_rule}_{up_rule}_exclusive")),
                            format!("{v} is not {lo} or {up}"),
                        ));
                    }
                }
                (lower, upper) => {
                    for (ok, what, r, _) in lower.into_iter().chain(upper) {
                        if !ok {
                            violations.push(violation(&rule(r), format!("{v} is not {what}")));
                        }
                    }
                }
            }
            if !r.r#in.is_empty() && !r.r#in.contains(&v) {
                violations.push(violation(&rule("in"), format!("not in {:?}", r.r#in)));
            }
            if r.not_in.contains(&v) {
                violations.push(violation(&rule("not_in"), format!("in {:?}", r.not_in)));
            }
        }
        (Some(TypeRules::Enum(r)), Value::EnumNumber(n)) => {
            if let Some(c) = r.r#const
                && *n != c
            {
                violations.push(violation("enum.const", format!("not {c}")));
            }
            if r.defined_only
                && let Kind::Enum(desc) = kind
                && desc.get_value(*n).is_none()
            {
                violations.push(violation("enum.defined_only", format!("{n} is no {}", desc.name())));
            }
            if !r.r#in.is_empty() && !r.r#in.contains(n) {
                violations.push(violation("enum.in", format!("{n} not in {:?}", r.r#in)));
            }
            if r.not_in.contains(n) {
                violations.push(violation("enum.not_in", format!("{n} in {:?}", r.not_in)));
            }
        }
        (Some(TypeRules::Bool(Some(c))), Value::Bool(b)) => {
            if b != c {
                violations.push(violation("bool.const", format!("not {c}")));
            }
        }
        (Some(TypeRules::Bool(None)), Value::Bool(_)) => {}
        (Some(kind), value) => violations.push(violation("type", format!("{kind:?} rules on {value:?}"))),
    }
    violations
}

/// The names of the rules annotated, as the evaluator names their violations.
fn rule_names(rules: &Rules, prefix: &str, out: &mut Vec<String>) {
    let mut add = |name: &str| out.push(format!("{prefix}{name}"));
    if rules.required {
        add("required");
    }
    match &rules.kind {
        None | Some(TypeRules::Bool(None)) => {}
        Some(TypeRules::Bool(Some(_))) => add("bool.const"),
        Some(TypeRules::String(r)) => {
            let set = [
                ("string.min_len", r.min_len.is_some()),
                ("string.max_len", r.max_len.is_some()),
                ("string.len", r.len.is_some()),
                ("string.min_bytes", r.min_bytes.is_some()),
                ("string.max_bytes", r.max_bytes.is_some()),
                ("string.len_bytes", r.len_bytes.is_some()),
                ("string.pattern", r.pattern.is_some()),
                ("string.email", r.email),
                ("string.const", r.r#const.is_some()),
                ("string.in", !r.r#in.is_empty()),
                ("string.not_in", !r.not_in.is_empty()),
            ];
            set.iter().filter(|(_, on)| *on).for_each(|(name, _)| add(name));
        }
        Some(TypeRules::Int(name, r)) => {
            let lower = r.gt.map(|b| ("gt", b)).or(r.gte.map(|b| ("gte", b)));
            let upper = r.lt.map(|b| ("lt", b)).or(r.lte.map(|b| ("lte", b)));
            match (lower, upper) {
                (Some((lo, lo_b)), Some((up, up_b))) if up_b < lo_b => add(&format!("{name}.{lo}_{up}_exclusive")),
                (lower, upper) => lower.into_iter().chain(upper).for_each(|(r, _)| add(&format!("{name}.{r}"))),
            }
            let set = [("const", r.r#const.is_some()), ("in", !r.r#in.is_empty()), ("not_in", !r.not_in.is_empty())];
            set.iter().filter(|(_, on)| *on).for_each(|(r, _)| add(&format!("{name}.{r}")));
        }
        Some(TypeRules::Enum(r)) => {
            let set = [
                ("enum.defined_only", r.defined_only),
                ("enum.const", r.r#const.is_some()),
                ("enum.in", !r.r#in.is_empty()),
                ("enum.not_in", !r.not_in.is_empty()),
            ];
            set.iter().filter(|(_, on)| *on).for_each(|(name, _)| add(name));
        }
        Some(TypeRules::Repeated(r)) => {
            if r.min_items.is_some() {
                add("repeated.min_items");
            }
            if r.max_items.is_some() {
                add("repeated.max_items");
            }
            if let Some(items) = &r.items {
                rule_names(items, &format!("{prefix}repeated.items."), out);
            }
        }
        Some(TypeRules::Map(r)) => {
            if r.min_pairs.is_some() {
                add("map.min_pairs");
            }
            if r.max_pairs.is_some() {
                add("map.max_pairs");
            }
            if let Some(keys) = &r.keys {
                rule_names(keys, &format!("{prefix}map.keys."), out);
            }
            if let Some(values) = &r.values {
                rule_names(values, &format!("{prefix}map.values."), out);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cases: values generated from the rules, and the samples.

/// One value to give a field (`None`: unset it).
#[derive(Debug, Clone)]
struct Case {
    label: String,
    value: Option<Value>,
    /// The rules whose boundary this value sits on, inside: it must be accepted.
    at_bound: Vec<String>,
}

fn case(label: impl Into<String>, value: Value) -> Case {
    Case { label: label.into(), value: Some(value), at_bound: Vec::new() }
}

fn bound_case(label: impl Into<String>, value: Value, rule: &str) -> Case {
    Case { label: label.into(), value: Some(value), at_bound: vec![rule.to_owned()] }
}

/// Cases with equal values merge (the first label stays; the bounds add up).
fn dedup(cases: Vec<Case>) -> Vec<Case> {
    let mut out: Vec<Case> = Vec::new();
    for case in cases {
        match out.iter_mut().find(|c| c.value == case.value) {
            Some(existing) => existing.at_bound.extend(case.at_bound),
            None => out.push(case),
        }
    }
    out
}

/// `seed` cut or padded with `filler` to `chars` characters.
fn fit_chars(seed: &str, chars: usize, filler: char, front: bool) -> String {
    let n = seed.chars().count();
    if n >= chars {
        return seed.chars().take(chars).collect();
    }
    let pad: String = std::iter::repeat_n(filler, chars - n).collect();
    if front { pad + seed } else { format!("{seed}{pad}") }
}

/// `seed` cut or padded with `filler` (then 'a' for what is left) to `bytes` bytes.
fn fit_bytes(seed: &str, bytes: usize, filler: char, front: bool) -> String {
    let mut kept = seed.to_owned();
    while kept.len() > bytes {
        kept.pop();
    }
    let mut pad = String::new();
    while kept.len() + pad.len() + filler.len_utf8() <= bytes {
        pad.push(filler);
    }
    while kept.len() + pad.len() < bytes {
        pad.push('a');
    }
    if front { pad + &kept } else { kept + &pad }
}

/// The range of values an integer kind holds.
fn int_range(kind: &Kind) -> (i128, i128) {
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => (i32::MIN.into(), i32::MAX.into()),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => (i64::MIN.into(), i64::MAX.into()),
        Kind::Uint32 | Kind::Fixed32 => (0, u32::MAX.into()),
        Kind::Uint64 | Kind::Fixed64 => (0, u64::MAX.into()),
        _ => (0, 0),
    }
}

fn int_value(kind: &Kind, v: i128) -> Option<Value> {
    Some(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(v.try_into().ok()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(v.try_into().ok()?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(v.try_into().ok()?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(v.try_into().ok()?),
        _ => return None,
    })
}

fn is_zero(kind: &Kind, value: &Value) -> bool {
    match value {
        Value::Message(_) => false,
        _ => value.is_default(kind),
    }
}

/// Makes the cases of one request message's fields.
struct Generator<'a> {
    contracts: &'a Contracts,
    entry: &'a Entry,
}

impl Generator<'_> {
    /// The shared samples of the string rules' pattern (and of `string.email`).
    fn shared_samples(&self, rules: &Rules) -> Vec<Case> {
        let Some(TypeRules::String(r)) = &rules.kind else { return Vec::new() };
        let mut keys = Vec::new();
        if let Some((pattern, _)) = &r.pattern {
            keys.push(pattern.as_str());
        }
        if r.email {
            keys.push(EMAIL_SAMPLES);
        }
        keys.iter()
            .flat_map(|key| self.contracts.patterns.get(*key).into_iter().flatten())
            .map(|s| case("shared sample", Value::String(s.clone())))
            .collect()
    }

    /// The samples of the entry for a field path, as values of the field (`item`: as list
    /// items or map entries when the sample is not itself a list or object).
    fn own_samples(&self, field: &FieldDescriptor, path: &str) -> Result<(Vec<Case>, Vec<Value>), String> {
        let mut whole = Vec::new();
        let mut items = Vec::new();
        for sample in self.entry.samples.get(path).into_iter().flatten() {
            let container = (field.is_list() && sample.is_array()) || (field.is_map() && sample.is_object());
            if container || !(field.is_list() || field.is_map()) {
                whole.push(case("sample", json_to_value(field, sample)?));
            } else if field.is_list() {
                let list = json_to_value(field, &Json::Array(vec![sample.clone()]))?;
                items.extend(list.as_list().unwrap_or_default().iter().cloned());
            } else {
                return Err(format!("samples of map {path} are objects"));
            }
        }
        Ok((whole, items))
    }

    /// The values of one scalar (a field, a list item, a map key or value) generated from its
    /// rules, around `seed` (a valid value) when there is one.
    fn scalar_cases(&self, kind: &Kind, rules: &Rules, seed: Option<&Value>, samples: Vec<Case>) -> Vec<Case> {
        let mut cases = vec![case("zero value", Value::default_value(kind))];
        if let Some(seed) = seed {
            cases.push(case("valid value", seed.clone()));
        }
        cases.extend(samples);
        cases.extend(self.shared_samples(rules));
        match (&rules.kind, kind) {
            (Some(TypeRules::String(r)), _) => {
                let seed = seed.and_then(Value::as_str).unwrap_or("");
                let lengths = [("string.min_len", r.min_len), ("string.max_len", r.max_len), ("string.len", r.len)];
                for (rule, n) in lengths.iter().filter_map(|(rule, n)| n.map(|n| (*rule, n as usize))) {
                    for len in [n.checked_sub(1), Some(n), Some(n + 1)].into_iter().flatten() {
                        for filler in ['a', 'é'] {
                            for front in [false, true] {
                                let value = Value::String(fit_chars(seed, len, filler, front));
                                let label = format!(
                                    "{rule} {n}: {len} characters, {filler:?} {}",
                                    if front { "in front" } else { "after" }
                                );
                                let case = if len == n { bound_case(label, value, rule) } else { case(label, value) };
                                cases.push(case);
                            }
                        }
                    }
                }
                let bytes = [
                    ("string.min_bytes", r.min_bytes),
                    ("string.max_bytes", r.max_bytes),
                    ("string.len_bytes", r.len_bytes),
                ];
                for (rule, n) in bytes.iter().filter_map(|(rule, n)| n.map(|n| (*rule, n as usize))) {
                    for len in [n.checked_sub(1), Some(n), Some(n + 1)].into_iter().flatten() {
                        for filler in ['a', 'é'] {
                            for front in [false, true] {
                                let value = Value::String(fit_bytes(seed, len, filler, front));
                                let label = format!(
                                    "{rule} {n}: {len} bytes, {filler:?} {}",
                                    if front { "in front" } else { "after" }
                                );
                                let case = if len == n { bound_case(label, value, rule) } else { case(label, value) };
                                cases.push(case);
                            }
                        }
                    }
                }
                for value in r.r#const.iter().chain(&r.r#in).chain(&r.not_in) {
                    cases.push(case("listed value", Value::String(value.clone())));
                }
            }
            (Some(TypeRules::Int(name, r)), _) => {
                let (min, max) = int_range(kind);
                let mut points: Vec<(i128, Option<String>)> = Vec::new();
                for (suffix, bound, inside) in [("gt", r.gt, 1), ("gte", r.gte, 0), ("lt", r.lt, -1), ("lte", r.lte, 0)]
                {
                    if let Some(b) = bound {
                        for delta in -1..=1 {
                            let rule = (delta == inside).then(|| format!("{name}.{suffix}"));
                            points.push((b + delta, rule));
                        }
                    }
                }
                for v in r.r#const.iter().chain(&r.r#in).chain(&r.not_in) {
                    points.extend([(*v - 1, None), (*v, None), (*v + 1, None)]);
                }
                for (v, rule) in points.into_iter().filter(|(v, _)| (min..=max).contains(v)) {
                    let value = int_value(kind, v).expect("in range");
                    cases.push(match rule {
                        Some(rule) => bound_case(format!("{rule} bound"), value, &rule),
                        None => case("around a listed value", value),
                    });
                }
            }
            (_, Kind::Enum(desc)) => {
                for value in desc.values() {
                    cases.push(case(value.name(), Value::EnumNumber(value.number())));
                }
                let undefined = desc.values().map(|v| v.number()).max().unwrap_or(0) + 1;
                cases.push(case("an undefined number", Value::EnumNumber(undefined)));
                if let Some(TypeRules::Enum(r)) = &rules.kind {
                    for n in r.r#const.iter().chain(&r.r#in).chain(&r.not_in) {
                        cases.push(case("listed number", Value::EnumNumber(*n)));
                    }
                }
            }
            (_, Kind::Bool) => cases.extend([case("true", Value::Bool(true)), case("false", Value::Bool(false))]),
            (None, kind) if int_value(kind, 0).is_some() => {
                // why: a number without rules takes any value (a page size above the maximum is served as the maximum).
                let (min, max) = int_range(kind);
                for v in [1, -1, min, max] {
                    if let Some(value) = int_value(kind, v) {
                        cases.push(case("any number", value));
                    }
                }
            }
            _ => {}
        }
        dedup(cases)
    }

    /// A valid value of one scalar: the seed when the rules accept it, else the first non-zero
    /// case they accept.
    fn valid_scalar(
        &self,
        kind: &Kind,
        rules: &Rules,
        seed: Option<&Value>,
        samples: Vec<Case>,
        prefix: &str,
    ) -> Option<Value> {
        let accepts = |v: &Value| item_violations(rules, kind, v, prefix).is_empty();
        if let Some(seed) = seed.filter(|s| !is_zero(kind, s) && accepts(s)) {
            return Some(seed.clone());
        }
        let cases = self.scalar_cases(kind, rules, None, samples);
        let mut candidates = cases.into_iter().filter_map(|c| c.value);
        let first = candidates.find(|v| !is_zero(kind, v) && accepts(v));
        first.or_else(|| accepts(&Value::default_value(kind)).then(|| Value::default_value(kind)))
    }

    /// Every case of a field, `current` being its value in the base (`None`: unset).
    fn cases(
        &self,
        field: &FieldDescriptor,
        path: &str,
        rules: &Rules,
        current: Option<&Value>,
    ) -> Result<Vec<Case>, String> {
        let (samples, item_samples) = self.own_samples(field, path)?;
        let kind = field.kind();
        if field.is_map() {
            return self.map_cases(field, path, rules, current, samples);
        }
        if field.is_list() {
            let repeated = match &rules.kind {
                Some(TypeRules::Repeated(r)) => (**r).clone(),
                _ => RepeatedRules::default(),
            };
            let current_items = current.and_then(Value::as_list).unwrap_or_default();
            let item_rules = repeated.items.clone().unwrap_or_default();
            let valid_item = match &kind {
                Kind::Message(desc) => match current_items.first() {
                    Some(item) => item.clone(),
                    None => Value::Message(self.synthesize(desc, path)?),
                },
                _ => {
                    let samples = item_samples.iter().map(|v| case("sample", v.clone())).collect();
                    self.valid_scalar(&kind, &item_rules, current_items.first(), samples, "repeated.items.")
                        .ok_or_else(|| format!("{path}: no valid item found; give one in valid or samples"))?
                }
            };
            let min = repeated.min_items.unwrap_or(0).max(1) as usize;
            let valid_list: Vec<Value> =
                if current_items.is_empty() { vec![valid_item.clone(); min] } else { current_items.to_vec() };
            let mut cases = vec![
                case("zero value: no items", Value::List(Vec::new())),
                case("valid items", Value::List(valid_list.clone())),
            ];
            cases.extend(samples);
            for (rule, n) in [("repeated.min_items", repeated.min_items), ("repeated.max_items", repeated.max_items)] {
                let Some(n) = n.map(|n| n as usize) else { continue };
                for len in [n.checked_sub(1), Some(n), Some(n + 1)].into_iter().flatten() {
                    let value = Value::List(vec![valid_item.clone(); len]);
                    let label = format!("{rule} {n}: {len} items");
                    cases.push(if len == n { bound_case(label, value, rule) } else { case(label, value) });
                }
            }
            if !matches!(kind, Kind::Message(_)) {
                // the item rules on the shortest valid list, its first item replaced
                let samples = item_samples.iter().map(|v| case("sample item", v.clone())).collect();
                for item in self.scalar_cases(&kind, &item_rules, Some(&valid_item), samples) {
                    let mut list = vec![valid_item.clone(); min];
                    list[0] = item.value.expect("an item value");
                    cases.push(Case {
                        label: format!("first item: {}", item.label),
                        value: Some(Value::List(list)),
                        at_bound: item.at_bound,
                    });
                }
            }
            return Ok(dedup(cases));
        }
        let mut cases = Vec::new();
        if field.supports_presence() {
            cases.push(Case { label: "unset".into(), value: None, at_bound: Vec::new() });
        }
        if let Kind::Message(desc) = &kind {
            let value = match current {
                Some(value) => value.clone(),
                None => Value::Message(self.synthesize(desc, path)?),
            };
            cases.push(case("a valid message", value));
            cases.extend(samples);
            return Ok(cases);
        }
        let seed_samples = samples.clone();
        let seed = self.valid_scalar(&kind, rules, current, seed_samples, "");
        Ok(self.scalar_cases(&kind, rules, seed.as_ref(), samples))
    }

    fn map_cases(
        &self,
        field: &FieldDescriptor,
        path: &str,
        rules: &Rules,
        current: Option<&Value>,
        samples: Vec<Case>,
    ) -> Result<Vec<Case>, String> {
        let (key_field, value_field) = map_entry(field);
        let (key_kind, value_kind) = (key_field.kind(), value_field.kind());
        if matches!(value_kind, Kind::Message(_)) {
            return Err(unsupported("map with message values", path));
        }
        let map = match &rules.kind {
            Some(TypeRules::Map(r)) => (**r).clone(),
            _ => MapRules::default(),
        };
        let (key_rules, value_rules) = (map.keys.clone().unwrap_or_default(), map.values.clone().unwrap_or_default());
        let mut current_pairs: Vec<(MapKey, Value)> = current
            .and_then(Value::as_map)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        current_pairs.sort_by_key(|(k, _)| format!("{k:?}"));
        let first = current_pairs.first().cloned();
        let valid_key = self
            .valid_scalar(
                &key_kind,
                &key_rules,
                first.as_ref().map(|(k, _)| Value::from(k.clone())).as_ref(),
                Vec::new(),
                "map.keys.",
            )
            .ok_or_else(|| format!("{path}: no valid key found; give a pair in valid"))?;
        let valid_value = self
            .valid_scalar(&value_kind, &value_rules, first.as_ref().map(|(_, v)| v), Vec::new(), "map.values.")
            .ok_or_else(|| format!("{path}: no valid value found; give a pair in valid"))?;
        let pairs = |pairs: Vec<(Value, Value)>| {
            Value::Map(pairs.into_iter().filter_map(|(k, v)| Some((k.into_map_key()?, v))).collect())
        };
        let mut cases = vec![case("zero value: no pairs", Value::Map(HashMap::new()))];
        cases.push(case("a valid pair", pairs(vec![(valid_key.clone(), valid_value.clone())])));
        cases.extend(samples);
        for (rule, n) in [("map.min_pairs", map.min_pairs), ("map.max_pairs", map.max_pairs)] {
            let Some(n) = n.map(|n| n as usize) else { continue };
            for len in [n.checked_sub(1), Some(n), Some(n + 1)].into_iter().flatten() {
                let keys = distinct_keys(&valid_key, len);
                let value = pairs(keys.into_iter().map(|k| (k, valid_value.clone())).collect());
                let label = format!("{rule} {n}: {len} pairs");
                cases.push(if len == n { bound_case(label, value, rule) } else { case(label, value) });
            }
        }
        for key in self.scalar_cases(&key_kind, &key_rules, Some(&valid_key), Vec::new()) {
            let value = pairs(vec![(key.value.expect("a key"), valid_value.clone())]);
            cases.push(Case { label: format!("key: {}", key.label), value: Some(value), at_bound: key.at_bound });
        }
        for item in self.scalar_cases(&value_kind, &value_rules, Some(&valid_value), Vec::new()) {
            let value = pairs(vec![(valid_key.clone(), item.value.expect("a value"))]);
            cases.push(Case { label: format!("value: {}", item.label), value: Some(value), at_bound: item.at_bound });
        }
        Ok(dedup(cases))
    }

    /// A message the annotated rules accept: each field whose zero value they refuse gets the
    /// first value they accept.
    fn synthesize(&self, desc: &MessageDescriptor, path: &str) -> Result<DynamicMessage, String> {
        let mut message = DynamicMessage::new(desc.clone());
        if !desc.full_name().starts_with("chatmesh.") {
            return Ok(message);
        }
        for field in desc.fields() {
            let Some(rules) = field_rules(&field)? else { continue };
            let field_path = format!("{path}.{}", field.name());
            let zero = (!field.supports_presence()).then(|| field.default_value());
            if verdict(&field, &rules, zero.as_ref()).is_ok() {
                continue;
            }
            let cases = self.cases(&field, &field_path, &rules, zero.as_ref())?;
            let kind = field.kind();
            let pick = cases
                .into_iter()
                .filter_map(|c| c.value)
                .filter(|v| field.is_list() || field.is_map() || !is_zero(&kind, v))
                .find(|v| verdict(&field, &rules, Some(v)).is_ok())
                .ok_or_else(|| format!("cannot make a valid {field_path}: give one in valid or samples"))?;
            message.set_field(&field, pick);
        }
        Ok(message)
    }
}

/// `count` distinct keys like `key` (it, then it with a number appended).
fn distinct_keys(key: &Value, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| match key {
            Value::String(s) if i == 0 => Value::String(s.clone()),
            Value::String(s) => Value::String(format!("{s}{i}")),
            other => int_of(other)
                .and_then(|v| int_value(&kind_of_key(other), v + i as i128))
                .unwrap_or_else(|| other.clone()),
        })
        .collect()
}

fn kind_of_key(value: &Value) -> Kind {
    match value {
        Value::I32(_) => Kind::Int32,
        Value::I64(_) => Kind::Int64,
        Value::U32(_) => Kind::Uint32,
        Value::U64(_) => Kind::Uint64,
        Value::Bool(_) => Kind::Bool,
        _ => Kind::String,
    }
}

/// A sample (proto3 JSON) as a value of the field.
fn json_to_value(field: &FieldDescriptor, json: &Json) -> Result<Value, String> {
    let parent = field.parent_message();
    let object = Json::Object([(field.json_name().to_owned(), json.clone())].into_iter().collect());
    let message = DynamicMessage::deserialize(parent.clone(), object)
        .map_err(|e| format!("sample {json} for {}: {e}", field.full_name()))?;
    Ok(message.get_field(field).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Running the cases.

#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    disagreements: usize,
    problems: usize,
    /// Cases the rules accept that a stated relation to other fields refused.
    by_relation: usize,
}

#[derive(Debug, Default)]
struct Run {
    cases: usize,
    problems: Vec<String>,
    disagreements: Vec<String>,
    per_service: BTreeMap<String, Tally>,
}

impl Run {
    fn problem(&mut self, service: &str, problem: String) {
        self.per_service.entry(service.to_owned()).or_default().problems += 1;
        self.problems.push(problem);
    }
}

/// What the server answered.
#[derive(Debug)]
enum ServerVerdict {
    Accepted,
    /// INVALID_ARGUMENT, the message naming this field first.
    Refused(String),
    /// Anything else: another code, or another field named.
    Other(String),
    Undecodable,
}

fn server_verdict(rpc: &Rpc, message: &DynamicMessage, path: &str) -> ServerVerdict {
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
fn ensure_parents(
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
fn leaf_parent<'m>(message: &'m mut DynamicMessage, chain: &[FieldDescriptor]) -> &'m mut DynamicMessage {
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

/// Runs every case of one field on the entry's `valid` request (`bases[0]`); a case the rules
/// accept but a stated relation refuses there must be accepted on one of the other bases (at
/// the same field path, by the RPC of that base).
fn check_field(
    request: &MessageDescriptor,
    bases: &[Base],
    at: &FieldAt,
    contracts: &Contracts,
    entry: &Entry,
    run: &mut Run,
) {
    let service = service_of(request.full_name());
    let name = format!("{}.{}", request.name(), at.path);
    let field = at.field();
    let rules = match field_rules(field) {
        Ok(rules) => rules,
        Err(problem) => return run.problem(&service, format!("{name}: {problem}")),
    };
    let annotated = rules.is_some();
    let rules = rules.unwrap_or_default();
    let generator = Generator { contracts, entry };
    let rpc = bases[0].rpc;
    let mut base = bases[0].message.clone();
    match ensure_parents(&mut base, &at.chain, "", &generator) {
        Ok(false) => {}
        Ok(true) => {
            let verdict = server_verdict(rpc, &base, "");
            if !matches!(verdict, ServerVerdict::Accepted) {
                let problem = format!(
                    "{name}: the valid request with a synthesized parent is refused ({verdict:?}): give the parent in valid"
                );
                return run.problem(&service, problem);
            }
        }
        Err(problem) => return run.problem(&service, format!("{name}: {problem}")),
    }
    let current = read_at(&base, &at.chain).expect("the parents are present");
    let cases = match generator.cases(field, &at.path, &rules, current.as_ref()) {
        Ok(cases) => cases,
        Err(problem) => return run.problem(&service, format!("{name}: {problem}")),
    };

    let mut refused_by = BTreeSet::new();
    let mut bounds_accepted: BTreeMap<String, bool> = BTreeMap::new();
    let mut accepted_given = false;
    for case in cases {
        let value = match &case.value {
            Some(value) => Some(value.clone()),
            None if field.supports_presence() => None,
            None => Some(field.default_value()),
        };
        let expected = verdict(field, &rules, value.as_ref());
        match &expected {
            Ok(()) => {
                accepted_given |=
                    value.as_ref().is_some_and(|v| !v.is_default_for_field(field) || field.supports_presence())
            }
            Err(violations) => refused_by.extend(violations.iter().map(|v| v.rule.clone())),
        }
        for rule in &case.at_bound {
            *bounds_accepted.entry(rule.clone()).or_default() |= expected.is_ok();
        }
        let mut message = base.clone();
        let parent = leaf_parent(&mut message, &at.chain);
        match &value {
            Some(value) => parent.set_field(field, value.clone()),
            None => parent.clear_field(field),
        }
        let server = server_verdict(rpc, &message, &at.path);
        run.cases += 1;
        run.per_service.entry(service.clone()).or_default().cases += 1;
        let agree =
            matches!((&expected, &server), (Ok(()), ServerVerdict::Accepted) | (Err(_), ServerVerdict::Refused(_)));
        let relation = entry.relations.get(&at.path);
        let refused = matches!(&server, ServerVerdict::Refused(_))
            || matches!(&server, ServerVerdict::Other(m) if m.starts_with("InvalidArgument: "));
        let accepted_elsewhere = || {
            bases[1..].iter().any(|other| {
                let mut message = other.message.clone();
                // why: another request's chain starts at its own fields (checked when loaded to
                // end at the same field)
                let Some(chain) = chain_at(&message.descriptor(), &at.path) else { return false };
                ensure_parents(&mut message, &chain, "", &generator).is_ok() && {
                    let parent = leaf_parent(&mut message, &chain);
                    match &value {
                        Some(value) => parent.set_field(field, value.clone()),
                        None => parent.clear_field(field),
                    }
                    matches!(server_verdict(other.rpc, &message, &at.path), ServerVerdict::Accepted)
                }
            })
        };
        if !agree && expected.is_ok() && refused && relation.is_some() && accepted_elsewhere() {
            run.per_service.entry(service.clone()).or_default().by_relation += 1;
        } else if !agree {
            let expected = match &expected {
                Ok(()) => "accepted".to_owned(),
                Err(violations) => format!("refused: {}", describe_violations(violations)),
            };
            let server = match server {
                ServerVerdict::Accepted => "accepted".to_owned(),
                ServerVerdict::Refused(message) => format!("refused: {message}"),
                ServerVerdict::Other(message) => format!("refused, not naming {}: {message}", at.path),
                ServerVerdict::Undecodable => "could not decode the request".to_owned(),
            };
            let shown = value.as_ref().map_or("<unset>".to_owned(), describe_value);
            let hint = match (relation, refused && expected.starts_with("accepted")) {
                (_, false) => "",
                (None, true) => {
                    "\n      (if a relation to other fields stated in the field's comment refuses it here, name the field under \"relations\" \
                     and give a request where it is accepted under \"also_valid\"; else the server is stricter than the contract)"
                }
                (Some(_), true) if entry.also_valid.is_empty() => {
                    "\n      (a stated relation excuses a refusal only where a request of also_valid accepts the value; the entry gives none)"
                }
                (Some(_), true) => "\n      (refused in valid and in every request of also_valid too)",
            };
            run.disagreements.push(format!(
                "{name} = {shown} [{}]\n      contract: {expected}\n      server:   {server}{hint}",
                case.label
            ));
            run.per_service.entry(service.clone()).or_default().disagreements += 1;
        }
    }

    if !annotated {
        return;
    }
    // why: a check that cannot fail proves nothing: each rule must refuse a case, and each
    // boundary on the inside must be reached by an accepted value.
    let mut names = Vec::new();
    rule_names(&rules, "", &mut names);
    for rule in names.iter().filter(|r| !refused_by.contains(*r)) {
        run.problem(&service, format!("{name}: no case is refused by {rule}; add a sample the rule refuses"));
    }
    for (rule, _) in bounds_accepted.iter().filter(|(_, accepted)| !**accepted) {
        run.problem(
            &service,
            format!(
                "{name}: no value at the boundary of {rule} passes the other rules; add an accepted sample to build on"
            ),
        );
    }
    if !names.is_empty() && !accepted_given {
        run.problem(&service, format!("{name}: no given value is accepted; add an accepted sample"));
    }
}

/// A value for the report: strings escaped (anything but printable ASCII as `\u{…}`) with
/// runs shortened (`"a"×64`).
fn describe_value(value: &Value) -> String {
    match value {
        Value::String(s) => describe_string(s),
        Value::List(items) => {
            let shown: Vec<String> = items.iter().take(3).map(describe_value).collect();
            let more = if items.len() > 3 { format!(", … ({} items)", items.len()) } else { String::new() };
            format!("[{}{more}]", shown.join(", "))
        }
        Value::Map(pairs) => {
            let mut shown: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", describe_value(&Value::from(k.clone())), describe_value(v)))
                .collect();
            shown.sort();
            let n = shown.len();
            shown.truncate(3);
            let more = if n > 3 { format!(", … ({n} pairs)") } else { String::new() };
            format!("{{{}{more}}}", shown.join(", "))
        }
        Value::Message(m) => serde_json::to_string(m).unwrap_or_else(|e| format!("<{e}>")),
        Value::EnumNumber(n) => format!("enum {n}"),
        other => format!("{other:?}"),
    }
}

fn describe_string(s: &str) -> String {
    let escape = |c: char| {
        if (' '..='~').contains(&c) && c != '"' && c != '\\' { c.to_string() } else { format!("\\u{{{:X}}}", c as u32) }
    };
    let chars: Vec<char> = s.chars().collect();
    let mut parts = Vec::new();
    let mut plain = String::new();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..].iter().take_while(|c| **c == chars[i]).count();
        if run >= 5 {
            if !plain.is_empty() {
                parts.push(format!("\"{plain}\""));
                plain.clear();
            }
            parts.push(format!("\"{}\"×{run}", escape(chars[i])));
        } else {
            (0..run).for_each(|_| plain.push_str(&escape(chars[i])));
        }
        i += run;
    }
    if !plain.is_empty() || parts.is_empty() {
        parts.push(format!("\"{plain}\""));
    }
    format!("{} ({} chars, {} bytes)", parts.join(" + "), chars.len(), s.len())
}

fn fail_on(problems: Vec<String>, what: &str) {
    assert!(problems.is_empty(), "{} problems with the {what}:\n{}", problems.len(), problems.join("\n"));
}
