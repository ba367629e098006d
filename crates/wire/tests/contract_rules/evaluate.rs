//! The evaluator: the annotated rules' verdict on a value.

use std::{collections::HashMap, sync::OnceLock};

use prost_reflect::{FieldDescriptor, Kind, MapKey, Value};
use regex::Regex;

use crate::{
    contracts::map_entry,
    rules::{Ignore, MapRules, NANOS, RepeatedRules, Rules, TimestampRules, TypeRules, int_of, nanos_of, now_nanos},
};

/// The HTML standard's valid e-mail address, which protovalidate's `string.email` follows.
const WHATWG_EMAIL: &str = r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$";

/// A rule a value breaks: its name (`string.max_len`, `repeated.items.string.pattern`) and why.
#[derive(Debug, Clone)]
pub(crate) struct Violation {
    pub(crate) rule: String,
    why: String,
}

fn violation(rule: &str, why: impl Into<String>) -> Violation {
    Violation { rule: rule.to_owned(), why: why.into() }
}

pub(crate) fn describe_violations(violations: &[Violation]) -> String {
    violations.iter().map(|v| format!("{} ({})", v.why, v.rule)).collect::<Vec<_>>().join("; ")
}

/// The verdict of the field's rules on its value (`None`: unset, for a field tracking presence).
pub(crate) fn verdict(field: &FieldDescriptor, rules: &Rules, value: Option<&Value>) -> Result<(), Vec<Violation>> {
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
pub(crate) fn item_violations(rules: &Rules, kind: &Kind, value: &Value, prefix: &str) -> Vec<Violation> {
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

pub(crate) fn email_regex() -> &'static Regex {
    static EMAIL: OnceLock<Regex> = OnceLock::new();
    EMAIL.get_or_init(|| Regex::new(WHATWG_EMAIL).expect("the WHATWG email pattern compiles"))
}

pub(crate) fn scalar_violations(rules: &Rules, kind: &Kind, value: &Value) -> Vec<Violation> {
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
            violations.extend(range_violations(name, v, [r.gt, r.gte, r.lt, r.lte], &|b| b.to_string()));
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
        (Some(TypeRules::Timestamp(r)), _) if nanos_of(value).is_some() => {
            violations.extend(timestamp_violations(r, nanos_of(value).expect("a time"), now_nanos()));
        }
        (Some(kind), value) => violations.push(violation("type", format!("{kind:?} rules on {value:?}"))),
    }
    violations
}

/// The violations of a lower bound (`gt` or `gte`) and an upper one (`lt` or `lte`), named
/// `{name}.gt` and so on.
fn range_violations(
    name: &str,
    v: i128,
    [gt, gte, lt, lte]: [Option<i128>; 4],
    show: &dyn Fn(i128) -> String,
) -> Vec<Violation> {
    let rule = |suffix: &str| format!("{name}.{suffix}");
    // why: protovalidate reads `gt: 10, lt: 5` (upper below lower) as "outside 5..=10".
    let lower = gt
        .map(|b| (v > b, format!("> {}", show(b)), "gt", b))
        .or(gte.map(|b| (v >= b, format!(">= {}", show(b)), "gte", b)));
    let upper = lt
        .map(|b| (v < b, format!("< {}", show(b)), "lt", b))
        .or(lte.map(|b| (v <= b, format!("<= {}", show(b)), "lte", b)));
    let mut violations = Vec::new();
    match (lower, upper) {
        (Some((lo_ok, lo, lo_rule, lo_b)), Some((up_ok, up, up_rule, up_b))) if up_b < lo_b => {
            if !(lo_ok || up_ok) {
                violations.push(violation(
                    &rule(&format!("{lo_rule}_{up_rule}_exclusive")),
                    format!("{} is not {lo} or {up}", show(v)),
                ));
            }
        }
        (lower, upper) => {
            for (ok, what, r, _) in lower.into_iter().chain(upper) {
                if !ok {
                    violations.push(violation(&rule(r), format!("{} is not {what}", show(v))));
                }
            }
        }
    }
    violations
}

/// The verdict of timestamp rules on a time `at`, the clock reading `now` (both in nanoseconds
/// since the epoch), as protovalidate's expressions say: `gt_now` refuses a time before now,
/// `lt_now` one after, `within` one further from now than its duration.
pub(crate) fn timestamp_violations(r: &TimestampRules, at: i128, now: i128) -> Vec<Violation> {
    let mut violations = Vec::new();
    if let Some(c) = r.r#const
        && at != c
    {
        violations.push(violation("timestamp.const", format!("not {}", show_time(c))));
    }
    violations.extend(range_violations("timestamp", at, [r.gt, r.gte, r.lt, r.lte], &show_time));
    let (shown, now_shown) = (show_time(at), show_time(now));
    if r.gt_now && at < now {
        violations.push(violation("timestamp.gt_now", format!("{shown} is before now ({now_shown})")));
    }
    if r.lt_now && at > now {
        violations.push(violation("timestamp.lt_now", format!("{shown} is after now ({now_shown})")));
    }
    if let Some(d) = r.within
        && (at < now - d || at > now + d)
    {
        let within = if d % NANOS == 0 { format!("{}s", d / NANOS) } else { format!("{d} ns") };
        violations.push(violation("timestamp.within", format!("{shown} is more than {within} from now ({now_shown})")));
    }
    violations
}

/// A time in nanoseconds since the epoch, in RFC 3339.
pub(crate) fn show_time(nanos: i128) -> String {
    let seconds = i64::try_from(nanos.div_euclid(NANOS));
    let subsec = i32::try_from(nanos.rem_euclid(NANOS)).expect("below 1e9");
    match seconds {
        Ok(seconds) => prost_types::Timestamp { seconds, nanos: subsec }.to_string(),
        Err(_) => format!("{nanos} ns after the epoch"),
    }
}

/// The names of the rules annotated, as the evaluator names their violations.
pub(crate) fn rule_names(rules: &Rules, prefix: &str, out: &mut Vec<String>) {
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
            range_names(name, [r.gt, r.gte, r.lt, r.lte]).iter().for_each(|r| add(r));
            let set = [("const", r.r#const.is_some()), ("in", !r.r#in.is_empty()), ("not_in", !r.not_in.is_empty())];
            set.iter().filter(|(_, on)| *on).for_each(|(r, _)| add(&format!("{name}.{r}")));
        }
        Some(TypeRules::Timestamp(r)) => {
            range_names("timestamp", [r.gt, r.gte, r.lt, r.lte]).iter().for_each(|r| add(r));
            let set = [
                ("timestamp.const", r.r#const.is_some()),
                ("timestamp.lt_now", r.lt_now),
                ("timestamp.gt_now", r.gt_now),
                ("timestamp.within", r.within.is_some()),
            ];
            set.iter().filter(|(_, on)| *on).for_each(|(name, _)| add(name));
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

/// The names [`range_violations`] gives.
fn range_names(name: &str, [gt, gte, lt, lte]: [Option<i128>; 4]) -> Vec<String> {
    let lower = gt.map(|b| ("gt", b)).or(gte.map(|b| ("gte", b)));
    let upper = lt.map(|b| ("lt", b)).or(lte.map(|b| ("lte", b)));
    match (lower, upper) {
        (Some((lo, lo_b)), Some((up, up_b))) if up_b < lo_b => vec![format!("{name}.{lo}_{up}_exclusive")],
        (lower, upper) => lower.into_iter().chain(upper).map(|(r, _)| format!("{name}.{r}")).collect(),
    }
}
