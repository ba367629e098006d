//! The Elasticsearch backend: golden request bodies, the pure parts, the client against a
//! scripted stand-in, and the shared suite against a real cluster.

use std::{path::PathBuf, sync::Arc};

use super::{
    bodies::{cjk_field, cjk_terms, document, words_field},
    bulk::MAX_TRACKED,
    *,
};
use crate::{IndexedChat, conformance, parse_query};

// --- golden files: what is sent, for a reviewer to read ---

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/elasticsearch/golden").join(name)
}

/// Compares `got` with the golden file `name` structurally; `CHATMESH_BLESS=1` rewrites it.
fn golden(name: &str, got: &Value) {
    let path = golden_path(name);
    if std::env::var("CHATMESH_BLESS").as_deref() == Ok("1") {
        // why: golden files change in a reviewed commit; a CI run that rewrote them could not fail
        assert!(std::env::var_os("CI").is_none(), "CHATMESH_BLESS is refused when CI is set");
        let text = serde_json::to_string_pretty(got).expect("json") + "\n";
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("golden folder");
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e} (CHATMESH_BLESS=1 writes it)", path.display()));
    let expected: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let mut differences = Vec::new();
    diff("", &expected, got, &mut differences);
    assert!(
        differences.is_empty(),
        "{} differs from what the code sends:\n{}\n(if the change is intended: CHATMESH_BLESS=1 rewrites it; \
         then review the file)",
        path.display(),
        differences.join("\n")
    );
}

