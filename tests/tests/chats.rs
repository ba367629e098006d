//! Chats from outside: the write path, history, edit, remove, retract, the event log,
//! read pointers and unread counts — every rule including the forbidden paths.

use std::{collections::BTreeSet, time::Duration};

use chatmesh_api::{
    channel::v1::{self as channel_pb, ChannelVisibility},
    chat::v1::{self as pb, ChatKind, EventType, channel_event::Payload, chat_service_client::ChatServiceClient},
};
use chatmesh_tests::{TestApp, User, authed};
use tonic::{Code, transport::Channel};

async fn send(client: &mut ChatServiceClient<Channel>, who: &User, channel_id: &str, text: &str) -> pb::Chat {
    let request = pb::CreateChatRequest { channel_id: channel_id.into(), text: text.into(), ..Default::default() };
    client.create_chat(authed(&who.token, request)).await.expect("send").into_inner().chat.expect("chat")
}

async fn history(client: &mut ChatServiceClient<Channel>, who: &User, channel_id: &str) -> Vec<pb::Chat> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let request = pb::ListChatsRequest {
            channel_id: channel_id.into(),
            after: if after.is_empty() { "1".into() } else { after.clone() },
            page_size: 100,
            ..Default::default()
        };
        let page = client.list_chats(authed(&who.token, request)).await.expect("list").into_inner();
        let done = page.chats.len() < 100;
        if let Some(last) = page.chats.last() {
            after = last.chat_id.clone();
        }
        all.extend(page.chats);
        if done {
            return all;
        }
    }
}

/// History once it holds `count` announcements. A membership change returns before its
/// announcement reaches the log (the channel service relays it from its outbox), so chats sent
/// right after the change may come before it; chats sent after it is listed come after it.
async fn announced(
    client: &mut ChatServiceClient<Channel>,
    who: &User,
    channel_id: &str,
    count: usize,
) -> Vec<pb::Chat> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let chats = history(client, who, channel_id).await;
        if chats.iter().filter(|c| c.kind() == ChatKind::System).count() >= count {
            return chats;
        }
        assert!(std::time::Instant::now() < deadline, "{count} announcements in {chats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn events(client: &mut ChatServiceClient<Channel>, who: &User, channel_id: &str) -> Vec<pb::ChannelEvent> {
    let request = pb::ListEventsRequest { channel_id: channel_id.into(), page_size: 500, ..Default::default() };
    client.list_events(authed(&who.token, request)).await.expect("events").into_inner().events
}

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    result.map_or_else(|s| s.code(), |_| Code::Ok)
}

/// Every RPC taking a chat or channel id, by `who`; returns each code.
async fn every_rpc(
    client: &mut ChatServiceClient<Channel>,
    who: &User,
    channel_id: &str,
    chat_id: &str,
) -> Vec<(&'static str, Code)> {
    let t = &who.token;
    let (ch, c) = (|| channel_id.to_owned(), || chat_id.to_owned());
    let many = |ok: bool| if ok { Code::Ok } else { Code::NotFound };
    vec![
        (
            "CreateChat",
            code(
                client
                    .create_chat(authed(
                        t,
                        pb::CreateChatRequest { channel_id: ch(), text: "hi".into(), ..Default::default() },
                    ))
                    .await,
            ),
        ),
        ("GetChat", code(client.get_chat(authed(t, pb::GetChatRequest { chat_id: c() })).await)),
        (
            "ListChats",
            code(client.list_chats(authed(t, pb::ListChatsRequest { channel_id: ch(), ..Default::default() })).await),
        ),
        (
            "EditChat",
            code(client.edit_chat(authed(t, pb::EditChatRequest { chat_id: c(), text: "edited".into() })).await),
        ),
        (
            "AckChats",
            code(
                client
                    .ack_chats(authed(t, pb::AckChatsRequest { channel_id: ch(), chat_id: c(), created_at: None }))
                    .await,
            ),
        ),
        (
            "GetUnreadCounts",
            code(client.get_unread_counts(authed(t, pb::GetUnreadCountsRequest { channel_ids: vec![ch()] })).await),
        ),
        (
            "ListEvents",
            code(client.list_events(authed(t, pb::ListEventsRequest { channel_id: ch(), ..Default::default() })).await),
        ),
        (
            "RetractChats",
            many(
                client
                    .retract_chats(authed(t, pb::RetractChatsRequest { chat_ids: vec![c()] }))
                    .await
                    .unwrap()
                    .into_inner()
                    .outcomes[0]
                    .ok,
            ),
        ),
        (
            "RemoveChats",
            many(
                client
                    .remove_chats(authed(t, pb::RemoveChatsRequest { chat_ids: vec![c()] }))
                    .await
                    .unwrap()
                    .into_inner()
                    .outcomes[0]
                    .ok,
            ),
        ),
    ]
}

