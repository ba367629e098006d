use super::parse::parse;
use super::*;
use crate::{BatchKind, statement, values};

fn engine() -> (Arc<MemoryCql>, Cql) {
    let schema = Schema::parse([(
        "test",
        "CREATE TABLE IF NOT EXISTS m (c bigint, u bigint, name text STATIC, version bigint STATIC, role int, \
         PRIMARY KEY ((c), u)) WITH CLUSTERING ORDER BY (u DESC);\n\
         CREATE TABLE IF NOT EXISTS k (key text, owner bigint, PRIMARY KEY ((key)));",
    )])
    .unwrap();
    let memory = Arc::new(MemoryCql::new(schema));
    let cql = Cql::memory(memory.clone());
    (memory, cql)
}

static PUT: Statement = statement!("t.put", idempotent, "INSERT INTO m (c, u, role) VALUES (?, ?, ?)");
static LIST: Statement =
    statement!("t.list", idempotent, "SELECT u, role, name FROM m WHERE c = ? AND u < ? ORDER BY u ASC LIMIT ?");
static NEWEST: Statement = statement!("t.newest", idempotent, "SELECT u FROM m WHERE c = ? LIMIT ?");
static BUMP: Statement =
    statement!("t.bump", not_idempotent, "UPDATE m SET name = ?, version = ? WHERE c = ? IF version = ?");
static PUT_IF_VERSION: Statement =
    statement!("t.put_if", not_idempotent, "UPDATE m SET role = ? WHERE c = ? AND u = ? IF version = ?");
static CLAIM: Statement =
    statement!("t.claim", not_idempotent, "INSERT INTO k (key, owner) VALUES (?, ?) IF NOT EXISTS");
static RELEASE: Statement = statement!("t.release", not_idempotent, "DELETE FROM k WHERE key = ? IF owner = ?");
static OWNER: Statement = statement!("t.owner", idempotent, "SELECT owner FROM k WHERE key = ?");
static PUT_OWNER: Statement = statement!("t.put_owner", idempotent, "INSERT INTO k (key, owner) VALUES (?, ?)");
static TRIM: Statement = statement!("t.trim", idempotent, "DELETE FROM m WHERE c = ? AND u <= ?");
static DROP: Statement = statement!("t.drop", idempotent, "DELETE FROM m WHERE c = ? AND u = ?");
static WRONG_TYPE: Statement = statement!("t.wrong", idempotent, "SELECT u FROM m WHERE c = ? AND u = ?");
static PUT_AT: Statement =
    statement!("t.put_at", idempotent, "INSERT INTO m (c, u, role) VALUES (?, ?, ?) USING TTL ? AND TIMESTAMP ?");
static SET_ROLE_AT: Statement =
    statement!("t.set_role_at", idempotent, "UPDATE m USING TIMESTAMP ? SET role = ? WHERE c = ? AND u = ?");
static NAME_AT: Statement = statement!("t.name_at", idempotent, "UPDATE m USING TIMESTAMP ? SET name = ? WHERE c = ?");
static DROP_AT: Statement =
    statement!("t.drop_at", idempotent, "DELETE FROM m USING TIMESTAMP ? WHERE c = ? AND u = ?");
static TRIM_AT: Statement =
    statement!("t.trim_at", idempotent, "DELETE FROM m USING TIMESTAMP ? WHERE c = ? AND u <= ?");
static DROP_PARTITION_AT: Statement =
    statement!("t.drop_partition_at", idempotent, "DELETE FROM m USING TIMESTAMP ? WHERE c = ?");
static NAME: Statement = statement!("t.name", idempotent, "SELECT name FROM m WHERE c = ? LIMIT ?");

/// Writes `role` of row (c, u) at timestamp `ts` (a TTL of a day, not enforced).
fn put_at(c: u64, u: u64, role: i32, ts: i64) -> (&'static Statement, Vec<Value>) {
    (&PUT_AT, values![c, u, role, 86_400i32, ts])
}

/// Every live row of partition `c`: (u, role), ascending.
async fn roles(cql: &Cql, c: u64) -> Vec<(i64, Option<i32>)> {
    let rows: Vec<(i64, Option<i32>, Option<String>)> = cql.rows(&LIST, values![c, i64::MAX, 1000i32]).await.unwrap();
    rows.into_iter().map(|(u, role, _)| (u, role)).collect()
}

