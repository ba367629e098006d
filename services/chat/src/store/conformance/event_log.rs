//! The [`EventLog`](crate::store::EventLog) part of the suite: appended events recorded once
//! with their announcements, and deleted channels.

use chatmesh_api::chat::v1::EventType;

use super::{channel_deleted, member_joined, send, types};
use crate::{
    model::ChatKind,
    store::{ChatStore, Range},
};

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

pub async fn deleted_channels_are_known(store: &dyn ChatStore) {
    send(store, 2, 7, "a").await;
    send(store, 1, 7, "b").await;
    assert!(!store.channel_deleted(2).await.unwrap());
    let deleted = channel_deleted(2);
    store.append_events(vec![deleted]).await.unwrap();
    assert!(store.channel_deleted(2).await.unwrap());
    assert!(!store.channel_deleted(1).await.unwrap());
}