#[tokio::test]
async fn members_may_use_every_rpc_and_outsiders_none() {
    let app = TestApp::spawn().await;
    let mut client = app.chats().await;
    let mut channels = app.channels().await;
    let owner = app.user("owner").await;
    let kicked = app.user("kicked").await;
    let stranger = app.user("stranger").await;
    let elsewhere = app.user("elsewhere").await;
    let channel = app.group(&owner, ChannelVisibility::Private, &[&kicked]).await;
    app.group(&elsewhere, ChannelVisibility::Private, &[]).await;
    let id = channel.channel_id.clone();
    let chat = send(&mut client, &owner, &id, "before the kick").await;

    let kick = channel_pb::DeleteMemberRequest { channel_id: id.clone(), user_id: kicked.id.clone() };
    channels.delete_member(authed(&owner.token, kick)).await.unwrap();
    // the very first send after the kick returned is refused
    let first = client
        .create_chat(authed(
            &kicked.token,
            pb::CreateChatRequest { channel_id: id.clone(), text: "sneaky".into(), ..Default::default() },
        ))
        .await;
    assert_eq!(code(first), Code::NotFound);

    // why: announcements of the kick arrive asynchronously; outsiders could only touch text chats
    let texts = |chats: Vec<pb::Chat>| chats.into_iter().filter(|c| c.kind() == ChatKind::Text).collect::<Vec<_>>();
    let before = texts(history(&mut client, &owner, &id).await);
    for outsider in [&stranger, &kicked, &elsewhere] {
        for (rpc, got) in every_rpc(&mut client, outsider, &id, &chat.chat_id).await {
            assert_eq!(got, Code::NotFound, "{rpc} by an outsider of a private channel");
        }
    }
    assert_eq!(texts(history(&mut client, &owner, &id).await), before, "outsiders changed nothing");
    for (rpc, got) in every_rpc(&mut client, &owner, &id, &chat.chat_id).await {
        assert_eq!(got, Code::Ok, "{rpc} by a member");
    }
}

