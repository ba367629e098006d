//! The real binary as a process: killed with SIGKILL right after a burst of acknowledged
//! sends it loses none of them; asked to stop with SIGTERM it closes every WebSocket with the
//! reconnect code and exits within its grace period; killed while the search indexer has
//! changes staged, it catches up to exactly what a fresh `admin reindex` finds.

mod common;

use std::{net::SocketAddr, path::Path, process::Command, time::Instant};

use chatmesh_api::chat::v1::{
    ChatKind, CreateChatRequest, ListChatsRequest, RemoveChatsRequest, RetractChatsRequest, SearchChatsRequest,
    chat_service_client::ChatServiceClient,
};
use common::{HUNG, Server, admin, authed, chatmesh, connect, sign_up, until};
use tonic::transport::Channel;

/// `chatmesh up` on `data`, ready.
async fn up(data: &Path) -> Server {
    up_with_env(data, &[]).await
}

async fn up_with_env(data: &Path, env: &[(&str, &str)]) -> Server {
    let mut command = chatmesh(data);
    command
        .envs(env.iter().copied())
        .arg("up")
        .env("CHATMESH_LIMITS__USER_CALLS_BURST", "100000")
        // why: one user holds hundreds of sockets here; the cap has its own test
        .env("CHATMESH_WS__MAX_SESSIONS_PER_USER", "100000");
    common::start(command, None).await
}

