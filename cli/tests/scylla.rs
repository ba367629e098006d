//! The ScyllaDB store from outside: `chatmesh admin migrate`, and parts refusing to start
//! rather than fall back when the cluster is unreachable. Against a real cluster
//! (`CHATMESH_TEST_SCYLLA=host:port`) migrations are applied twice, the second time as a no-op;
//! without one those cases print that they were skipped.

mod common;

use std::{process::Output, time::Instant};

use common::chatmesh;

fn run(data: &std::path::Path, envs: &[(&str, String)], args: &[&str]) -> Output {
    chatmesh(data).envs(envs.iter().map(|(k, v)| (*k, v.as_str()))).args(args).output().expect("the binary runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A contact point nothing listens on (port 1, privileged and unused on loopback).
fn unreachable() -> Vec<(&'static str, String)> {
    vec![
        ("CHATMESH_STORE__BACKEND", "scylla".into()),
        ("CHATMESH_STORE__SCYLLA__CONTACT_POINTS", r#"["127.0.0.1:1"]"#.into()),
        ("CHATMESH_STORE__SCYLLA__KEYSPACE", "chatmesh_unreachable".into()),
        ("CHATMESH_STORE__SCYLLA__CONNECT_TIMEOUT_MS", "500".into()),
    ]
}

#[test]
fn migrate_applies_to_scylladb_only_and_names_what_it_could_not_reach() {
    let data = tempfile::tempdir().unwrap();
    let embedded = run(data.path(), &[], &["admin", "migrate"]);
    assert!(!embedded.status.success());
    assert!(text(&embedded).contains("migrate applies to ScyllaDB"), "{}", text(&embedded));

    let started = Instant::now();
    let down = run(data.path(), &unreachable(), &["admin", "migrate"]);
    assert!(!down.status.success());
    let said = text(&down);
    assert!(said.contains("migrating keyspace chatmesh_unreachable"), "{said}");
    // a migrate that never gave up would hang the test (nextest ends it): the time is a figure
    println!("gave up after {:?}", started.elapsed());

    let unknown = run(data.path(), &[("CHATMESH_STORE__BACKEND", "cassandra".into())], &["admin", "migrate"]);
    assert!(!unknown.status.success());
    let said = text(&unknown);
    assert!(said.contains("STORE.BACKEND") && said.contains("cassandra"), "{said}");
}

#[test]
fn parts_with_a_store_refuse_to_start_without_their_cluster() {
    let data = tempfile::tempdir().unwrap();
    for part in ["user", "channel", "chat"] {
        let mut envs = unreachable();
        // why: the chat part needs its peers' addresses before it reaches its store
        envs.push(("CHATMESH_PEERS__USER", "http://127.0.0.1:1".into()));
        envs.push(("CHATMESH_PEERS__CHANNEL", "http://127.0.0.1:1".into()));
        envs.push(("CHATMESH_PEERS__CHAT", "http://127.0.0.1:1".into()));
        envs.push(("CHATMESH_PEERS__DISPATCHER", "http://127.0.0.1:1".into()));
        // why: a node id of its own, else it refuses before the store (no Redis leases one)
        envs.push(("CHATMESH_NODE_ID", "1".into()));
        let output = run(data.path(), &envs, &["serve", part]);
        assert!(!output.status.success(), "{part} started without its store");
        assert!(text(&output).contains("connecting to ScyllaDB"), "{part}: {}", text(&output));
        assert!(!data.path().join(part).exists(), "{part} kept state in the data dir instead");
    }
}

#[test]
fn migrations_apply_once_on_a_real_cluster() {
    let Ok(points) = std::env::var("CHATMESH_TEST_SCYLLA") else {
        println!("skipped: CHATMESH_TEST_SCYLLA not set");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let keyspace = format!("chatmesh_cli_{}", std::process::id());
    let dc = std::env::var("CHATMESH_TEST_SCYLLA_DC").unwrap_or_else(|_| "datacenter1".into());
    let envs = vec![
        ("CHATMESH_STORE__BACKEND", "scylla".into()),
        ("CHATMESH_STORE__SCYLLA__CONTACT_POINTS", format!("[\"{}\"]", points.replace(',', "\",\""))),
        ("CHATMESH_STORE__SCYLLA__KEYSPACE", keyspace.clone()),
        ("CHATMESH_STORE__SCYLLA__DATACENTER", dc),
        ("CHATMESH_STORE__SCYLLA__REPLICATION_FACTOR", "1".into()),
    ];
    let first = run(data.path(), &envs, &["admin", "migrate"]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("applied [1, 2, 3, 4]"), "{}", text(&first));
    let again = run(data.path(), &envs, &["admin", "migrate"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("nothing to apply"), "{}", text(&again));
}