#[tokio::test]
async fn retraction_belongs_to_the_sender_and_removal_to_the_remover() {
    let app = TestApp::spawn().await;
    let mut client = app.chats().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let id = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let secret = send(&mut client, &ada, &id, "the secret plan").await;
    let other = send(&mut client, &ada, &id, "lunch?").await;

    let refused = client
        .retract_chats(authed(&bob.token, pb::RetractChatsRequest { chat_ids: vec![secret.chat_id.clone()] }))
        .await
        .unwrap();
    assert_eq!(refused.into_inner().outcomes[0].reason, "NOT_SENDER");
    let edit = client
        .edit_chat(authed(&bob.token, pb::EditChatRequest { chat_id: secret.chat_id.clone(), text: "mine".into() }))
        .await;
    assert_eq!(code(edit), Code::PermissionDenied);
    let seen =
        client.get_chat(authed(&bob.token, pb::GetChatRequest { chat_id: secret.chat_id.clone() })).await.unwrap();
    assert_eq!(seen.into_inner().chat.unwrap().text, "the secret plan", "refusals changed nothing");

    let request = pb::RetractChatsRequest { chat_ids: vec![secret.chat_id.clone(), "123".into()] };
    let outcomes = client.retract_chats(authed(&ada.token, request)).await.unwrap().into_inner().outcomes;
    assert!(outcomes[0].ok);
    assert_eq!((outcomes[1].ok, outcomes[1].reason.as_str()), (false, "CHAT_NOT_FOUND"), "partial success per id");
    for who in [&ada, &bob] {
        let chat =
            client.get_chat(authed(&who.token, pb::GetChatRequest { chat_id: secret.chat_id.clone() })).await.unwrap();
        let chat = chat.into_inner().chat.unwrap();
        assert!(chat.retracted && chat.text.is_empty(), "a tombstone stays");
        let listed = history(&mut client, who, &id).await;
        assert!(listed.iter().all(|c| !c.text.contains("secret")));
        let logged = events(&mut client, who, &id).await;
        assert!(logged.iter().all(|e| !format!("{e:?}").contains("secret")), "no event keeps the text");
        assert!(logged.iter().any(|e| e.r#type() == EventType::ChatRetracted));
    }

    client
        .remove_chats(authed(&bob.token, pb::RemoveChatsRequest { chat_ids: vec![other.chat_id.clone()] }))
        .await
        .unwrap();
    let bobs: Vec<String> = history(&mut client, &bob, &id).await.into_iter().map(|c| c.chat_id).collect();
    assert!(!bobs.contains(&other.chat_id));
    let get = client.get_chat(authed(&bob.token, pb::GetChatRequest { chat_id: other.chat_id.clone() })).await;
    assert_eq!(code(get), Code::NotFound);
    let adas: Vec<String> = history(&mut client, &ada, &id).await.into_iter().map(|c| c.chat_id).collect();
    assert!(adas.contains(&other.chat_id), "removal is for the remover only");
}

#[tokio::test]
async fn a_thousand_chats_sent_twice_are_stored_once() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let id = app.group(&ada, ChannelVisibility::Private, &[]).await.channel_id;
    let transport = app.channel().await;
    let request = |i: usize| pb::CreateChatRequest {
        channel_id: id.clone(),
        text: format!("chat number {i}"),
        client_msg_id: format!("key-{i}"),
        ..Default::default()
    };
    let mut sends = Vec::new();
    for i in 0..1000 {
        // half of the retries race their original; the other half come after it
        for copy in 0..2 {
            let mut client = ChatServiceClient::new(transport.clone());
            let (request, token) = (request(i), ada.token.clone());
            let delay = if i % 2 == 0 || copy == 0 { 0 } else { 1 };
            sends.push(async move {
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                client.create_chat(authed(&token, request)).await.map(|r| r.into_inner().chat.unwrap())
            });
        }
    }
    let results: Vec<pb::Chat> = futures::future::join_all(sends).await.into_iter().map(|r| r.expect("send")).collect();
    for pair in results.chunks(2) {
        assert_eq!(pair[0].chat_id, pair[1].chat_id, "a retry answers with the same chat");
    }
    let mut client = app.chats().await;
    let stored: Vec<pb::Chat> =
        history(&mut client, &ada, &id).await.into_iter().filter(|c| c.kind() == ChatKind::Text).collect();
    assert_eq!(stored.len(), 1000);
    assert_eq!(stored.iter().map(|c| c.client_msg_id.clone()).collect::<BTreeSet<_>>().len(), 1000);

    let mut other_body = request(7);
    other_body.text = "something else".into();
    let status = client.create_chat(authed(&ada.token, other_body)).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_tailing_history_see_every_chat_once_in_order() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let mut writers = Vec::new();
    for i in 0..20 {
        writers.push(app.user(&format!("writer{i}")).await);
    }
    let refs: Vec<&User> = writers.iter().collect();
    let id = app.group(&owner, ChannelVisibility::Private, &refs).await.channel_id;
    let transport = app.channel().await;
    const PER_WRITER: usize = 25;
    let total = 20 * PER_WRITER;

    let readers: Vec<_> = (0..5)
        .map(|_| {
            let mut client = ChatServiceClient::new(transport.clone());
            let (token, id) = (owner.token.clone(), id.clone());
            tokio::spawn(async move {
                // every chat seen (announcements of the joins included), and the text chats among them
                let (mut seen, mut texts): (Vec<u64>, usize) = (Vec::new(), 0);
                let started = std::time::Instant::now();
                while texts < total && started.elapsed() < Duration::from_secs(60) {
                    let after = seen.last().map_or("1".to_owned(), u64::to_string);
                    let request =
                        pb::ListChatsRequest { channel_id: id.clone(), after, page_size: 100, ..Default::default() };
                    let page = client.list_chats(authed(&token, request)).await.unwrap().into_inner();
                    texts += page.chats.iter().filter(|c| c.kind() == ChatKind::Text).count();
                    seen.extend(page.chats.iter().map(|c| c.chat_id.parse::<u64>().unwrap()));
                    if page.chats.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                (seen, texts)
            })
        })
        .collect();
    let sends: Vec<_> = writers
        .iter()
        .map(|w| {
            let mut client = ChatServiceClient::new(transport.clone());
            let (token, id) = (w.token.clone(), id.clone());
            tokio::spawn(async move {
                for j in 0..PER_WRITER {
                    let request =
                        pb::CreateChatRequest { channel_id: id.clone(), text: format!("{j}"), ..Default::default() };
                    client.create_chat(authed(&token, request)).await.unwrap();
                }
            })
        })
        .collect();
    for send in sends {
        send.await.unwrap();
    }
    for reader in readers {
        let (seen, texts) = reader.await.unwrap();
        assert_eq!(texts, total, "every chat");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "once each, in id order");
    }
}

#[tokio::test]
async fn unread_counts_are_exact_across_devices_removes_and_retracts() {
    let app = TestApp::spawn().await;
    let mut client = app.chats().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let bob_laptop = app.login("bob@example.com", "correct horse battery").await.unwrap().access_token;
    let id = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    // why: last_chat_id is the newest chat, announcements included; once ada's join and bob's
    // addition are announced, the newest chat stays the last one sent
    announced(&mut client, &ada, &id, 2).await;
    let reader = client.clone();
    let unread = |token: String| {
        let mut client = reader.clone();
        let id = id.clone();
        async move {
            let counts = client
                .get_unread_counts(authed(&token, pb::GetUnreadCountsRequest::default()))
                .await
                .unwrap()
                .into_inner();
            let count = counts.counts.into_iter().find(|c| c.channel_id == id).expect("the channel is listed");
            (count.unread_count, count.last_chat_id)
        }
    };
    let mut sent = Vec::new();
    for i in 0..6 {
        sent.push(send(&mut client, &ada, &id, &format!("m{i}")).await);
    }
    send(&mut client, &bob, &id, "bob's own").await;
    let last = history(&mut client, &ada, &id).await.last().unwrap().chat_id.clone();
    assert_eq!(unread(bob.token.clone()).await, (6, last.clone()));
    assert_eq!(unread(ada.token.clone()).await.0, 1);

    // phone acks up to m2; the laptop sees it; the laptop acks m1 later: ignored
    let ack = |chat: &pb::Chat| pb::AckChatsRequest {
        channel_id: id.clone(),
        chat_id: chat.chat_id.clone(),
        created_at: None,
    };
    client.ack_chats(authed(&bob.token, ack(&sent[2]))).await.unwrap();
    assert_eq!(unread(bob_laptop.clone()).await.0, 3);
    let pointer =
        client.ack_chats(authed(&bob_laptop, ack(&sent[1]))).await.unwrap().into_inner().read_pointer.unwrap();
    assert_eq!(pointer.last_read_chat_id, sent[2].chat_id, "an older ack never moves the pointer back");
    assert_eq!(unread(bob.token.clone()).await.0, 3);

    client
        .remove_chats(authed(&bob.token, pb::RemoveChatsRequest { chat_ids: vec![sent[3].chat_id.clone()] }))
        .await
        .unwrap();
    client
        .retract_chats(authed(&ada.token, pb::RetractChatsRequest { chat_ids: vec![sent[4].chat_id.clone()] }))
        .await
        .unwrap();
    assert_eq!(unread(bob.token.clone()).await.0, 1, "only m5 is left");

    // the seed's onAck shape: by creation time
    let request =
        pb::AckChatsRequest { channel_id: id.clone(), chat_id: String::new(), created_at: sent[5].created_at };
    let pointer = client.ack_chats(authed(&bob_laptop, request)).await.unwrap().into_inner().read_pointer.unwrap();
    assert_eq!(pointer.last_read_chat_id, sent[5].chat_id);
    assert_eq!(unread(bob.token.clone()).await.0, 0);
}

#[tokio::test]
async fn membership_changes_appear_as_announcements_and_events() {
    let app = TestApp::spawn().await;
    let mut client = app.chats().await;
    let mut channels = app.channels().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let id = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    channels
        .create_member(authed(
            &ada.token,
            channel_pb::CreateMemberRequest { channel_id: id.clone(), user_id: carol.id.clone() },
        ))
        .await
        .unwrap();
    let rename =
        channel_pb::UpdateChannelRequest { channel_id: id.clone(), name: "plans".into(), ..Default::default() };
    channels.update_channel(authed(&ada.token, rename)).await.unwrap();
    channels
        .delete_member(authed(
            &ada.token,
            channel_pb::DeleteMemberRequest { channel_id: id.clone(), user_id: bob.id.clone() },
        ))
        .await
        .unwrap();
    channels
        .delete_member(authed(
            &carol.token,
            channel_pb::DeleteMemberRequest { channel_id: id.clone(), user_id: carol.id.clone() },
        ))
        .await
        .unwrap();

    let expected = vec![
        format!("<@{}> joined", ada.id),
        format!("<@{}> added <@{}>", ada.id, bob.id),
        format!("<@{}> added <@{}>", ada.id, carol.id),
        format!("<@{}> renamed the channel to “plans”", ada.id),
        format!("<@{}> removed <@{}>", ada.id, bob.id),
        format!("<@{}> left", carol.id),
    ];
    let mut announced = Vec::new();
    for _ in 0..100 {
        announced = history(&mut client, &ada, &id)
            .await
            .into_iter()
            .filter(|c| c.kind() == ChatKind::System)
            .map(|c| c.text)
            .collect();
        if announced.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(announced, expected);
    let kinds: Vec<EventType> = events(&mut client, &ada, &id)
        .await
        .iter()
        .map(|e| e.r#type())
        .filter(|t| *t != EventType::ChatCreated)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventType::MemberJoined,
            EventType::MemberJoined,
            EventType::MemberJoined,
            EventType::ChannelUpdated,
            EventType::MemberLeft,
            EventType::MemberLeft
        ]
    );
    let logged = events(&mut client, &ada, &id).await;
    let Some(Payload::Member(member)) = &logged[0].payload else { panic!("a member payload") };
    assert_eq!(member.user_id, ada.id);
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let mut client = app.chats().await;
    let ada = app.user("ada").await;
    let id = app.group(&ada, ChannelVisibility::Private, &[]).await.channel_id;
    let chat = |text: &str| pb::CreateChatRequest { channel_id: id.clone(), text: text.into(), ..Default::default() };
    let cases = [
        ("text", chat("")),
        ("text", chat("   \n ")),
        ("text", chat(&"x".repeat(4001))),
        ("text", chat("ding\u{7}")),
        ("channel_id", pb::CreateChatRequest { channel_id: "abc".into(), text: "hi".into(), ..Default::default() }),
        ("client_msg_id", pb::CreateChatRequest { client_msg_id: "k".repeat(65), ..chat("hi") }),
        ("reply_to_chat_id", pb::CreateChatRequest { reply_to_chat_id: "nope".into(), ..chat("hi") }),
    ];
    for (field, request) in cases {
        let status = client.create_chat(authed(&ada.token, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(status.message().starts_with(field), "names {field}: {}", status.message());
    }
    assert!(history(&mut client, &ada, &id).await.iter().all(|c| c.kind() == ChatKind::System), "nothing was stored");
    let too_many = pb::RetractChatsRequest { chat_ids: (1..=101).map(|i| i.to_string()).collect() };
    let status = client.retract_chats(authed(&ada.token, too_many)).await.unwrap_err();
    assert!(status.message().starts_with("chat_ids"));
    let reply = send(&mut client, &ada, &id, "first").await;
    let answer = pb::CreateChatRequest { reply_to_chat_id: reply.chat_id.clone(), ..chat("an answer @ada") };
    let answer = client.create_chat(authed(&ada.token, answer)).await.unwrap().into_inner().chat.unwrap();
    assert_eq!(answer.reply_to_chat_id, reply.chat_id);
}

/// The `ErrorInfo` reason of a refusal.
fn reason(status: &tonic::Status) -> String {
    let (_, body) = chatmesh_platform::error::http_error_body(status);
    body["details"][0]["reason"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn references_to_chats_elsewhere_are_not_found_like_ids_that_never_existed() {
    let app = TestApp::spawn().await;
    let mut client = app.chats().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let id = app.group(&ada, ChannelVisibility::Private, &[]).await.channel_id;
    let other = app.group(&ada, ChannelVisibility::Private, &[]).await.channel_id;
    let hidden = app.group(&bob, ChannelVisibility::Private, &[]).await.channel_id;
    let in_other = send(&mut client, &ada, &other, "in ada's other channel").await.chat_id;
    let in_hidden = send(&mut client, &bob, &hidden, "in a channel ada cannot see").await.chat_id;
    for (what, chat_id) in [("ada's other channel", in_other), ("bob's channel", in_hidden), ("none", "999999".into())]
    {
        let reply = pb::CreateChatRequest {
            channel_id: id.clone(),
            text: "an answer".into(),
            reply_to_chat_id: chat_id.clone(),
            ..Default::default()
        };
        let status = client.create_chat(authed(&ada.token, reply)).await.unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (Code::NotFound, "REPLY_TARGET_NOT_FOUND"), "{what}");
        assert_eq!(status.message(), format!("reply_to_chat_id: chat {chat_id} not found in this channel"));
        let ack = pb::AckChatsRequest { channel_id: id.clone(), chat_id: chat_id.clone(), created_at: None };
        let status = client.ack_chats(authed(&ada.token, ack)).await.unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (Code::NotFound, "ACKED_CHAT_NOT_FOUND"), "{what}");
        assert_eq!(status.message(), format!("chat_id: chat {chat_id} not found in this channel"));
    }
    assert!(history(&mut client, &ada, &id).await.iter().all(|c| c.kind() == ChatKind::System), "nothing was stored");
}

#[tokio::test]
async fn history_between_two_chats_runs_oldest_first_and_ends_at_the_later_one() {
    let app = TestApp::spawn().await;
    let mut client = app.chats().await;
    let ada = app.user("ada").await;
    let id = app.group(&ada, ChannelVisibility::Private, &[]).await.channel_id;
    // why: the announcement of ada joining lands asynchronously; once it has, only her chats follow
    let started = std::time::Instant::now();
    while history(&mut client, &ada, &id).await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "the join is announced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sent = Vec::new();
    for i in 0..7 {
        sent.push(send(&mut client, &ada, &id, &format!("n{i}")).await.chat_id);
    }
    let list = |after: &str, before: &str, page_token: &str| pb::ListChatsRequest {
        channel_id: id.clone(),
        after: after.into(),
        before: before.into(),
        page_size: 2,
        page_token: page_token.into(),
    };
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = client.list_chats(authed(&ada.token, list(&sent[0], &sent[6], &token))).await.unwrap().into_inner();
        pages.push(page.chats.into_iter().map(|c| c.text).collect::<Vec<_>>());
        if page.next_page_token.is_empty() || pages.len() > 3 {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        pages,
        [vec!["n1", "n2"], vec!["n3", "n4"], vec!["n5"]],
        "strictly between, oldest first; the page reaching the bound is the last"
    );

    for (after, before) in [(&sent[6], &sent[0]), (&sent[3], &sent[3]), (&sent[3], &sent[4])] {
        let page = client.list_chats(authed(&ada.token, list(after, before, ""))).await.unwrap().into_inner();
        assert!(page.chats.is_empty() && page.next_page_token.is_empty(), "after {after}, before {before}: {page:?}");
    }
}

#[tokio::test]
async fn a_closed_channel_comes_back_when_a_new_chat_arrives() {
    let app = TestApp::spawn().await;
    let mut client = app.chats().await;
    let mut channels = app.channels().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let direct = channel_pb::CreateChannelRequest {
        kind: channel_pb::ChannelKind::Direct as i32,
        member_ids: vec![bob.id.clone()],
        ..Default::default()
    };
    let id = app.create_channel(&ada, direct).await;
    let lister = channels.clone();
    let listed = |who: User| {
        let mut channels = lister.clone();
        async move {
            let request = channel_pb::ListMyChannelsRequest::default();
            let page = channels.list_my_channels(authed(&who.token, request)).await.unwrap().into_inner();
            page.channels.into_iter().map(|c| c.channel_id).collect::<Vec<_>>()
        }
    };
    channels
        .close_channel(authed(&bob.token, channel_pb::CloseChannelRequest { channel_id: id.clone() }))
        .await
        .unwrap();
    assert!(listed(bob.clone()).await.is_empty(), "closed");
    send(&mut client, &ada, &id, "are you there?").await;
    let mut back = false;
    for _ in 0..100 {
        if listed(bob.clone()).await == vec![id.clone()] {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the new chat reopened the channel for bob");
    let membership =
        channels.get_channel(authed(&bob.token, channel_pb::GetChannelRequest { channel_id: id })).await.unwrap();
    assert!(!membership.into_inner().membership.unwrap().closed);
}

#[tokio::test]
async fn broadcasts_take_chats_from_their_owner_only_and_edits_are_logged() {
    let app = TestApp::spawn().await;
    let mut client = app.chats().await;
    let mut channels = app.channels().await;
    let owner = app.user("owner").await;
    let reader = app.user("reader").await;
    let broadcast = channel_pb::CreateChannelRequest {
        kind: channel_pb::ChannelKind::Broadcast as i32,
        visibility: ChannelVisibility::Public as i32,
        name: "news".into(),
        ..Default::default()
    };
    let id = app.create_channel(&owner, broadcast).await;
    channels
        .create_member(authed(
            &reader.token,
            channel_pb::CreateMemberRequest { channel_id: id.clone(), user_id: String::new() },
        ))
        .await
        .unwrap();
    let refused = client
        .create_chat(authed(
            &reader.token,
            pb::CreateChatRequest { channel_id: id.clone(), text: "me too".into(), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let posted = send(&mut client, &owner, &id, "first edition").await;
    let edited = client
        .edit_chat(authed(
            &owner.token,
            pb::EditChatRequest { chat_id: posted.chat_id.clone(), text: "second edition".into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .chat
        .unwrap();
    assert_eq!(edited.text, "second edition");
    assert!(edited.edited_at.is_some());
    let seen =
        client.get_chat(authed(&reader.token, pb::GetChatRequest { chat_id: posted.chat_id.clone() })).await.unwrap();
    assert_eq!(seen.into_inner().chat.unwrap().text, "second edition");
    assert!(events(&mut client, &reader, &id).await.iter().any(|e| e.r#type() == EventType::ChatEdited));

    // history pages by token, newest first, until the token runs out
    for i in 0..5 {
        send(&mut client, &owner, &id, &format!("n{i}")).await;
    }
    let (mut token, mut texts) = (String::new(), Vec::new());
    loop {
        let request = pb::ListChatsRequest {
            channel_id: id.clone(),
            page_size: 2,
            page_token: token.clone(),
            ..Default::default()
        };
        let page = client.list_chats(authed(&reader.token, request)).await.unwrap().into_inner();
        texts.extend(page.chats.into_iter().filter(|c| c.kind() == ChatKind::Text).map(|c| c.text));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(texts, vec!["n4", "n3", "n2", "n1", "n0", "second edition"]);
}
