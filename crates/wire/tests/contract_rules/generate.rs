//! The cases: values generated from the rules, and the samples.

use std::{collections::HashMap, ops::RangeInclusive};

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};
use serde_json::Value as Json;

use crate::{
    contracts::{Contracts, EMAIL_SAMPLES, Entry, map_entry},
    evaluate::{item_violations, show_time, verdict},
    rules::{
        MapRules, NANOS, RepeatedRules, Rules, TIMESTAMP, TimestampRules, TypeRules, field_rules, int_of, now_nanos,
        unsupported,
    },
};

/// How long a run may take from making a case relative to the clock to judging it: such a case
/// near a bound sits this far inside or outside it (the bounds relative to now are longer).
const SLACK: i128 = 10 * 60 * NANOS;
const HOUR: i128 = 3600 * NANOS;
const DAY: i128 = 24 * HOUR;
/// The times a `google.protobuf.Timestamp` names, in nanoseconds since the epoch: 0001-01-01T00:00:00Z
/// to 9999-12-31T23:59:59.999999999Z.
const TIMES: RangeInclusive<i128> = -62_135_596_800 * NANOS..=253_402_300_800 * NANOS - 1;

/// One value to give a field (`None`: unset it).
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) label: String,
    pub(crate) value: Option<Value>,
    /// The rules whose boundary this value sits on, inside: it must be accepted.
    pub(crate) at_bound: Vec<String>,
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
pub(crate) struct Generator<'a> {
    pub(crate) contracts: &'a Contracts,
    pub(crate) entry: &'a Entry,
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
    pub(crate) fn cases(
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
            if desc.full_name() == TIMESTAMP {
                cases.extend(current.map(|value| case("valid value", value.clone())));
                cases.extend(samples);
                cases.extend(timestamp_cases(desc, rules));
                return Ok(dedup(cases));
            }
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
    pub(crate) fn synthesize(&self, desc: &MessageDescriptor, path: &str) -> Result<DynamicMessage, String> {
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

/// The times of a Timestamp field: fixed ones, ones 1 ns around each fixed bound, and ones
/// relative to the clock now (around the `_now` and `within` bounds, [`SLACK`] from them).
fn timestamp_cases(desc: &MessageDescriptor, rules: &Rules) -> Vec<Case> {
    let r = match &rules.kind {
        Some(TypeRules::Timestamp(r)) => r.clone(),
        _ => TimestampRules::default(),
    };
    let mut times: Vec<(String, i128, Option<String>)> =
        vec![("epoch".into(), 0, None), ("2024-01-01".into(), 1_704_067_200 * NANOS, None)];
    for (suffix, bound, inside) in [("gt", r.gt, 1), ("gte", r.gte, 0), ("lt", r.lt, -1), ("lte", r.lte, 0)] {
        let Some(b) = bound else { continue };
        let rule = format!("timestamp.{suffix}");
        for delta in -1..=1 {
            times.push((
                format!("{rule} {}: {delta:+} ns", show_time(b)),
                b + delta,
                (delta == inside).then(|| rule.clone()),
            ));
        }
    }
    if let Some(c) = r.r#const {
        times.extend([-1, 0, 1].map(|delta| (format!("timestamp.const {delta:+} ns"), c + delta, None)));
    }
    // why: made from the clock now, judged on it read again (by the evaluator and the server)
    // a moment later: a case stays SLACK or more from each bound relative to now.
    let now = now_nanos();
    let bound = |on: bool, rule: &str| on.then(|| rule.to_owned());
    let mut relative = vec![
        ("now − 10 min".to_owned(), -SLACK, bound(r.lt_now, "timestamp.lt_now")),
        ("now + 10 min".to_owned(), SLACK, bound(r.gt_now, "timestamp.gt_now")),
        ("now − 1 h".to_owned(), -HOUR, None),
        ("now + 1 h".to_owned(), HOUR, None),
        ("now − 366 days".to_owned(), -366 * DAY, None),
        ("now + 366 days".to_owned(), 366 * DAY, None),
    ];
    if let Some(d) = r.within {
        let around = [
            ("− 1 day", d - DAY, true),
            ("− 10 min", d - SLACK, true),
            ("+ 10 min", d + SLACK, false),
            ("+ 1 day", d + DAY, false),
        ];
        for (tail, offset, inside) in around.into_iter().filter(|(_, offset, _)| *offset > 0) {
            for (sign, signed) in [("−", -offset), ("+", offset)] {
                relative.push((format!("now {sign} (within {tail})"), signed, bound(inside, "timestamp.within")));
            }
        }
    }
    times.extend(relative.into_iter().map(|(label, offset, rule)| (label, now + offset, rule)));
    times
        .into_iter()
        .filter(|(_, at, _)| TIMES.contains(at))
        .map(|(label, at, rule)| Case {
            label,
            value: Some(time_value(desc, at)),
            at_bound: rule.into_iter().collect(),
        })
        .collect()
}

/// A `google.protobuf.Timestamp` of a time in nanoseconds since the epoch.
fn time_value(desc: &MessageDescriptor, at: i128) -> Value {
    let seconds = i64::try_from(at.div_euclid(NANOS)).expect("a time's seconds fit an i64");
    let nanos = i32::try_from(at.rem_euclid(NANOS)).expect("below 1e9");
    let mut time = DynamicMessage::new(desc.clone());
    time.set_field_by_name("seconds", Value::I64(seconds));
    time.set_field_by_name("nanos", Value::I32(nanos));
    Value::Message(time)
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
