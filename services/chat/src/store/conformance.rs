//! The one conformance suite of [`ChatStore`]: every backend runs it unchanged through
//! `chat_store_suite!(constructor)`, where the constructor returns `(guard, store)`.

use chatmesh_api::chat::v1::{ChannelEvent, EventType, channel_event::Payload};

use super::{ChatStore, CreateOutcome, ExternalEvent, ItemOutcome, Range};
use crate::model::{Announcement, AttachmentRecord, ChatKind, NewChat, UploadRecord, UploadState};

pub fn text(channel_id: u64, sender_id: u64, text: &str, key: &str) -> NewChat {
    NewChat {
        channel_id,
        sender_id,
        kind: ChatKind::Text,
        text: text.to_owned(),
        client_msg_id: key.to_owned(),
        reply_to: 0,
        mentions: Vec::new(),
        announcement: None,
        body_hash: format!("hash of {text}"),
        attachments: Vec::new(),
    }
}

async fn send(store: &dyn ChatStore, channel: u64, sender: u64, body: &str) -> u64 {
    match store.create_chat(text(channel, sender, body, "")).await.unwrap() {
        CreateOutcome::Created(chat) => chat.chat_id,
        other => panic!("expected a new chat, got {other:?}"),
    }
}

fn types(events: &[ChannelEvent]) -> Vec<EventType> {
    events.iter().map(|e| e.r#type()).collect()
}

pub async fn chats_are_idempotent_per_sender_channel_and_key(store: &dyn ChatStore) {
    let first = store.create_chat(text(1, 7, "hello", "k1")).await.unwrap();
    let CreateOutcome::Created(chat) = first else { panic!("created") };
    assert_eq!(store.create_chat(text(1, 7, "hello", "k1")).await.unwrap(), CreateOutcome::Duplicate(chat.clone()));
    assert_eq!(store.create_chat(text(1, 7, "other", "k1")).await.unwrap(), CreateOutcome::KeyConflict(chat.chat_id));
    assert!(
        matches!(store.create_chat(text(2, 7, "hello", "k1")).await.unwrap(), CreateOutcome::Created(_)),
        "other channel"
    );
    assert!(
        matches!(store.create_chat(text(1, 8, "hello", "k1")).await.unwrap(), CreateOutcome::Created(_)),
        "other sender"
    );
    assert_eq!(store.list_chats(1, Range::Before(None), 10, 0).await.unwrap().len(), 2);
    assert_eq!(store.get_chat(chat.chat_id).await.unwrap().unwrap().text, "hello");
}

pub async fn history_pages_run_both_ways(store: &dyn ChatStore) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(send(store, 1, 7, &format!("m{i}")).await);
    }
    send(store, 2, 7, "elsewhere").await;
    let newest: Vec<u64> =
        store.list_chats(1, Range::Before(None), 2, 0).await.unwrap().iter().map(|c| c.chat_id).collect();
    assert_eq!(newest, vec![ids[4], ids[3]]);
    let older: Vec<u64> =
        store.list_chats(1, Range::Before(Some(ids[3])), 10, 0).await.unwrap().iter().map(|c| c.chat_id).collect();
    assert_eq!(older, vec![ids[2], ids[1], ids[0]]);
    let after: Vec<u64> =
        store.list_chats(1, Range::After(ids[1]), 10, 0).await.unwrap().iter().map(|c| c.chat_id).collect();
    assert_eq!(after, vec![ids[2], ids[3], ids[4]]);
    assert_eq!(store.newest_chat_at_or_before(1, ids[2]).await.unwrap(), Some(ids[2]));
    assert_eq!(store.newest_chat_at_or_before(1, ids[0] - 1).await.unwrap(), None);
}

pub async fn edits_and_retractions_belong_to_the_sender_and_leave_tombstones(store: &dyn ChatStore) {
    let id = send(store, 1, 7, "secret words").await;
    assert_eq!(store.edit_chat(id, 8, "hijacked".into()).await.unwrap(), ItemOutcome::NotSender);
    assert!(matches!(store.edit_chat(id, 7, "edited words".into()).await.unwrap(), ItemOutcome::Done(_)));
    let outcomes = store.retract_chats(8, vec![id]).await.unwrap();
    assert_eq!(outcomes, vec![ItemOutcome::NotSender]);
    assert_eq!(store.get_chat(id).await.unwrap().unwrap().text, "edited words", "a refused retract changes nothing");
    let outcomes = store.retract_chats(7, vec![id, 999]).await.unwrap();
    assert!(matches!(outcomes[0], ItemOutcome::Done(_)));
    assert_eq!(outcomes[1], ItemOutcome::NotFound);
    assert_eq!(store.retract_chats(7, vec![id]).await.unwrap(), vec![ItemOutcome::Retracted]);
    let chat = store.get_chat(id).await.unwrap().unwrap();
    assert!(chat.is_retracted() && chat.text.is_empty());
    let events = store.list_events(1, 0, 10).await.unwrap();
    assert_eq!(types(&events), vec![EventType::ChatCreated, EventType::ChatEdited, EventType::ChatRetracted]);
    for event in &events {
        let Some(Payload::Chat(chat)) = &event.payload else { panic!("chat payload") };
        assert!(chat.text.is_empty() && chat.retracted, "no logged event keeps retracted text");
    }
}

