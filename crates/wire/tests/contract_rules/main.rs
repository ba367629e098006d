//! The contracts say what the server enforces (docs/contracts.md): generated from the
//! descriptors, for every request message of every chatmesh service and every message nested
//! in one. Each field declares its behaviour; each annotated `buf.validate` rule is evaluated
//! here on boundary values generated from the rule and on the samples of `tests/contracts/`,
//! and the verdict must be the one `chatmesh_wire` gives (through the RPC registry): accepted,
//! or refused naming the field. A rule this evaluator does not know fails the test.

mod contracts;
mod evaluate;
mod generate;
mod report;
mod rules;
mod server;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use prost_reflect::{Kind, MessageDescriptor, ReflectMessage as _, Value};
use regex::Regex;

use crate::{
    contracts::{Base, Contracts, EMAIL_SAMPLES, Entry, reachable_messages, requests, service_of, valid_bases},
    evaluate::{describe_violations, email_regex, rule_names, scalar_violations, timestamp_violations, verdict},
    generate::Generator,
    report::{Run, describe_value, fail_on},
    rules::{
        NANOS, OPTIONAL, OUTPUT_ONLY, REQUIRED, Rules, StringRules, TimestampRules, TypeRules, behaviours,
        check_message_rules, field_rules,
    },
    server::{FieldAt, ServerVerdict, chain_at, ensure_parents, field_paths, leaf_parent, read_at, server_verdict},
};

/// Fewer cases than this means the generation lost its way.
const MIN_CASES: usize = 2000;

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
fn the_evaluator_judges_times_against_the_clock_reading_as_protovalidates_expressions_do() {
    let now = 1_800_000_000 * NANOS;
    let year = 365 * 24 * 3600 * NANOS;
    let ahead = TimestampRules { gt_now: true, within: Some(year), ..Default::default() };
    let rules_broken = |rules: &TimestampRules, at: i128| {
        timestamp_violations(rules, at, now).into_iter().map(|v| v.rule).collect::<Vec<_>>()
    };
    assert_eq!(rules_broken(&ahead, now - 1), ["timestamp.gt_now"]);
    assert!(rules_broken(&ahead, now).is_empty(), "gt_now refuses a time before now, not now itself");
    assert!(rules_broken(&ahead, now + year).is_empty(), "within includes its ends");
    assert_eq!(rules_broken(&ahead, now + year + 1), ["timestamp.within"]);
    assert_eq!(rules_broken(&ahead, now - year - 1), ["timestamp.gt_now", "timestamp.within"]);
    let behind = TimestampRules { lt_now: true, ..Default::default() };
    assert_eq!(rules_broken(&behind, now + 1), ["timestamp.lt_now"]);
    let outside = TimestampRules { gte: Some(10), lt: Some(5), ..Default::default() };
    assert_eq!(rules_broken(&outside, 7), ["timestamp.gte_lt_exclusive"]);
    assert!(rules_broken(&outside, 4).is_empty() && rules_broken(&outside, 10).is_empty());
    let exact = TimestampRules { r#const: Some(3), gt: Some(0), ..Default::default() };
    assert_eq!(rules_broken(&exact, 0), ["timestamp.const", "timestamp.gt"]);
    let mut names = Vec::new();
    let rules = Rules { kind: Some(TypeRules::Timestamp(ahead)), ..Default::default() };
    rule_names(&rules, "", &mut names);
    assert_eq!(names, ["timestamp.gt_now", "timestamp.within"]);
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
