//! The [`ChangeFeed`](crate::store::ChangeFeed) part of the suite: every channel's changes in
//! commit order, durable cursors, and removals private to their remover.

use chatmesh_api::chat::v1::EventType;

use super::{send, types};
use crate::store::ChatStore;

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