#[tokio::test]
async fn sigterm_closes_every_websocket_with_the_reconnect_code_and_exits() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let data = tempfile::tempdir().unwrap();
    let mut server = up(data.path()).await;
    let ws = server.ws();
    let token = sign_up(&connect(server.grpc()).await, "ada@example.com").await.1;
    let mut sockets = Vec::new();
    for _ in 0..200 {
        let (mut socket, _) =
            tokio_tungstenite::connect_async(format!("ws://{ws}/?token={token}")).await.expect("connects");
        // the first frame is `ready`: the session is registered
        let ready = tokio::time::timeout(HUNG, socket.next()).await.unwrap().unwrap().unwrap();
        assert!(ready.to_text().unwrap().contains("\"ready\""));
        sockets.push(socket);
    }
    let pid = server.process.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let closes = sockets.into_iter().map(|mut socket| async move {
        loop {
            match tokio::time::timeout(HUNG, socket.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    });
    let codes = futures::future::join_all(closes).await;
    let reconnect = codes.iter().filter(|c| **c == Some(1012)).count();
    println!("sockets 200, closed with 1012: {reconnect}");
    assert_eq!(reconnect, 200, "{codes:?}");
    let status = server.process.exited().await;
    assert!(status.success(), "a clean exit: {status:?}");
}

#[tokio::test]
async fn sigkill_after_a_burst_of_acknowledged_sends_loses_none() {
    let data = tempfile::tempdir().unwrap();
    let mut server = up(data.path()).await;
    let channel = connect(server.grpc()).await;
    let (_, token) = sign_up(&channel, "ada@example.com").await;
    let channel_id = common::group(&channel, &token, &[]).await;

    let sends =
        (0..400).map(|i| {
            let mut chats = ChatServiceClient::new(channel.clone());
            let request =
                CreateChatRequest { channel_id: channel_id.clone(), text: format!("burst {i}"), ..Default::default() };
            let token = token.clone();
            async move {
                chats.create_chat(authed(&token, request)).await.ok().map(|r| r.into_inner().chat.unwrap().chat_id)
            }
        });
    let acknowledged: Vec<String> = futures::future::join_all(sends).await.into_iter().flatten().collect();
    server.kill();
    assert_eq!(acknowledged.len(), 400, "every send was acknowledged before the kill");

    let server = up(data.path()).await;
    let mut chats = ChatServiceClient::new(connect(server.grpc()).await);
    let mut stored = std::collections::BTreeSet::new();
    let mut after = "1".to_owned();
    loop {
        let request = ListChatsRequest {
            channel_id: channel_id.clone(),
            after: after.clone(),
            page_size: 100,
            ..Default::default()
        };
        let page = chats.list_chats(authed(&token, request)).await.unwrap().into_inner();
        let Some(last) = page.chats.last() else { break };
        after = last.chat_id.clone();
        stored.extend(page.chats.into_iter().filter(|c| c.kind() == ChatKind::Text).map(|c| c.chat_id));
    }
    let lost = acknowledged.iter().filter(|id| !stored.contains(*id)).count();
    println!("acknowledged {}, stored after SIGKILL {}, lost {lost}", acknowledged.len(), stored.len());
    assert_eq!(lost, 0);
}

/// Stops the server with SIGTERM and waits for a clean exit, keeping this runtime running so
/// the test's own clients can answer the server's GOAWAY.
async fn stop(mut server: Server) {
    assert!(Command::new("kill").args(["-TERM", &server.process.0.id().to_string()]).status().unwrap().success());
    let status = server.process.exited().await;
    assert!(status.success(), "a clean exit: {status:?}");
}

/// `admin status --json` of the server on `grpc`, as JSON.
fn search_status(data: &Path, grpc: SocketAddr) -> serde_json::Value {
    let out = admin(data, &["status", "--json", "--grpc", &format!("http://{grpc}")]);
    let status: serde_json::Value = serde_json::from_str(&out).expect("JSON status");
    status["search"].clone()
}

async fn caught_up(data: &Path, grpc: SocketAddr) -> serde_json::Value {
    let status = until(|| {
        let status = search_status(data, grpc);
        std::future::ready((status["lag_events"] == 0).then_some(status))
    })
    .await;
    status.unwrap_or_else(|| panic!("the index never caught up: {}", search_status(data, grpc)))
}

/// Every chat id the search for `word` finds, over all pages.
async fn searchable(channel: &Channel, token: &str, word: &str) -> std::collections::BTreeSet<String> {
    let mut chats = ChatServiceClient::new(channel.clone());
    let mut found = std::collections::BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let request = SearchChatsRequest { query: word.into(), page_size: 100, page_token, ..Default::default() };
        let page = chats.search_chats(authed(token, request)).await.unwrap().into_inner();
        found.extend(page.hits.into_iter().map(|h| h.chat.unwrap().chat_id));
        if page.next_page_token.is_empty() {
            return found;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn killed_mid_batch_the_indexer_catches_up_to_what_a_fresh_reindex_finds() {
    let data = tempfile::tempdir().unwrap();
    // why: commits only every 200 changes, so the kill finds some committed and some staged.
    let staging = [("CHATMESH_SEARCH__COMMIT_INTERVAL_MS", "600000"), ("CHATMESH_SEARCH__COMMIT_BATCH", "200")];
    let mut server = up_with_env(data.path(), &staging).await;
    let grpc = server.grpc();
    let channel = connect(grpc).await;
    let (_, token) = sign_up(&channel, "ada@example.com").await;
    let channel_id = common::group(&channel, &token, &[]).await;
    let chats = ChatServiceClient::new(channel.clone());
    let (sender_token, channel_id) = (token.clone(), channel_id.clone());
    let send = move |i: usize| {
        let request =
            CreateChatRequest { channel_id: channel_id.clone(), text: format!("common item{i}"), ..Default::default() };
        let mut chats = chats.clone();
        let token = sender_token.clone();
        async move { chats.create_chat(authed(&token, request)).await.unwrap().into_inner().chat.unwrap().chat_id }
    };
    let mut sent = Vec::new();
    for i in 0..500 {
        sent.push(send(i).await);
    }
    let retracted: Vec<String> = sent.iter().step_by(25).cloned().collect();
    let removed: Vec<String> = sent.iter().skip(7).step_by(25).cloned().collect();
    let mut client = ChatServiceClient::new(channel.clone());
    client.retract_chats(authed(&token, RetractChatsRequest { chat_ids: retracted.clone() })).await.unwrap();
    client.remove_chats(authed(&token, RemoveChatsRequest { chat_ids: removed.clone() })).await.unwrap();
    // the kill must find changes staged but not committed
    let mut status = search_status(data.path(), grpc);
    while status["lag_events"] == 0 {
        sent.push(send(sent.len()).await);
        status = search_status(data.path(), grpc);
    }
    println!("killed with {} changes staged, {} chats committed", status["lag_events"], status["documents"]);
    assert!(status["documents"].as_i64().unwrap() > 0, "some batches were committed: {status}");
    server.kill();
    drop((send, client, channel));

    let expected: std::collections::BTreeSet<String> =
        sent.iter().filter(|id| !retracted.contains(id) && !removed.contains(id)).cloned().collect();
    let server = up(data.path()).await;
    let grpc = server.grpc();
    let channel = connect(grpc).await;
    let status = caught_up(data.path(), grpc).await;
    assert!(status["indexer_running"].as_bool().unwrap(), "{status}");
    let resumed = searchable(&channel, &token, "common").await;
    assert_eq!(resumed.len(), expected.len());
    assert_eq!(resumed, expected, "the index caught up with the store");
    drop(channel);
    stop(server).await;
    let out = admin(data.path(), &["reindex"]);
    assert!(out.contains("search index rebuilt"), "{out}");
    let server = up(data.path()).await;
    let grpc = server.grpc();
    let channel = connect(grpc).await;
    let status = caught_up(data.path(), grpc).await;
    assert_eq!(status["documents"].as_i64().unwrap() as usize, sent.len() - retracted.len(), "{status}");
    assert_eq!(searchable(&channel, &token, "common").await, resumed, "a fresh reindex finds the same chats");
}

/// How long the stop took is printed, not asserted: that the drain period bounds it is the unit
/// test `a_server_that_never_drains_is_given_up_when_the_grace_period_after_stop_ends`.
#[tokio::test]
async fn a_stop_ends_while_a_client_that_never_lets_go_still_holds_its_connection() {
    let data = tempfile::tempdir().unwrap();
    let server = up_with_env(data.path(), &[("CHATMESH_GRPC__DRAIN_SECS", "1")]).await;
    let grpc = server.grpc();
    // a client on its own runtime makes a call, then hangs without closing its connection
    // until the test lets it go
    let (connected, hung) = std::sync::mpsc::channel();
    let (let_go, held) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let channel = runtime.block_on(connect(grpc));
        runtime.block_on(sign_up(&channel, "ada@example.com"));
        connected.send(()).unwrap();
        let _ = held.recv();
        drop(channel);
    });
    hung.recv().unwrap();
    let started = Instant::now();
    stop(server).await;
    println!("stopped in {:?} with a hung client (drain period 1 s)", started.elapsed());
    // only now, the process gone, does the client let go
    let_go.send(()).unwrap();
    client.join().unwrap();
}