async fn run(cql: &Cql, (stmt, values): (&'static Statement, Vec<Value>)) {
    cql.execute(stmt, values).await.unwrap();
}

#[tokio::test]
async fn clustering_order_ranges_limits_and_statics() {
    let (_, cql) = engine();
    for u in 1..=5u64 {
        cql.execute(&PUT, values![9u64, u, u as i32]).await.unwrap();
    }
    assert!(cql.lwt(&BUMP, values!["general", 1i64, 9u64, Option::<i64>::None]).await.unwrap(), "null version");
    let rows: Vec<(i64, i32, Option<String>)> = cql.rows(&LIST, values![9u64, 4u64, 2i32]).await.unwrap();
    assert_eq!(rows, vec![(1, 1, Some("general".into())), (2, 2, Some("general".into()))]);
    let newest: Vec<(i64,)> = cql.rows(&NEWEST, values![9u64, 2i32]).await.unwrap();
    assert_eq!(newest, vec![(5,), (4,)], "the table's order is DESC");
    cql.execute(&TRIM, values![9u64, 3u64]).await.unwrap();
    let newest: Vec<(i64,)> = cql.rows(&NEWEST, values![9u64, 10i32]).await.unwrap();
    assert_eq!(newest, vec![(5,), (4,)]);
}

static PUT_REQUEST: Statement =
    statement!("t.put_request", idempotent, "INSERT INTO r (u, incoming, e, o) VALUES (?, ?, ?, ?)");
static REQUESTS: Statement = statement!("t.requests", idempotent, "SELECT incoming, e, o FROM r WHERE u = ? LIMIT ?");
static ONE_WAY: Statement =
    statement!("t.one_way", idempotent, "SELECT incoming, e, o FROM r WHERE u = ? AND incoming = ? AND e < ? LIMIT ?");
static REQUESTS_REVERSED: Statement = statement!(
    "t.requests_reversed",
    idempotent,
    "SELECT incoming, e, o FROM r WHERE u = ? ORDER BY incoming DESC LIMIT ?"
);

#[tokio::test]
async fn each_clustering_column_sorts_in_its_own_declared_order() {
    let schema = Schema::parse([(
        "t",
        "CREATE TABLE IF NOT EXISTS r (u bigint, incoming boolean, e bigint, o bigint, \
         PRIMARY KEY ((u), incoming, e, o)) WITH CLUSTERING ORDER BY (incoming ASC, e DESC, o ASC);",
    )])
    .unwrap();
    let cql = Cql::memory(Arc::new(MemoryCql::new(schema)));
    for (incoming, e, o) in [(true, 1u64, 5u64), (false, 2, 2), (false, 1, 1), (true, 3, 4), (false, 2, 1)] {
        cql.execute(&PUT_REQUEST, values![7u64, incoming, e, o]).await.unwrap();
    }
    let all: Vec<(bool, i64, i64)> = cql.rows(&REQUESTS, values![7u64, 10i32]).await.unwrap();
    let expected = vec![(false, 2, 1), (false, 2, 2), (false, 1, 1), (true, 3, 4), (true, 1, 5)];
    assert_eq!(all, expected, "incoming ascending, then e descending, then o ascending");
    let page: Vec<(bool, i64, i64)> = cql.rows(&ONE_WAY, values![7u64, true, 3u64, 1i32]).await.unwrap();
    assert_eq!(page, vec![(true, 1, 5)], "a range on the second column, in its order, cut by LIMIT");
    let reversed: Vec<(bool, i64, i64)> = cql.rows(&REQUESTS_REVERSED, values![7u64, 2i32]).await.unwrap();
    assert_eq!(reversed, vec![(true, 1, 5), (true, 3, 4)], "ORDER BY against the first column's order reverses all");
}

#[tokio::test]
async fn lightweight_transactions_and_conditional_batches() {
    let (_, cql) = engine();
    assert!(cql.lwt(&CLAIM, values!["a", 1u64]).await.unwrap());
    assert!(!cql.lwt(&CLAIM, values!["a", 2u64]).await.unwrap());
    assert!(!cql.lwt(&RELEASE, values!["a", 2u64]).await.unwrap());
    assert_eq!(cql.row::<(i64,)>(&OWNER, values!["a"]).await.unwrap(), Some((1,)));
    assert!(cql.lwt(&RELEASE, values!["a", 1u64]).await.unwrap());
    assert_eq!(cql.row::<(i64,)>(&OWNER, values!["a"]).await.unwrap(), None);
    assert!(cql.lwt(&CLAIM, values!["a", 3u64]).await.unwrap(), "a released claim can be taken again");

    assert!(cql.lwt(&BUMP, values!["x", 1i64, 9u64, Option::<i64>::None]).await.unwrap());
    let batch = |expected: i64, next: i64| {
        vec![(&BUMP, values!["x", next, 9u64, expected]), (&PUT_IF_VERSION, values![3i32, 9u64, 7u64, expected])]
    };
    assert!(!cql.batch(BatchKind::Unlogged, batch(5, 6)).await.unwrap(), "a stale version");
    assert!(cql.batch(BatchKind::Unlogged, batch(1, 2)).await.unwrap());
    let rows: Vec<(i64, i32, Option<String>)> = cql.rows(&LIST, values![9u64, 100u64, 10i32]).await.unwrap();
    assert_eq!(rows, vec![(7, 3, Some("x".into()))]);
    let spans = vec![(&BUMP, values!["x", 3i64, 9u64, 2i64]), (&CLAIM, values!["b", 1u64])];
    assert!(cql.batch(BatchKind::Logged, spans).await.is_err(), "a conditional batch on two partitions");
    let stamped = vec![(&BUMP, values!["x", 3i64, 9u64, 2i64]), put_at(9, 8, 1, 1)];
    let err = cql.batch(BatchKind::Unlogged, stamped).await.unwrap_err();
    assert!(err.to_string().contains("cannot carry USING TIMESTAMP"), "{err}");
}

#[tokio::test]
async fn values_and_rows_are_type_checked_by_the_driver() {
    let (_, cql) = engine();
    let err = cql.execute(&PUT, values![9u64, "one", 1i32]).await.unwrap_err();
    assert!(err.to_string().contains("value 2"), "{err}");
    let err = cql.rows::<(String,)>(&WRONG_TYPE, values![9u64, 1u64]).await.unwrap_err();
    assert!(err.to_string().contains("result rows"), "{err}");
    let err = cql.execute(&PUT, values![9u64, 1u64]).await.unwrap_err();
    assert!(err.to_string().contains("2 values bound to 3 markers"), "{err}");
    let err = cql.execute(&PUT_AT, values![9u64, 1u64, 1i32, 60i32, 5i32]).await.unwrap_err();
    assert!(err.to_string().contains("value 5"), "a timestamp binds a bigint: {err}");
    let err = cql.execute(&TRIM, values![9u64, Option::<i64>::None]).await.unwrap_err();
    assert!(err.to_string().contains("a null in key column u"), "{err}");
}

#[tokio::test]
async fn the_write_with_the_later_timestamp_wins_whatever_order_it_arrives_in() {
    let (memory, a) = engine();
    // with no skew, call order is last-write-wins order, whichever handle writes
    let same_clock = Cql::memory(memory.clone());
    a.execute(&PUT, values![1u64, 1u64, 1i32]).await.unwrap();
    same_clock.execute(&PUT, values![1u64, 1u64, 2i32]).await.unwrap();
    a.execute(&PUT, values![1u64, 1u64, 3i32]).await.unwrap();
    assert_eq!(roles(&a, 1).await, vec![(1, Some(3))]);
    // a pod whose clock is behind loses to an earlier write of a pod whose clock is not ...
    let behind = memory.client(-5_000);
    behind.execute(&PUT, values![1u64, 1u64, 4i32]).await.unwrap();
    assert_eq!(roles(&a, 1).await, vec![(1, Some(3))]);
    // ... while its own writes stay in its order (its clock is monotonic)
    behind.execute(&PUT, values![1u64, 2u64, 1i32]).await.unwrap();
    behind.execute(&PUT, values![1u64, 2u64, 2i32]).await.unwrap();
    assert_eq!(roles(&a, 1).await, vec![(1, Some(3)), (2, Some(2))]);
    // explicit timestamps decide, in INSERT and UPDATE
    run(&a, put_at(1, 3, 2, 2_000)).await;
    run(&a, put_at(1, 3, 1, 1_000)).await;
    assert_eq!(roles(&a, 1).await[2], (3, Some(2)));
    a.execute(&SET_ROLE_AT, values![1_500i64, 9i32, 1u64, 3u64]).await.unwrap();
    assert_eq!(roles(&a, 1).await[2], (3, Some(2)), "an older UPDATE loses");
    a.execute(&SET_ROLE_AT, values![2_500i64, 9i32, 1u64, 3u64]).await.unwrap();
    assert_eq!(roles(&a, 1).await[2], (3, Some(9)));
    // on a tie of live values the larger one wins, whatever the order
    run(&a, put_at(1, 4, 7, 1_000)).await;
    run(&a, put_at(1, 4, 5, 1_000)).await;
    assert_eq!(roles(&a, 1).await[3], (4, Some(7)));
}

#[tokio::test]
async fn timestamps_more_than_three_days_ahead_are_refused() {
    let (memory, cql) = engine();
    memory.set_time(1_000_000);
    let three_days_us: i64 = 3 * 86_400 * 1_000_000;
    run(&cql, put_at(1, 1, 1, 1_000_000_000 + three_days_us)).await;
    let (stmt, values) = put_at(1, 1, 1, 1_000_000_001 + three_days_us);
    let err = cql.execute(stmt, values).await.unwrap_err();
    assert!(matches!(err, CqlError::Invalid { .. }), "as ScyllaDB's restrict_future_timestamp: {err}");
}

#[tokio::test]
async fn a_tombstone_beats_a_write_of_the_same_timestamp() {
    let (_, cql) = engine();
    // a write, then a delete of its timestamp
    run(&cql, put_at(1, 1, 5, 1_000)).await;
    cql.execute(&DROP_AT, values![1_000i64, 1u64, 1u64]).await.unwrap();
    // a delete, then a write of its timestamp (then a newer one)
    cql.execute(&DROP_AT, values![2_000i64, 1u64, 2u64]).await.unwrap();
    run(&cql, put_at(1, 2, 5, 2_000)).await;
    assert_eq!(roles(&cql, 1).await, vec![]);
    run(&cql, put_at(1, 2, 6, 2_001)).await;
    assert_eq!(roles(&cql, 1).await, vec![(2, Some(6))]);
    // the statements of one batch share its timestamp: a delete and a write of one row in it
    // leave the row deleted, whatever their order
    let batch = vec![(&PUT, values![1u64, 3u64, 7i32]), (&DROP, values![1u64, 3u64])];
    assert!(cql.batch(BatchKind::Logged, batch).await.unwrap());
    assert_eq!(roles(&cql, 1).await, vec![(2, Some(6))]);
    // writing null is a cell tombstone: it beats a value of its timestamp; the row stays (its
    // INSERT's row marker)
    run(&cql, put_at(1, 4, 5, 1_000)).await;
    cql.execute(&SET_ROLE_AT, values![1_000i64, Option::<i32>::None, 1u64, 4u64]).await.unwrap();
    assert_eq!(roles(&cql, 1).await, vec![(2, Some(6)), (4, None)]);
}

#[tokio::test]
async fn a_range_delete_hides_older_rows_and_newer_writes_show_through() {
    let (_, cql) = engine();
    for u in 1..=5 {
        run(&cql, put_at(1, u, 1, 1_000)).await;
    }
    cql.execute(&TRIM_AT, values![2_000i64, 1u64, 3u64]).await.unwrap();
    let alive = |rows: Vec<(i64, Option<i32>)>| rows.into_iter().map(|(u, _)| u).collect::<Vec<_>>();
    assert_eq!(alive(roles(&cql, 1).await), vec![4, 5]);
    run(&cql, put_at(1, 2, 1, 3_000)).await;
    run(&cql, put_at(1, 1, 1, 1_500)).await;
    assert_eq!(alive(roles(&cql, 1).await), vec![2, 4, 5], "the newer write shows, the older one stays hidden");
    // a partition tombstone hides rows and static columns older than it
    cql.execute(&NAME_AT, values![3_500i64, "general", 1u64]).await.unwrap();
    assert_eq!(
        cql.rows::<(Option<String>,)>(&NAME, values![1u64, 1i32]).await.unwrap(),
        vec![(Some("general".into()),)]
    );
    cql.execute(&DROP_PARTITION_AT, values![4_000i64, 1u64]).await.unwrap();
    assert_eq!(roles(&cql, 1).await, vec![]);
    assert_eq!(cql.rows::<(Option<String>,)>(&NAME, values![1u64, 1i32]).await.unwrap(), vec![]);
    cql.execute(&NAME_AT, values![4_001i64, "again", 1u64]).await.unwrap();
    assert_eq!(cql.rows::<(Option<String>,)>(&NAME, values![1u64, 1i32]).await.unwrap(), vec![(Some("again".into()),)]);
}

#[tokio::test]
async fn a_held_batch_applies_later_with_its_old_timestamp_and_loses_to_newer_writes() {
    let (memory, cql) = engine();
    memory.hold_writes_of(&PUT, 2);
    cql.execute(&PUT_OWNER, values!["a", 0u64]).await.expect("a write without the held statement runs");
    let batch = vec![(&PUT, values![1u64, 1u64, 1i32]), (&PUT_OWNER, values!["a", 1u64])];
    assert!(cql.batch(BatchKind::Logged, batch).await.is_err(), "the caller sees a timeout");
    assert!(cql.execute(&PUT, values![1u64, 2u64, 1i32]).await.is_err());
    assert_eq!(memory.held(), 2);
    assert_eq!(roles(&cql, 1).await, vec![], "nothing applied yet");
    // meanwhile: a newer write of row 1, a delete of row 2
    cql.execute(&PUT, values![1u64, 1u64, 2i32]).await.expect("the holds are used up");
    cql.execute(&DROP, values![1u64, 2u64]).await.unwrap();
    assert_eq!(memory.release_held(), 2);
    assert_eq!(memory.held(), 0);
    assert_eq!(roles(&cql, 1).await, vec![(1, Some(2))], "both late writes lose to what was written after them");
    assert_eq!(cql.row::<(i64,)>(&OWNER, values!["a"]).await.unwrap(), Some((1,)), "the rest of the batch applied");
    // a timeout whose write applied anyway
    memory.fail_writes(1, true);
    assert!(cql.execute(&PUT, values![1u64, 3u64, 1i32]).await.is_err());
    assert_eq!(roles(&cql, 1).await.len(), 2);
}

#[tokio::test]
async fn a_crashed_process_sends_nothing_while_others_and_its_held_writes_go_on() {
    let (memory, a) = engine();
    let pod = memory.client(0);
    let background_task = pod.clone();
    memory.hold_writes(1);
    assert!(pod.execute(&PUT, values![1u64, 1u64, 1i32]).await.is_err());
    pod.crash();
    let err = background_task.execute(&PUT, values![1u64, 2u64, 1i32]).await.unwrap_err();
    assert!(err.to_string().contains("crashed"), "{err}");
    assert!(pod.rows::<(i64,)>(&NEWEST, values![1u64, 1i32]).await.is_err());
    a.execute(&PUT, values![1u64, 3u64, 1i32]).await.unwrap();
    assert_eq!(memory.release_held(), 1, "the cluster replays a dead pod's batch");
    let restarted = memory.client(0);
    assert_eq!(roles(&restarted, 1).await, vec![(1, Some(1)), (3, Some(1))]);
}

#[tokio::test]
async fn a_paused_call_waits_while_other_processes_run() {
    let (memory, a) = engine();
    let b = memory.client(0);
    let mut pause = memory.pause_before(&PUT);
    let stalled = tokio::spawn(async move { a.execute(&PUT, values![1u64, 1u64, 1i32]).await });
    pause.reached().await;
    b.execute(&PUT, values![1u64, 1u64, 2i32]).await.expect("a pause stops one call only");
    assert_eq!(roles(&b, 1).await, vec![(1, Some(2))], "the paused write has not run");
    pause.release();
    stalled.await.unwrap().unwrap();
    assert_eq!(roles(&b, 1).await, vec![(1, Some(1))], "it runs when released, stamped then");
}

#[tokio::test]
async fn reads_count_the_tombstones_they_scan_and_fail_past_the_threshold() {
    let (memory, cql) = engine();
    memory.set_limits(Limits { tombstone_warn: 2, tombstone_fail: 6, ..Limits::default() });
    for u in 1..=6u64 {
        cql.execute(&PUT, values![1u64, u, 1i32]).await.unwrap();
    }
    for u in 1..=3u64 {
        cql.execute(&DROP, values![1u64, u]).await.unwrap();
    }
    // newest first: two live rows before any tombstone
    let newest: Vec<(i64,)> = cql.rows(&NEWEST, values![1u64, 2i32]).await.unwrap();
    assert_eq!(newest, vec![(6,), (5,)]);
    // oldest first: three deleted rows before the first live one
    let oldest: Vec<(i64, i32, Option<String>)> = cql.rows(&LIST, values![1u64, 100u64, 1i32]).await.unwrap();
    assert_eq!(oldest, vec![(4, 1, None)]);
    let stats = memory.stats();
    assert_eq!(stats.reads["t.newest"], ReadStats { runs: 1, max_tombstones: 0, warnings: 0 });
    assert_eq!(stats.reads["t.list"], ReadStats { runs: 1, max_tombstones: 3, warnings: 1 });
    // five dead rows and the range tombstone over them; a second, same delete adds nothing
    cql.execute(&TRIM, values![1u64, 5u64]).await.unwrap();
    cql.execute(&TRIM, values![1u64, 5u64]).await.unwrap();
    let last: Vec<(i64, i32, Option<String>)> = cql.rows(&LIST, values![1u64, 100u64, 1i32]).await.unwrap();
    assert_eq!(last, vec![(6, 1, None)]);
    assert_eq!(memory.stats().reads["t.list"].max_tombstones, 6);
    cql.execute(&DROP, values![1u64, 6u64]).await.unwrap();
    let err = cql.rows::<(i64, i32, Option<String>)>(&LIST, values![1u64, 100u64, 1i32]).await.unwrap_err();
    assert!(err.to_string().contains("tombstone_failure_threshold"), "{err}");
    assert_eq!(memory.stats().reads["t.list"].max_tombstones, 7);
}

#[tokio::test]
async fn batches_spanning_partitions_are_measured_and_refused_past_the_threshold() {
    let (memory, cql) = engine();
    memory.set_limits(Limits { batch_warn_bytes: 20, batch_fail_bytes: 40, ..Limits::default() });
    // each PUT binds 8 + 8 + 4 bytes
    let put = |c: u64, u: u64| (&PUT, values![c, u, 1i32]);
    assert!(cql.batch(BatchKind::Unlogged, vec![put(1, 1), put(1, 2), put(1, 3)]).await.unwrap());
    assert_eq!(memory.stats().batches, 0, "a batch on one partition is not measured");
    assert!(cql.batch(BatchKind::Logged, vec![put(1, 4), put(2, 1)]).await.unwrap());
    let stats = memory.stats();
    assert_eq!((stats.batches, stats.max_batch_bytes, stats.batch_warnings), (1, 40, 1));
    let err = cql.batch(BatchKind::Logged, vec![put(1, 5), put(2, 2), put(3, 1)]).await.unwrap_err();
    assert!(matches!(err, CqlError::Invalid { .. }), "{err}");
    assert_eq!(roles(&cql, 3).await, vec![], "nothing of a refused batch applies");
    assert_eq!(memory.stats().max_batch_bytes, 60);
}

#[test]
fn the_lint_reports_lightweight_transactions_on_one_row_of_a_partition() {
    let (memory, _) = engine();
    static INSERT_IF_NEW: Statement =
        statement!("t.insert_if_new", not_idempotent, "INSERT INTO m (c, u, role) VALUES (?, ?, ?) IF NOT EXISTS");
    let found = memory.lint(&[&PUT, &BUMP, &CLAIM, &RELEASE, &PUT_IF_VERSION, &INSERT_IF_NEW]).unwrap();
    let names: Vec<&str> = found.iter().map(|f| f.statement).collect();
    assert_eq!(names, vec!["t.put_if", "t.insert_if_new"], "statics and unclustered tables set their partition");
    assert_eq!(found[0].partition_key, vec!["c"]);
    assert_eq!(found[0].row_key, vec!["c", "u"]);
    assert!(found[0].to_string().contains("by (c, u), but Paxos serializes its whole partition (c)"), "{}", found[0]);
}

/// The statements the stores declare (`statement!` and `Statement { .. }`), read from their
/// sources: name and CQL.
fn declared_statements() -> Vec<&'static Statement> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && path.to_string_lossy().contains("/store/") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("statement!(").chain(text.match_indices("Statement {")) {
            let mut literals = string_literals(&text[at..]);
            let (Some(name), Some(cql)) = (literals.next(), literals.next()) else { continue };
            let is_cql = ["SELECT", "INSERT", "UPDATE", "DELETE"].iter().any(|k| cql.starts_with(k));
            if is_cql {
                let leak = |s: String| &*Box::leak(s.into_boxed_str());
                let stmt = Statement {
                    name: leak(name),
                    cql: leak(cql),
                    consistency: crate::Consistency::LocalQuorum,
                    idempotent: false,
                };
                out.push(&*Box::leak(Box::new(stmt)));
            }
        }
    }
    out
}