pub async fn removed_chats_are_hidden_from_their_remover_only(store: &dyn ChatStore) {
    let a = send(store, 1, 7, "a").await;
    let b = send(store, 1, 7, "b").await;
    store.remove_chats(8, vec![a]).await.unwrap();
    let seen_by = |user| async move {
        store.list_chats(1, Range::After(0), 10, user).await.unwrap().iter().map(|c| c.chat_id).collect::<Vec<_>>()
    };
    assert_eq!(seen_by(8).await, vec![b]);
    assert!(store.is_removed(8, a).await.unwrap());
    assert!(!store.is_removed(7, a).await.unwrap());
    assert_eq!(seen_by(7).await, vec![a, b]);
}

pub async fn read_pointers_only_move_forward_and_unread_counts_follow(store: &dyn ChatStore) {
    let mine = send(store, 1, 8, "mine").await;
    let a = send(store, 1, 7, "a").await;
    let b = send(store, 1, 7, "b").await;
    let c = send(store, 1, 7, "c").await;
    let unread = store.unread(1, 8).await.unwrap();
    assert_eq!((unread.count, unread.last_chat_id), (3, c), "own chats are never unread");
    assert_eq!(store.ack(1, 8, a).await.unwrap().last_read_chat_id, a);
    assert_eq!(store.ack(1, 8, mine).await.unwrap().last_read_chat_id, a, "an older ack is ignored");
    assert_eq!(store.unread(1, 8).await.unwrap().count, 2);
    store.remove_chats(8, vec![b]).await.unwrap();
    store.retract_chats(7, vec![c]).await.unwrap();
    let unread = store.unread(1, 8).await.unwrap();
    assert_eq!((unread.count, unread.pointer.last_read_chat_id), (0, a));
    assert_eq!(store.unread(1, 9).await.unwrap().count, 3, "for another member: mine, a and b");
}

/// `member.joined` of user 7 in channel 1 under idempotency key `key`, announced in history.
pub fn member_joined(key: &str) -> ExternalEvent {
    ExternalEvent {
        event: ChannelEvent {
            channel_id: "1".into(),
            r#type: EventType::MemberJoined as i32,
            actor_id: "7".into(),
            idempotency_key: key.into(),
            ..Default::default()
        },
        announcement: Some(NewChat {
            kind: ChatKind::System,
            announcement: Some(Announcement { kind: "member.joined".into(), actor_id: 7, subject_user_id: 0 }),
            ..text(1, 7, "<@7> joined", "")
        }),
    }
}

pub async fn appended_events_are_recorded_once_with_their_announcement(store: &dyn ChatStore) {
    let event = member_joined;
    let first = store.append_events(vec![event("k1"), event("k2")]).await.unwrap();
    let again = store.append_events(vec![event("k1")]).await.unwrap();
    assert_eq!(again, vec![first[0]], "a redelivered event is recorded once");
    let events = store.list_events(1, 0, 10).await.unwrap();
    assert_eq!(
        types(&events),
        vec![EventType::MemberJoined, EventType::ChatCreated, EventType::MemberJoined, EventType::ChatCreated]
    );
    let history = store.list_chats(1, Range::After(0), 10, 0).await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|c| c.kind == ChatKind::System && c.text == "<@7> joined"));
    assert_eq!(store.list_events(1, first[0], 10).await.unwrap().len(), 3, "after an event id");
}

