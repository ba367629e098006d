//! Counting the cases and showing what disagrees.

use std::collections::BTreeMap;

use prost_reflect::Value;

#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) cases: usize,
    pub(crate) disagreements: usize,
    pub(crate) problems: usize,
    /// Cases the rules accept that a stated relation to other fields refused.
    pub(crate) by_relation: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Run {
    pub(crate) cases: usize,
    pub(crate) problems: Vec<String>,
    pub(crate) disagreements: Vec<String>,
    pub(crate) per_service: BTreeMap<String, Tally>,
}

impl Run {
    pub(crate) fn problem(&mut self, service: &str, problem: String) {
        self.per_service.entry(service.to_owned()).or_default().problems += 1;
        self.problems.push(problem);
    }
}

/// A value for the report: strings escaped (anything but printable ASCII as `\u{…}`) with
/// runs shortened (`"a"×64`).
pub(crate) fn describe_value(value: &Value) -> String {
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

pub(crate) fn fail_on(problems: Vec<String>, what: &str) {
    assert!(problems.is_empty(), "{} problems with the {what}:\n{}", problems.len(), problems.join("\n"));
}