/// The Rust string literals of `text`, unescaped (`\` line continuations, `\"`).
fn string_literals(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut chars = text.chars().peekable();
    std::iter::from_fn(move || {
        chars.by_ref().find(|c| *c == '"')?;
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(s),
                '\\' => match chars.next()? {
                    '\n' => while chars.next_if(|c| c.is_whitespace()).is_some() {},
                    other => s.push(other),
                },
                other => s.push(other),
            }
        }
        None
    })
}

#[test]
fn the_lint_over_the_stores_statements_finds_no_transaction_on_one_row_of_a_shared_partition() {
    let statements = declared_statements();
    assert!(statements.len() > 100, "the stores' statements are found ({})", statements.len());
    assert!(statements.iter().any(|s| s.name == "user.get_session"), "a Statement {{ .. }} is read too");
    let memory = MemoryCql::migrated();
    let found = memory.lint(&statements).unwrap();
    for finding in &found {
        println!("{finding}");
    }
    let names: Vec<&str> = found.iter().map(|f| f.statement).collect();
    assert_eq!(names, Vec::<&str>::new());
}

#[test]
fn statements_outside_the_subset_are_refused_with_a_reason() {
    let schema =
        Schema::parse([("t", "CREATE TABLE IF NOT EXISTS m (c bigint, u bigint, r int, PRIMARY KEY ((c), u));")])
            .unwrap();
    for (cql, reason) in [
        ("SELECT u FROM m WHERE u = ?", "partition key"),
        ("SELECT u FROM m WHERE c = ? LIMIT 1", "never literal"),
        ("SELECT u FROM m WHERE c = ? AND r = ?", "not a key column"),
        ("SELECT x FROM m WHERE c = ?", "no column x"),
        ("SELECT u FROM n WHERE c = ?", "no table n"),
        ("UPDATE m SET r = ? WHERE c = ?", "whole primary key"),
        ("INSERT INTO m (c, r) VALUES (?, ?)", "whole primary key"),
        ("UPDATE m USING TIMESTAMP ? SET r = ? WHERE c = ? AND u = ? IF r = ?", "cannot carry USING TIMESTAMP"),
        ("INSERT INTO m (c, u, r) VALUES (?, ?, ?) IF NOT EXISTS USING TIMESTAMP ?", "cannot carry USING"),
        ("DELETE FROM m USING TTL ? WHERE c = ?", "no TTL in a DELETE"),
        ("DELETE FROM m USING TIMESTAMP ? AND TIMESTAMP ? WHERE c = ?", "twice"),
    ] {
        let err = parse(&schema, cql).unwrap_err();
        assert!(err.contains(reason), "{cql}: {err}");
    }
}