pub async fn the_feed_orders_every_channel_and_cursors_persist(store: &dyn ChatStore) {
    send(store, 1, 7, "a").await;
    send(store, 2, 7, "b").await;
    send(store, 1, 7, "c").await;
    let feed = store.feed(0, 10).await.unwrap();
    let channels: Vec<&str> = feed.iter().map(|e| e.channel_id.as_str()).collect();
    assert_eq!(channels, vec!["1", "2", "1"]);
    let ids: Vec<u64> = feed.iter().map(|e| e.event_id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "event ids grow in commit order");
    assert_eq!(store.cursor("publisher").await.unwrap(), 0);
    store.set_cursor("publisher", ids[1]).await.unwrap();
    assert_eq!(store.cursor("publisher").await.unwrap(), ids[1]);
    assert_eq!(store.feed(ids[1], 10).await.unwrap().len(), 1);
}

pub async fn removals_enter_the_feed_privately_once(store: &dyn ChatStore) {
    let a = send(store, 1, 7, "a").await;
    let before = store.feed_head().await.unwrap();
    store.remove_chats(8, vec![a]).await.unwrap();
    store.remove_chats(8, vec![a]).await.unwrap();
    store.remove_chats(9, vec![a]).await.unwrap();
    let feed = store.feed(before, 10).await.unwrap();
    assert_eq!(types(&feed), vec![EventType::ChatRemoved, EventType::ChatRemoved], "once per remover");
    assert_eq!(feed.iter().map(|e| e.actor_id.as_str()).collect::<Vec<_>>(), vec!["8", "9"]);
    assert_eq!(store.feed_head().await.unwrap(), feed[1].event_id.parse::<u64>().unwrap());
    assert_eq!(store.feed_count(before, 100).await.unwrap(), 2);
    assert_eq!(store.feed_count(0, 2).await.unwrap(), 2, "counted up to the cap");
    assert_eq!(store.removed_by(a).await.unwrap(), vec![8, 9]);
    let log = store.list_events(1, 0, 10).await.unwrap();
    assert_eq!(types(&log), vec![EventType::ChatCreated], "the channel's log never shows a removal");
}

pub async fn chats_scan_in_channel_order_and_deleted_channels_are_known(store: &dyn ChatStore) {
    let a = send(store, 2, 7, "a").await;
    let b = send(store, 1, 7, "b").await;
    let c = send(store, 2, 7, "c").await;
    let first = store.scan_chats((0, 0), 2).await.unwrap();
    assert_eq!(first.iter().map(|c| c.chat_id).collect::<Vec<_>>(), vec![b, a]);
    let rest = store.scan_chats((2, a), 10).await.unwrap();
    assert_eq!(rest.iter().map(|c| c.chat_id).collect::<Vec<_>>(), vec![c]);
    assert!(!store.channel_deleted(2).await.unwrap());
    let deleted = channel_deleted(2);
    store.append_events(vec![deleted]).await.unwrap();
    assert!(store.channel_deleted(2).await.unwrap());
    assert!(!store.channel_deleted(1).await.unwrap());
}

/// A pending upload of a 10-byte PNG.
pub fn upload(upload_id: u64, channel_id: u64, uploader_id: u64, created_at_ms: u64) -> UploadRecord {
    UploadRecord {
        upload_id,
        uploader_id,
        channel_id,
        file_name: "f.png".into(),
        content_type: "image/png".into(),
        size_bytes: 10,
        created_at_ms,
        state: UploadState::Pending,
    }
}

/// That upload as a chat's attachment.
pub fn attached(upload_id: u64) -> AttachmentRecord {
    AttachmentRecord {
        upload_id,
        file_name: "f.png".into(),
        content_type: "image/png".into(),
        size_bytes: 10,
        width: 0,
        height: 0,
    }
}

