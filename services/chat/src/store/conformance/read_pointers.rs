//! The [`ReadPointers`](crate::store::ReadPointers) part of the suite: pointers only move
//! forward, and unread counts follow sends, removals and retractions.

use super::send;
use crate::store::ChatStore;

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
