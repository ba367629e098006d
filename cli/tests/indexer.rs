//! The search indexer on the change stream, as separate processes on Redis: the services relay
//! their change feed into a Redis Stream, and `chatmesh serve indexer` (the embedded index
//! standing in for Elasticsearch) reads it as a consumer group. Killed three times between its
//! index commit and its XACK while 5,000 chats are created, edited and retracted, it ends with
//! an index equal to the store, nothing pending and no retracted text searchable.
//! Needs CHATMESH_TEST_REDIS_URL (`.ci/run` sets it) and `redis-server`.

mod common;

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chatmesh_api::chat::v1::{
    CreateChatRequest, EditChatRequest, RetractChatsRequest, SearchChatsRequest, chat_service_client::ChatServiceClient,
};
use common::{Process, Server, authed, chatmesh, connect, group, launch, own_redis, sign_up, until};
use redis::AsyncCommands as _;
use tonic::transport::Channel;

const CHATS: usize = 5000;
const SENDERS: usize = 16;
/// The batch (of XREADGROUP answers) each killed indexer dies at, just before its XACK.
const KILL_AT: [u32; 3] = [3, 2, 2];

/// `chatmesh serve <parts>` with the settings of this test, logging to `log` in `data`.
fn serve(data: &Path, parts: &[&str], env: &[(&str, String)]) -> std::process::Command {
    let mut command = chatmesh(data);
    command
        .arg("serve")
        .args(parts)
        .env("CHATMESH_LOG__FILTER", "warn")
        .env("CHATMESH_LIMITS__USER_CALLS_BURST", "1000000")
        .env("CHATMESH_LIMITS__USER_CALLS_PER_SEC", "1000000")
        .env("CHATMESH_SEARCH__SOURCE", "stream")
        .env("CHATMESH_SEARCH__CLAIM_IDLE_MS", "500")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

/// `chatmesh serve indexer` under `consumer`, aborting at its `kill_at`-th batch if given (so
/// perhaps before it is ready: it is not waited for, and the test reaches it through Redis only).
fn indexer(data: &Path, stream: &str, chat: SocketAddr, consumer: &str, kill_at: Option<u32>) -> Process {
    let mut env = vec![
        ("CHATMESH_REDIS__STREAM_URL", stream.to_owned()),
        ("CHATMESH_PEERS__CHAT", format!("http://{chat}")),
        ("CHATMESH_SEARCH__CONSUMER", consumer.to_owned()),
    ];
    if let Some(n) = kill_at {
        env.push(("CHATMESH_FAULT", format!("indexer-before-ack:{n}")));
    }
    launch(serve(data, &["indexer"], &env), Some(&data.join(format!("{consumer}.log"))))
}

async fn send(chat: &mut ChatServiceClient<Channel>, token: &str, channel_id: &str, text: String) -> String {
    loop {
        let request = CreateChatRequest { channel_id: channel_id.into(), text: text.clone(), ..Default::default() };
        match chat.create_chat(authed(token, request)).await {
            Ok(created) => return created.into_inner().chat.unwrap().chat_id,
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("CreateChat: {status:?}"),
        }
    }
}

/// (pending entries, entries not yet delivered) of the indexers' group.
async fn backlog(redis: &mut redis::aio::MultiplexedConnection) -> (u64, u64) {
    let groups: redis::streams::StreamInfoGroupsReply = redis.xinfo_groups("chatmesh:changes").await.unwrap();
    let group = groups.groups.iter().find(|g| g.name == "indexer").expect("the indexers' group");
    let length: u64 = redis.xlen("chatmesh:changes").await.unwrap();
    (group.pending as u64, group.lag.map_or(length, |lag| lag as u64))
}

/// How many changes of the chat store's feed the index has not reached yet, as the services
/// report it to an operator (`admin status`).
async fn index_lag(channel: &Channel, data: &Path) -> i64 {
    use chatmesh_api::chat::v1::{GetSearchStatusRequest, chat_internal_service_client::ChatInternalServiceClient};
    let auth = chatmesh_platform::auth::Authenticator::from_data_dir(Default::default(), data).unwrap();
    let request = authed(&auth.issue_service("admin"), GetSearchStatusRequest {});
    let status = ChatInternalServiceClient::new(channel.clone()).get_search_status(request).await.unwrap();
    status.into_inner().lag_events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexer_killed_before_its_acks_leaves_the_index_equal_to_the_store() {
    let Some(redis) = own_redis().await else { return };
    let stream = redis.url.clone();
    let data = tempfile::tempdir().unwrap();
    let env = [("CHATMESH_REDIS__STREAM_URL", stream.clone())];
    let services: Server = common::start(
        serve(data.path(), &["user", "channel", "chat", "dispatcher"], &env),
        Some(&data.path().join("services.log")),
    )
    .await;
    let grpc = services.grpc();
    let channel = connect(grpc).await;
    let (_, owner) = sign_up(&channel, "owner@example.com").await;
    let channels = [group(&channel, &owner, &[]).await, group(&channel, &owner, &[]).await];

    // the writers: 5,000 chats, every 7th edited, every 10th retracted (its word `gone<i>` must vanish)
    let retracted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..SENDERS)
        .map(|w| {
            let (channel, owner, channels, retracted, sent) =
                (channel.clone(), owner.clone(), channels.clone(), retracted.clone(), sent.clone());
            tokio::spawn(async move {
                let mut chat = ChatServiceClient::new(channel);
                for i in (w..CHATS).step_by(SENDERS) {
                    let channel_id = &channels[i % 2];
                    let id = send(&mut chat, &owner, channel_id, format!("chat number{i} gone{i}")).await;
                    if i % 7 == 0 {
                        let edit = EditChatRequest { chat_id: id.clone(), text: format!("edited number{i}") };
                        chat.edit_chat(authed(&owner, edit)).await.unwrap();
                    }
                    if i % 10 == 0 {
                        let retract = RetractChatsRequest { chat_ids: vec![id.clone()] };
                        chat.retract_chats(authed(&owner, retract)).await.unwrap();
                        retracted.lock().unwrap().push((i, channel_id.clone()));
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // meanwhile: an indexer killed at its 3rd, 2nd and 2nd batch, between commit and XACK,
    // restarted under its own name once (it re-reads its pending entries) and under new names
    // (they take over the dead one's entries once idle)
    let names = ["indexer-a", "indexer-a", "indexer-b"];
    let mut kills = 0;
    for (name, kill_at) in names.iter().zip(KILL_AT) {
        let mut killed = indexer(data.path(), &stream, grpc, name, Some(kill_at));
        let status = until(|| std::future::ready(killed.0.try_wait().unwrap())).await.unwrap_or_else(|| {
            let log = |file: &str| std::fs::read_to_string(data.path().join(file)).unwrap_or_default();
            panic!(
                "{name} never reached batch {kill_at}:\n{}\nservices:\n{}",
                log(&format!("{name}.log")),
                log("services.log")
            )
        });
        assert!(!status.success(), "{name} was killed by its fault point: {status}");
        kills += 1;
        println!("{name} killed at batch {kill_at} after {} chats sent", sent.load(Ordering::Relaxed));
    }
    assert_eq!(kills, 3);
    let last = indexer(data.path(), &stream, grpc, "indexer-c", None);
    for writer in writers {
        writer.await.unwrap();
    }

    // caught up: the index holds the feed's newest change, so every change reached the stream,
    // and after that every entry was delivered and acknowledged
    let client = redis::Client::open(stream.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let lag = || index_lag(&channel, data.path());
    let settled = until(|| {
        let mut redis = redis.clone();
        async move { (lag().await == 0 && backlog(&mut redis).await == (0, 0)).then_some(()) }
    })
    .await;
    let (lag, backlog) = (lag().await, backlog(&mut redis).await);
    assert!(settled.is_some(), "still {lag} changes not indexed, (pending, undelivered) {backlog:?}");
    let dead: u64 = redis.xlen("chatmesh:changes:dead").await.unwrap();
    assert_eq!(dead, 0, "nothing dead-lettered");
    // and trimmed: only what no consumer is done with stays (the last delivered entry)
    let trimmed = until(|| {
        let mut redis = redis.clone();
        async move { redis.xlen::<_, u64>("chatmesh:changes").await.ok().filter(|length| *length <= 1) }
    })
    .await;
    let length: u64 = redis.xlen("chatmesh:changes").await.unwrap();
    let trimmed = trimmed.unwrap_or_else(|| panic!("the stream still holds {length} entries"));
    println!("stream trimmed to {trimmed} entries once every change was acknowledged");

    // no retracted word is found (the index is read by the services while the indexer writes it)
    let retracted = retracted.lock().unwrap().clone();
    let mut chat = ChatServiceClient::new(channel.clone());
    for (i, channel_id) in retracted.iter().take(50) {
        let query =
            SearchChatsRequest { query: format!("gone{i}"), channel_id: channel_id.clone(), ..Default::default() };
        let found = chat.search_chats(authed(&owner, query)).await.unwrap().into_inner();
        assert!(found.hits.is_empty(), "retracted chat {i} found");
    }
    let query = SearchChatsRequest { query: "number4999".into(), ..Default::default() };
    assert_eq!(chat.search_chats(authed(&owner, query)).await.unwrap().into_inner().hits.len(), 1, "the last chat");
    drop((services, last));

    // offline: the index equals the store, chat by chat
    let verify = chatmesh(data.path()).args(["admin", "verify-index", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout)
        .unwrap_or_else(|_| panic!("a report: {}", String::from_utf8_lossy(&verify.stderr)));
    println!(
        "{CHATS} chats, {} retracted, indexer killed {kills} times before its XACK: index {} documents for {} searchable chats; missing {}, extra {}, stale {}",
        retracted.len(),
        report["indexed"],
        report["searchable"],
        report["missing"].as_array().unwrap().len(),
        report["extra"].as_array().unwrap().len(),
        report["stale"].as_array().unwrap().len(),
    );
    assert!(verify.status.success(), "the index differs from the store: {report}");
    assert_eq!(report["searchable"].as_u64(), Some((CHATS - retracted.len()) as u64));
}
