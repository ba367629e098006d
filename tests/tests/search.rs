//! Search from outside: results follow current membership, never show what was retracted or
//! removed (even before the index catches up), and every filter finds exactly its chats.

use std::{collections::BTreeSet, time::Duration};

use chatmesh_api::{
    channel::v1::{self as channel_pb, ChannelVisibility},
    chat::v1::{self as pb, chat_service_client::ChatServiceClient},
};
use chatmesh_tests::{TestApp, User, authed, test_config};
use tonic::{Code, transport::Channel};

async fn send(client: &mut ChatServiceClient<Channel>, who: &User, channel_id: &str, text: &str) -> pb::Chat {
    let request = pb::CreateChatRequest { channel_id: channel_id.into(), text: text.into(), ..Default::default() };
    client.create_chat(authed(&who.token, request)).await.expect("send").into_inner().chat.expect("chat")
}

async fn search(
    client: &mut ChatServiceClient<Channel>,
    who: &User,
    request: pb::SearchChatsRequest,
) -> Result<pb::SearchChatsResponse, tonic::Status> {
    client.search_chats(authed(&who.token, request)).await.map(|r| r.into_inner())
}

fn query(text: &str) -> pb::SearchChatsRequest {
    pb::SearchChatsRequest { query: text.into(), ..Default::default() }
}

/// Chat ids found for `text`, over every page.
async fn found(client: &mut ChatServiceClient<Channel>, who: &User, request: pb::SearchChatsRequest) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page =
            search(client, who, pb::SearchChatsRequest { page_token: token, ..request.clone() }).await.expect("search");
        ids.extend(page.hits.iter().map(|h| h.chat.as_ref().expect("chat").chat_id.clone()));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