/// The JSON pointers at which two values differ, with both sides.
fn diff(at: &str, expected: &Value, got: &Value, out: &mut Vec<String>) {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            let keys: std::collections::BTreeSet<&String> = e.keys().chain(g.keys()).collect();
            for key in keys {
                let here = format!("{at}/{key}");
                match (e.get(key), g.get(key)) {
                    (Some(e), Some(g)) => diff(&here, e, g, out),
                    (Some(e), None) => out.push(format!("  {here}: expected {e}, missing")),
                    (None, Some(g)) => out.push(format!("  {here}: not expected, got {g}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(e), Value::Array(g)) if e.len() == g.len() => {
            for (i, (e, g)) in e.iter().zip(g).enumerate() {
                diff(&format!("{at}/{i}"), e, g, out);
            }
        }
        _ if expected != got => {
            out.push(format!("  {}: expected {expected}, got {got}", if at.is_empty() { "/" } else { at }))
        }
        _ => {}
    }
}

fn chat(chat_id: u64, channel_id: u64, text: &str) -> IndexedChat {
    IndexedChat { version: 100 + chat_id, ..conformance::chat(chat_id, channel_id, 7, text) }
}

/// The requests of a write, as JSON.
fn describe(steps: &[Step]) -> Value {
    steps
        .iter()
        .map(|step| match step {
            Step::Bulk(ops) => json!({ "bulk": bulk_lines(ops) }),
            Step::DeleteChannel { channel_id, refresh_first } => {
                json!({ "delete_by_query": delete_channel_body(*channel_id), "refresh_first": refresh_first })
            }
        })
        .collect()
}

#[test]
fn the_index_template_matches_its_golden_file() {
    golden("template.json", &template_body(DEFAULT_INDEX));
    golden("meta_template.json", &meta_template_body(DEFAULT_INDEX));
}

#[test]
fn a_batch_becomes_bulks_around_a_channel_delete() {
    let changes = vec![
        IndexChange::Upsert(IndexedChat {
            removed_for: vec![9, 8], ..chat(1, 1, "Meetings at the Café 猫が好き!")
        }),
        IndexChange::Upsert(chat(2, 2, "release notes")),
        IndexChange::Delete { chat_id: 3, version: 103 },
        IndexChange::DeleteChannel { channel_id: 2 },
        IndexChange::Upsert(chat(4, 2, "after the delete")),
    ];
    let (steps, rejected) = plan(changes, &mut Staged::default());
    assert!(rejected.is_empty());
    golden("bulk.json", &describe(&steps));
}

#[test]
fn words_and_filters_query_matches_its_golden_file() {
    let q = IndexQuery {
        query: parse_query("MEETINGS plan").unwrap(),
        channel_ids: vec![1, 2],
        sender_id: Some(11),
        from_ms: Some(2000),
        until_ms: Some(5000),
        before_chat_id: Some(5),
        viewer: 8,
        limit: 20,
    };
    golden("search_words_and_filters.json", &search_body(&q));
}

#[test]
fn cjk_and_phrase_query_matches_its_golden_file() {
    let q = conformance::query("\"release notes\" 猫が好き 猫 好き", &[3]);
    golden("search_cjk_and_phrase.json", &search_body(&q));
}

#[test]
fn entries_request_matches_its_golden_file() {
    golden("entries.json", &entries_body(41, 500));
}

// --- pure parts ---

#[test]
fn documents_hold_the_tokens_of_our_own_analysis() {
    assert_eq!(words_field("Meetings at the Café猫が好きtomorrow"), "meet at the cafe tomorrow");
    let long = "x".repeat(50);
    assert_eq!(words_field(&format!("release {long} notes")), "releas _ note", "a dropped word keeps its place");
    assert_eq!(cjk_field("猫が好き and 犬"), "猫が が好 好き 猫 が 好 き 犬");
    assert_eq!(cjk_terms("猫"), vec!["猫"]);
    assert_eq!(cjk_terms("猫が好"), vec!["猫が", "が好"]);
    let digest = document(&chat(1, 1, "x"))["digest"].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(digest, chat(1, 1, "x").digest(), "the digest round-trips as a string");
}

#[test]
fn bulk_items_are_done_retried_or_rejected() {
    let sent = vec![
        DocOp::Upsert(chat(1, 1, "a")),
        DocOp::Upsert(chat(2, 1, "b")),
        DocOp::Upsert(chat(3, 1, "c")),
        DocOp::Upsert(chat(4, 1, "d")),
        DocOp::Delete { chat_id: 5, version: Some(7) },
    ];
    let response = json!({
        "took": 3,
        "errors": true,
        "items": [
            { "index": { "_id": "1", "_version": 101, "result": "created", "status": 201 } },
            { "index": { "_id": "2", "status": 409, "error": {
                "type": "version_conflict_engine_exception",
                "reason": "[2]: version conflict, current version [102] is higher or equal to the one provided [102]" } } },
            { "index": { "_id": "3", "status": 429, "error": {
                "type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation" } } },
            { "index": { "_id": "4", "status": 400, "error": {
                "type": "document_parsing_exception", "reason": "[1:2] failed to parse field [created_at]" } } },
            { "delete": { "_id": "5", "result": "not_found", "status": 404 } },
        ],
    });
    let outcome = classify(&response, &sent).unwrap();
    assert_eq!(outcome.done, vec![0, 1, 4]);
    assert_eq!(outcome.retry, vec![2]);
    assert_eq!(
        outcome.rejected,
        vec![Rejected {
            chat_id: 4,
            reason: "document_parsing_exception: [1:2] failed to parse field [created_at]".into()
        }]
    );
    assert!(outcome.retry_reason.unwrap().starts_with("HTTP 429: es_rejected_execution_exception"));

    let blocked = json!({ "items": [{ "index": { "_id": "1", "status": 403, "error": {
        "type": "cluster_block_exception", "reason": "index [chatmesh-chats] blocked by: [FORBIDDEN/8/index write (api)];" } } }] });
    let err = classify(&blocked, &sent[..1]).unwrap_err();
    assert!(err.to_string().contains("cluster_block_exception"), "{err}");
    assert!(classify(&json!({ "items": [] }), &sent[..1]).is_err(), "every item must be answered");
}

#[test]
fn a_retried_change_brings_the_later_changes_of_its_chat() {
    let ops = vec![
        DocOp::Upsert(chat(1, 1, "a")),
        DocOp::Upsert(chat(2, 1, "b")),
        DocOp::Delete { chat_id: 1, version: Some(4) },
        DocOp::Upsert(chat(3, 1, "c")),
    ];
    assert_eq!(with_followers(&ops, &[0]), vec![0, 2]);
    assert_eq!(with_followers(&ops, &[3]), vec![3]);
}

#[test]
fn staged_chats_of_a_deleted_channel_go_by_id_until_too_many_are_tracked() {
    let mut staged = Staged::default();
    let (steps, _) = plan(vec![IndexChange::Upsert(chat(1, 2, "a"))], &mut staged);
    assert_eq!(steps, vec![Step::Bulk(vec![DocOp::Upsert(chat(1, 2, "a"))])]);
    let (steps, _) = plan(vec![IndexChange::DeleteChannel { channel_id: 2 }], &mut staged);
    assert_eq!(
        steps,
        vec![
            Step::Bulk(vec![DocOp::Delete { chat_id: 1, version: None }]),
            Step::DeleteChannel { channel_id: 2, refresh_first: false }
        ]
    );

    let many = (0..=MAX_TRACKED as u64).map(|id| IndexChange::Upsert(chat(id, 2, "a"))).collect();
    let _ = plan(many, &mut staged);
    let (steps, _) = plan(vec![IndexChange::DeleteChannel { channel_id: 2 }], &mut staged);
    assert_eq!(steps, vec![Step::DeleteChannel { channel_id: 2, refresh_first: true }]);
}

#[test]
fn versions_beyond_elasticsearch_are_rejected_before_sending() {
    let chat = IndexedChat { version: u64::MAX, ..chat(1, 1, "a") };
    let (steps, rejected) = plan(vec![IndexChange::Upsert(chat)], &mut Staged::default());
    assert!(steps.is_empty());
    assert_eq!(rejected.len(), 1);
}

#[tokio::test]
async fn an_unreachable_cluster_is_an_error() {
    let settings = ElasticsearchSettings { url: "http://127.0.0.1:1".into(), ..Default::default() };
    let err = ElasticsearchIndex::connect(settings).await.unwrap_err();
    assert!(err.to_string().contains("index template"), "{err}");
    let settings = ElasticsearchSettings { url: "not a url".into(), ..Default::default() };
    assert!(ElasticsearchIndex::connect(settings).await.is_err());
}

#[tokio::test]
async fn a_configured_ca_bundle_is_loaded_into_the_client_and_a_bad_one_is_refused() {
    let ca = include_bytes!("../../../platform/testdata/tls/ca.pem").to_vec();
    // the client is built with the CA: the request is made, and fails only for want of a cluster
    let settings =
        ElasticsearchSettings { url: "https://127.0.0.1:1".into(), ca_certificate: Some(ca), ..Default::default() };
    let err = ElasticsearchIndex::connect(settings).await.unwrap_err().to_string();
    assert!(err.contains("index template") && !err.contains("CA bundle"), "{err}");
    let settings = ElasticsearchSettings { ca_certificate: Some(b"not a certificate".to_vec()), ..Default::default() };
    let err = ElasticsearchIndex::connect(settings).await.unwrap_err().to_string();
    assert!(err.contains("elasticsearch CA bundle"), "{err}");
}

#[test]
fn settings_do_not_print_the_password() {
    let settings = ElasticsearchSettings { password: Some("hunter2".into()), ..Default::default() };
    assert!(!format!("{settings:?}").contains("hunter2"));
}

// --- the client against a scripted stand-in for Elasticsearch ---

/// Requests seen: `METHOD /path?query` and the body.
type Seen = Arc<Mutex<Vec<(String, String)>>>;
/// Answers to give: path, status, body.
type Script = Arc<Mutex<Vec<(&'static str, u16, Value)>>>;

/// Answers requests from a script (by path, in order; 200 `{"acknowledged": true}` when
/// the script has nothing for a path) and records them.
struct Stand {
    url: String,
    seen: Seen,
}

async fn answer(
    axum::extract::State((script, seen)): axum::extract::State<(Script, Seen)>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    body: String,
) -> (axum::http::StatusCode, String) {
    seen.lock().unwrap().push((format!("{method} {uri}"), body));
    let mut script = script.lock().unwrap();
    let (status, answer) = match script.iter().position(|(path, _, _)| *path == uri.path()) {
        Some(i) => {
            let (_, status, answer) = script.remove(i);
            (status, answer)
        }
        None => (200, json!({ "acknowledged": true })),
    };
    (axum::http::StatusCode::from_u16(status).unwrap(), answer.to_string())
}

impl Stand {
    async fn start(script: Vec<(&'static str, u16, Value)>) -> Self {
        let seen = Seen::default();
        let app = axum::Router::new().fallback(answer).with_state((Arc::new(Mutex::new(script)), seen.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|(request, _)| request.clone()).collect()
    }

    /// The bodies of the requests to `path`, each as its JSON lines.
    fn bodies(&self, path: &str) -> Vec<Vec<Value>> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(request, _)| request.split(['?', ' ']).nth(1) == Some(path))
            .map(|(_, body)| body.lines().map(|line| serde_json::from_str(line).unwrap()).collect())
            .collect()
    }
}

#[tokio::test]
async fn a_write_retries_what_was_refused_for_now_and_deletes_a_channel_in_order() {
    let item = |op: &str, id: u64, status: u16| json!({ op: { "_id": id.to_string(), "status": status } });
    let busy =
        json!({ "index": { "_id": "2", "status": 429, "error": { "type": "es_rejected_execution_exception" } } });
    let malformed = json!({ "index": { "_id": "4", "status": 400, "error": {
        "type": "document_parsing_exception", "reason": "bad" } } });
    let stand = Stand::start(vec![
        ("/chatmesh-chats/_bulk", 200, json!({ "items": [item("index", 1, 201), busy, malformed, item("delete", 1, 200)] })),
        ("/chatmesh-chats/_bulk", 200, json!({ "items": [item("index", 2, 201)] })),
        ("/chatmesh-chats/_delete_by_query", 200, json!({ "deleted": 3, "failures": [], "timed_out": false })),
        ("/chatmesh-chats/_bulk", 200, json!({ "items": [item("index", 3, 201)] })),
        ("/chatmesh-chats/_refresh", 200, json!({ "_shards": { "total": 1, "successful": 1, "failed": 0 } })),
        ("/chatmesh-chats-meta/_doc/position", 201, json!({ "result": "created" })),
        ("/chatmesh-chats-meta/_doc/position", 200, json!({ "found": true, "_source": { "position": 7 } })),
        ("/chatmesh-chats/_search", 200, json!({ "hits": { "hits": [{ "_id": "3" }, { "_id": "1" }] } })),
        ("/chatmesh-chats/_count", 200, json!({ "count": 2 })),
        (
            "/chatmesh-chats/_search",
            200,
            json!({ "hits": { "hits": [{ "_id": "3", "_source": { "version": 103, "digest": "18446744073709551615" } }] } }),
        ),
    ])
    .await;
    let settings = ElasticsearchSettings { url: stand.url.clone(), ..Default::default() };
    let index = ElasticsearchIndex::connect(settings).await.unwrap();

    let rejected = index
        .write(vec![
            IndexChange::Upsert(chat(1, 1, "one")),
            IndexChange::Upsert(chat(2, 2, "two")),
            IndexChange::Upsert(chat(4, 2, "four")),
            IndexChange::DeleteChannel { channel_id: 1 },
            IndexChange::Upsert(chat(3, 1, "three")),
        ])
        .await
        .unwrap();
    assert_eq!(rejected, vec![Rejected { chat_id: 4, reason: "document_parsing_exception: bad".into() }]);
    index.commit(7).await.unwrap();
    assert_eq!(index.position().await.unwrap(), 7);
    assert_eq!(index.search(conformance::query("three", &[1])).await.unwrap(), vec![3, 1]);
    assert_eq!(index.documents().await.unwrap(), 2);
    let entries = index.entries_after(2, 10).await.unwrap();
    assert_eq!(entries, vec![IndexEntry { chat_id: 3, version: 103, digest: u64::MAX }]);

    assert_eq!(
        stand.requests(),
        vec![
            "PUT /_index_template/chatmesh-chats-meta",
            "PUT /_index_template/chatmesh-chats",
            "PUT /chatmesh-chats",
            "PUT /chatmesh-chats-meta",
            "POST /chatmesh-chats/_bulk?refresh=false",
            "POST /chatmesh-chats/_bulk?refresh=false",
            "POST /chatmesh-chats/_delete_by_query?conflicts=proceed&refresh=false",
            "POST /chatmesh-chats/_bulk?refresh=false",
            "GET /chatmesh-chats/_refresh",
            "POST /chatmesh-chats-meta/_doc/position",
            "GET /chatmesh-chats-meta/_doc/position",
            "POST /chatmesh-chats/_search",
            "GET /chatmesh-chats/_count",
            "POST /chatmesh-chats/_search",
        ]
    );
    let bulks = stand.bodies("/chatmesh-chats/_bulk");
    let ids = |lines: &Vec<Value>| -> Vec<String> {
        lines.iter().filter_map(|l| l.as_object()?.values().next()?.get("_id")?.as_str().map(str::to_owned)).collect()
    };
    assert_eq!(ids(&bulks[0]), ["1", "2", "4", "1"], "the staged chat of the channel goes by id");
    assert_eq!(ids(&bulks[1]), ["2"], "only what was refused for now is sent again");
    assert_eq!(ids(&bulks[2]), ["3"], "what follows a channel delete is sent after it");
}

#[tokio::test]
async fn a_bulk_refused_every_time_fails_the_write() {
    let busy = json!({ "items": [{ "index": { "_id": "1", "status": 503, "error": { "type": "unavailable_shards_exception" } } }] });
    let stand = Stand::start((0..ATTEMPTS).map(|_| ("/chatmesh-chats/_bulk", 200, busy.clone())).collect()).await;
    let index = ElasticsearchIndex::connect(ElasticsearchSettings { url: stand.url.clone(), ..Default::default() })
        .await
        .unwrap();
    let err = index.write(vec![IndexChange::Upsert(chat(1, 1, "one"))]).await.unwrap_err();
    assert!(err.to_string().contains("after 5 attempts: HTTP 503: unavailable_shards_exception"), "{err}");
    assert_eq!(stand.bodies("/chatmesh-chats/_bulk").len(), ATTEMPTS as usize);
}

// --- the shared suite, against a real cluster ---

/// Deletes a case's indices and templates when it ends, passed or failed.
struct Destroy {
    url: String,
    indices: [String; 2],
}

impl Destroy {
    fn of(url: String, index: &ElasticsearchIndex) -> Self {
        Self { url, indices: [index.index.clone(), index.meta_index.clone()] }
    }
}

impl Drop for Destroy {
    fn drop(&mut self) {
        use elasticsearch::indices::{IndicesDeleteIndexTemplateParts, IndicesDeleteParts};
        let (url, names) = (self.url.clone(), self.indices.clone());
        // why: drop cannot await, and the case's runtime is blocked here; a thread with its own
        // runtime and its own client (the case's pooled connections belong to the blocked runtime)
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            let pool = SingleNodeConnectionPool::new(Url::parse(&url).expect("the url connected to"));
            let client = Elasticsearch::new(TransportBuilder::new(pool).build().expect("a client"));
            runtime.block_on(async {
                let indices = client.indices();
                let _ = indices.delete(IndicesDeleteParts::Index(&[&names[0], &names[1]])).send().await;
                for name in &names {
                    let _ = indices.delete_index_template(IndicesDeleteIndexTemplateParts::Name(name)).send().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

mod against_elasticsearch {
    use super::*;

    // skipped with a printed "skipped: CHATMESH_TEST_ELASTICSEARCH not set" unless a cluster is configured
    crate::search_index_suite!(async |_case: &'static str| async move {
        let Ok(url) = std::env::var("CHATMESH_TEST_ELASTICSEARCH") else {
            println!("skipped: CHATMESH_TEST_ELASTICSEARCH not set");
            return None;
        };
        let settings = ElasticsearchSettings {
            url: url.clone(),
            index: format!("chatmesh-test-{}", uuid::Uuid::new_v4().simple()),
            ..Default::default()
        };
        let index = ElasticsearchIndex::connect(settings).await.expect("elasticsearch connects");
        Some((Destroy::of(url, &index), index))
    });
}