pub async fn uploads_attach_once_to_their_uploaders_chat_and_are_reclaimed_when_released(store: &dyn ChatStore) {
    // upload ids are time-ordered like every id: 1..=4 are "old", u64::MAX >> 1 is "new"
    let new = u64::MAX >> 1;
    for u in [upload(1, 5, 7, 1), upload(2, 5, 7, 1), upload(3, 5, 7, 1), upload(4, 6, 7, 1), upload(new, 5, 7, 1)] {
        store.create_upload(u).await.unwrap();
    }
    let with = |ids: &[u64], sender| NewChat {
        attachments: ids.iter().map(|i| attached(*i)).collect(),
        ..text(5, sender, "f", "")
    };
    assert_eq!(store.create_chat(with(&[1], 8)).await.unwrap(), CreateOutcome::UploadUnavailable(1), "another's");
    assert_eq!(
        store.create_chat(with(&[4], 7)).await.unwrap(),
        CreateOutcome::UploadUnavailable(4),
        "another channel's"
    );
    assert_eq!(
        store.create_chat(with(&[1, 4], 7)).await.unwrap(),
        CreateOutcome::UploadUnavailable(4),
        "one unavailable upload refuses the chat"
    );
    assert_eq!(store.get_upload(1).await.unwrap().unwrap().state, UploadState::Pending, "and attaches none");
    let CreateOutcome::Created(chat) = store.create_chat(with(&[1, 2], 7)).await.unwrap() else { panic!("created") };
    assert_eq!(chat.attachments.len(), 2);
    assert_eq!(store.get_upload(1).await.unwrap().unwrap().state, UploadState::Attached(chat.chat_id));
    assert_eq!(store.create_chat(with(&[2], 7)).await.unwrap(), CreateOutcome::UploadUnavailable(2), "attached once");

    // pending uploads created before the cutoff are released; attached and newer ones are not
    assert_eq!(store.expire_uploads(1_000_000, 100).await.unwrap(), 2, "3 and 4");
    assert_eq!(store.get_upload(new).await.unwrap().unwrap().state, UploadState::Pending);
    assert_eq!(store.create_chat(with(&[3], 7)).await.unwrap(), CreateOutcome::UploadUnavailable(3), "expired");
    store.retract_chats(7, vec![chat.chat_id]).await.unwrap();
    assert!(store.get_chat(chat.chat_id).await.unwrap().unwrap().attachments.is_empty());
    let mut released: Vec<u64> = store.reclaimable_uploads(100).await.unwrap().iter().map(|u| u.upload_id).collect();
    released.sort_unstable();
    assert_eq!(released, vec![1, 2, 3, 4]);
    store.forget_uploads(released).await.unwrap();
    assert!(store.reclaimable_uploads(100).await.unwrap().is_empty());
    assert!(store.get_upload(1).await.unwrap().is_none());
}

pub async fn a_deleted_channel_releases_its_uploads(store: &dyn ChatStore) {
    store.create_upload(upload(1, 5, 7, 1)).await.unwrap();
    store.create_upload(upload(2, 6, 7, 1)).await.unwrap();
    let deleted = channel_deleted(5);
    store.append_events(vec![deleted]).await.unwrap();
    let released: Vec<u64> = store.reclaimable_uploads(100).await.unwrap().iter().map(|u| u.upload_id).collect();
    assert_eq!(released, vec![1]);
}

/// `channel.deleted` of a channel, as the channel service's outbox appends it.
pub fn channel_deleted(channel_id: u64) -> ExternalEvent {
    ExternalEvent {
        event: ChannelEvent {
            channel_id: channel_id.to_string(),
            r#type: EventType::ChannelDeleted as i32,
            actor_id: "7".into(),
            idempotency_key: format!("channel:{channel_id}:deleted"),
            ..Default::default()
        },
        announcement: None,
    }
}

/// Instantiates the suite for a backend constructor returning `(guard, store)`.
#[macro_export]
macro_rules! chat_store_suite {
    (async $make:expr) => {
        chatmesh_platform::conformance_suite!(
            chat_store_conformance,
            $crate::store::conformance,
            async $make,
            [
                chats_are_idempotent_per_sender_channel_and_key,
                history_pages_run_both_ways,
                edits_and_retractions_belong_to_the_sender_and_leave_tombstones,
                removed_chats_are_hidden_from_their_remover_only,
                read_pointers_only_move_forward_and_unread_counts_follow,
                appended_events_are_recorded_once_with_their_announcement,
                the_feed_orders_every_channel_and_cursors_persist,
                removals_enter_the_feed_privately_once,
                chats_scan_in_channel_order_and_deleted_channels_are_known,
                uploads_attach_once_to_their_uploaders_chat_and_are_reclaimed_when_released,
                a_deleted_channel_releases_its_uploads
            ]
        );
    };
    ($make:expr) => {
        chatmesh_platform::conformance_suite!(
            chat_store_conformance,
            $crate::store::conformance,
            $make,
            [
                chats_are_idempotent_per_sender_channel_and_key,
                history_pages_run_both_ways,
                edits_and_retractions_belong_to_the_sender_and_leave_tombstones,
                removed_chats_are_hidden_from_their_remover_only,
                read_pointers_only_move_forward_and_unread_counts_follow,
                appended_events_are_recorded_once_with_their_announcement,
                the_feed_orders_every_channel_and_cursors_persist,
                removals_enter_the_feed_privately_once,
                chats_scan_in_channel_order_and_deleted_channels_are_known,
                uploads_attach_once_to_their_uploaders_chat_and_are_reclaimed_when_released,
                a_deleted_channel_releases_its_uploads
            ]
        );
    };
}
