//! The [`Chats`](crate::store::Chats) part of the suite: idempotent sends, history pages both
//! ways, scans, edits and retractions by their sender only, removals for one user.

use chatmesh_api::chat::v1::{EventType, channel_event::Payload};

use super::{send, text, types};
use crate::store::{ChatStore, CreateOutcome, ItemOutcome, Range};

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

pub async fn chats_scan_in_channel_order(store: &dyn ChatStore) {
    let a = send(store, 2, 7, "a").await;
    let b = send(store, 1, 7, "b").await;
    let c = send(store, 2, 7, "c").await;
    let first = store.scan_chats((0, 0), 2).await.unwrap();
    assert_eq!(first.iter().map(|c| c.chat_id).collect::<Vec<_>>(), vec![b, a]);
    let rest = store.scan_chats((2, a), 10).await.unwrap();
    assert_eq!(rest.iter().map(|c| c.chat_id).collect::<Vec<_>>(), vec![c]);
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