/// A word of letters only, unique per `i` (so stemming leaves every one distinct).
fn word(i: usize) -> String {
    let mut w = String::from("zq");
    let mut n = i;
    for _ in 0..3 {
        w.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    w.push('x');
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_queries_follow_membership_of_the_channel_they_match() {
    let app = TestApp::spawn().await;
    let (owner, leaver, stayer) = (app.user("owner").await, app.user("leaver").await, app.user("stayer").await);
    let x = app.group(&owner, ChannelVisibility::Private, &[&leaver, &stayer]).await.channel_id;
    let other = app.group(&owner, ChannelVisibility::Private, &[&leaver]).await.channel_id;
    let mut chats = app.chats().await;
    // 100 chats in X with 10 words each that occur nowhere else; the leaver's other channel
    // gets chats of its own words.
    let mut chat_of_word = Vec::new();
    for c in 0..100 {
        let words: Vec<String> = (0..10).map(|k| word(c * 10 + k)).collect();
        let chat = send(&mut chats, &owner, &x, &format!("about {}", words.join(" "))).await;
        chat_of_word.extend(std::iter::repeat_n(chat.chat_id, 10));
        send(&mut chats, &owner, &other, &format!("about {}", word(5000 + c))).await;
    }
    app.search_caught_up().await;

    // each query: one word, or two words of the same chat
    let queries: Vec<(String, &String)> = (0..1000)
        .map(|i| {
            let text = if i % 2 == 0 { word(i) } else { format!("{} {}", word(i), word(i - i % 10)) };
            (text, &chat_of_word[i])
        })
        .collect();
    for (text, chat_id) in &queries {
        let hits = found(&mut chats, &leaver, query(text)).await;
        assert_eq!(&hits, &vec![(*chat_id).clone()], "a member finds {text:?}");
    }
    let leave = channel_pb::DeleteMemberRequest { channel_id: x.clone(), user_id: leaver.id.clone() };
    app.channels().await.delete_member(authed(&leaver.token, leave)).await.expect("leave");
    let mut foreign = 0;
    for (text, chat_id) in &queries {
        foreign += found(&mut chats, &leaver, query(text)).await.len();
        let hits = found(&mut chats, &stayer, query(text)).await;
        assert_eq!(&hits, &vec![(*chat_id).clone()], "a current member still finds {text:?}");
    }
    assert_eq!(foreign, 0, "after leaving, nothing of X is found");
    // the leaver's own channels still answer
    assert_eq!(found(&mut chats, &leaver, query("about")).await.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retracted_and_removed_words_are_never_found_even_before_the_index_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path().to_owned());
    // why: a long commit interval holds changes staged, so searches run before they land.
    config.search.commit_interval_ms = 3000;
    let app = TestApp::spawn_with(config).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let channel = app.group(&alice, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let mut chats = app.chats().await;
    let retracted = send(&mut chats, &alice, &channel, "walrus retracted soon").await.chat_id;
    let removed = send(&mut chats, &alice, &channel, "walrus removed by bob").await.chat_id;
    let kept = send(&mut chats, &alice, &channel, "walrus kept").await.chat_id;
    app.search_caught_up().await;
    assert_eq!(app.search_status().await.documents, 3);
    let (status, metrics) = chatmesh_tests::raw::http(app.metrics_addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    for metric in ["chatmesh_search_lag_seconds", "chatmesh_search_documents", "chatmesh_search_commits_total"] {
        assert!(metrics.contains(metric), "{metric} in {metrics}");
    }
    assert_eq!(found(&mut chats, &bob, query("walrus")).await, vec![kept.clone(), removed.clone(), retracted.clone()]);

    let retract = pb::RetractChatsRequest { chat_ids: vec![retracted.clone()] };
    chats.retract_chats(authed(&alice.token, retract)).await.expect("retract");
    let remove = pb::RemoveChatsRequest { chat_ids: vec![removed.clone()] };
    chats.remove_chats(authed(&bob.token, remove)).await.expect("remove");
    let status = app.search_status().await;
    assert!(status.lag_events >= 2, "the index has not caught up yet: {status:?}");
    assert_eq!(found(&mut chats, &bob, query("walrus")).await, vec![kept.clone()], "post-filtered");
    assert_eq!(found(&mut chats, &bob, query("retracted")).await, Vec::<String>::new());
    assert_eq!(found(&mut chats, &alice, query("walrus")).await, vec![kept.clone(), removed.clone()]);

    app.search_caught_up().await;
    assert_eq!(app.search_status().await.documents, 2, "the retracted chat left the index");
    assert_eq!(found(&mut chats, &bob, query("walrus")).await, vec![kept.clone()]);
    assert_eq!(found(&mut chats, &alice, query("walrus")).await, vec![kept, removed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn words_phrases_and_filters_find_exactly_their_chats() {
    let app = TestApp::spawn().await;
    let (alice, bob, outsider) = (app.user("alice").await, app.user("bob").await, app.user("outsider").await);
    let a = app.group(&alice, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let b = app.group(&alice, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let mut chats = app.chats().await;
    let mut sent = Vec::new();
    for (who, channel, text) in [
        (&alice, &a, "The quarterly Reports are ready"),
        (&bob, &a, "私は猫が好きです"),
        (&alice, &b, "report draft for <review> & sign-off"),
        (&bob, &b, "好きな猫がいる report"),
    ] {
        sent.push(send(&mut chats, who, channel, text).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let id = |i: usize| sent[i].chat_id.clone();
    app.search_caught_up().await;

    assert_eq!(found(&mut chats, &alice, query("report")).await, vec![id(3), id(2), id(0)], "stemmed, newest first");
    assert_eq!(found(&mut chats, &alice, query("猫が好き")).await, vec![id(1)], "the CJK phrase as written");
    assert_eq!(found(&mut chats, &alice, query("猫")).await, vec![id(3), id(1)]);
    assert_eq!(found(&mut chats, &alice, query("\"quarterly report\"")).await, vec![id(0)]);
    let in_b = pb::SearchChatsRequest { channel_id: b.clone(), ..query("report") };
    assert_eq!(found(&mut chats, &alice, in_b).await, vec![id(3), id(2)]);
    let by_bob = pb::SearchChatsRequest { sender_id: bob.id.clone(), ..query("report") };
    assert_eq!(found(&mut chats, &alice, by_bob).await, vec![id(3)]);
    let window =
        pb::SearchChatsRequest { start_time: sent[2].created_at, end_time: sent[3].created_at, ..query("report") };
    assert_eq!(found(&mut chats, &alice, window).await, vec![id(2)], "start included, end excluded");
    let paged = pb::SearchChatsRequest { page_size: 1, ..query("report") };
    assert_eq!(found(&mut chats, &alice, paged).await, vec![id(3), id(2), id(0)], "page by page, no repeats");

    let page = search(&mut chats, &alice, query("review report")).await.unwrap();
    assert_eq!(page.hits.len(), 1);
    assert_eq!(page.hits[0].snippet, "<em>report</em> draft for &lt;<em>review</em>&gt; &amp; sign-off");
    let page = search(&mut chats, &alice, query("猫が好き")).await.unwrap();
    assert_eq!(page.hits[0].snippet, "私は<em>猫が好き</em>です");

    // an outsider finds nothing and cannot name the channel
    assert!(found(&mut chats, &outsider, query("report")).await.is_empty());
    let err = search(&mut chats, &outsider, pb::SearchChatsRequest { channel_id: a.clone(), ..query("report") })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_searches_name_the_field() {
    let app = TestApp::spawn().await;
    let (alice, outsider) = (app.user("alice").await, app.user("outsider").await);
    let mine = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;
    let pie = send(&mut chats, &alice, &mine, "apple pie").await;
    app.search_caught_up().await;
    let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let cases = [
        (query(""), "query"),
        (query(" \u{3000} "), "query"),
        (query("tab\there"), "query"),
        (query(&"long ".repeat(60)), "query"),
        (pb::SearchChatsRequest { channel_id: "x".into(), ..query("a") }, "channel_id"),
        (pb::SearchChatsRequest { sender_id: "-1".into(), ..query("a") }, "sender_id"),
        (pb::SearchChatsRequest { page_token: "not-a-token".into(), ..query("a") }, "page_token"),
    ];
    for (request, field) in cases {
        let err = search(&mut chats, &alice, request.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{request:?}");
        assert!(err.message().starts_with(field), "{field}: {}", err.message());
    }
    // what the contract allows is answered: nothing searchable finds nothing, many words are fine
    for text in ["?!".to_owned(), "🌸".to_owned(), (0..40).map(|i| format!("w{i}x")).collect::<Vec<_>>().join(" ")] {
        let page = search(&mut chats, &alice, query(&text)).await.expect("a valid query");
        assert!(page.hits.is_empty(), "{text}: {page:?}");
    }
    // a time range ending at or before its start holds no time, so it finds nothing
    let sent = pie.created_at.expect("a creation time").seconds;
    let within = |start, end| pb::SearchChatsRequest { start_time: at(start), end_time: at(end), ..query("apple") };
    assert_eq!(
        found(&mut chats, &alice, within(sent, sent + 1)).await,
        vec![pie.chat_id.clone()],
        "the range holds it"
    );
    for (start, end) in [(sent, sent), (sent + 1, sent), (20, 20), (20, 10)] {
        let page = search(&mut chats, &alice, within(start, end)).await.expect("an empty range is a valid search");
        assert!(page.hits.is_empty() && page.next_page_token.is_empty(), "{start}..{end}: {page:?}");
    }
    let hidden = pb::SearchChatsRequest { channel_id: mine.clone(), ..within(sent, sent) };
    let err = search(&mut chats, &outsider, hidden).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "membership is checked first, as for any search");
    let err = chats.search_chats(query("a")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_channel_is_not_searched_and_leaves_the_index() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let doomed = app.group(&alice, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let kept = app.group(&alice, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let mut chats = app.chats().await;
    send(&mut chats, &alice, &doomed, "narwhal one").await;
    send(&mut chats, &alice, &doomed, "narwhal two").await;
    let survivor = send(&mut chats, &alice, &kept, "narwhal three").await.chat_id;
    app.search_caught_up().await;
    let delete = channel_pb::DeleteChannelRequest { channel_id: doomed };
    app.channels().await.delete_channel(authed(&alice.token, delete)).await.expect("delete");
    assert_eq!(found(&mut chats, &bob, query("narwhal")).await, vec![survivor.clone()], "at once");
    let started = std::time::Instant::now();
    while app.search_status().await.documents != 1 {
        assert!(started.elapsed() < Duration::from_secs(30), "the channel's chats leave the index");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all: BTreeSet<String> = found(&mut chats, &alice, query("narwhal")).await.into_iter().collect();
    assert_eq!(all, BTreeSet::from([survivor]));
}

/// A stand-in for Elasticsearch: it takes the index set-up (templates, indices) and answers as
/// an empty index does, but fails every search with an answer naming its internals. Sending on
/// the returned channel closes it, so later requests find a closed port.
async fn failing_elasticsearch() -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    async fn answer(method: axum::http::Method, uri: axum::http::Uri) -> (axum::http::StatusCode, String) {
        let path = uri.path();
        let (status, body) = if path.ends_with("/_search") {
            let reason = "all shards failed on node 127.0.0.1:9300: secret-backend-detail";
            (500, serde_json::json!({ "error": { "type": "search_phase_execution_exception", "reason": reason } }))
        } else if method == axum::http::Method::GET && path.ends_with("/_doc/position") {
            (404, serde_json::json!({ "found": false }))
        } else if path.ends_with("/_count") {
            (200, serde_json::json!({ "count": 0 }))
        } else {
            (200, serde_json::json!({ "acknowledged": true }))
        };
        (axum::http::StatusCode::from_u16(status).expect("status"), body.to_string())
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (close, closed) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let app = axum::Router::new().fallback(answer);
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = closed.await;
            })
            .await;
    });
    (url, close, server)
}

/// Whether a failed search answered with nothing of the backend's own words.
fn assert_generic(status: &tonic::Status) {
    assert!(matches!(status.code(), Code::Internal | Code::Unavailable), "{status:?}");
    assert!(status.message().contains("request"), "the answer names the request id: {status:?}");
    let details = String::from_utf8_lossy(status.details());
    let leaks = ["127.0.0.1", "secret-backend-detail", "search_phase_execution_exception", "HTTP 500", "error sending"];
    for leak in leaks {
        assert!(!status.message().contains(leak), "{leak:?} reached the client: {status:?}");
        assert!(!details.contains(leak), "{leak:?} reached the client in the details: {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_search_index_answers_without_its_internals() {
    let (url, close, server) = failing_elasticsearch().await;
    let dir = tempfile::tempdir().expect("temporary data dir");
    let mut config = test_config(dir.path().to_owned());
    config.search.backend = chatmesh_platform::config::SearchBackend::Elasticsearch;
    config.search.elasticsearch_url = url;
    let app = TestApp::spawn_with(config).await;
    let alice = app.user("alice").await;
    let group = app.group(&alice, ChannelVisibility::Private, &[]).await;
    let mut chats = app.chats().await;
    send(&mut chats, &alice, &group.channel_id, "hello there").await;

    // the index answers, but with a failure naming its node
    let refused = search(&mut chats, &alice, query("hello")).await.expect_err("the index fails");
    assert_generic(&refused);

    // the index is gone: its port is closed
    close.send(()).expect("the stand-in runs");
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("the stand-in closes").expect("stand-in");
    let unreachable = search(&mut chats, &alice, query("hello")).await.expect_err("the index is unreachable");
    assert_generic(&unreachable);
}
