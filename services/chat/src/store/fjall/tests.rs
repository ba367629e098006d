//! The embedded store's own tests: the whole conformance suite, and group commit.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use chatmesh_platform::ids::IdGenerator;

use super::{FjallChatStore, SyncHook};
use crate::store::{Chats, CreateOutcome, EventLog, Range, StoreError, conformance::text};

crate::chat_store_suite!(FjallChatStore::temp);

fn with_failing_sync() -> (tempfile::TempDir, FjallChatStore, Arc<AtomicBool>) {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let flag = fail.clone();
    let hook: SyncHook = Arc::new(move || {
        if flag.load(Ordering::Acquire) { Err(std::io::Error::other("injected sync failure")) } else { Ok(()) }
    });
    let store = FjallChatStore::open_with_hook(dir.path(), Arc::new(IdGenerator::new(1).unwrap()), hook).unwrap();
    (dir, store, fail)
}

#[tokio::test]
async fn a_failed_sync_acknowledges_nothing_and_shows_nothing() {
    let (dir, store, fail) = with_failing_sync();
    let kept = store.create_chat(text(1, 7, "kept", "k0")).await.unwrap();
    fail.store(true, Ordering::Release);
    let lost = store.create_chat(text(1, 7, "never acknowledged", "k1")).await;
    assert!(matches!(lost, Err(StoreError::NotDurable(_))), "{lost:?}");
    let edit = store.edit_chat(1, 7, "x".into()).await;
    assert!(edit.is_err());
    fail.store(false, Ordering::Release);

    let visible = store.list_chats(1, Range::After(0), 10, 0).await.unwrap();
    assert_eq!(visible.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(), vec!["kept"]);
    assert_eq!(store.list_events(1, 0, 10).await.unwrap().len(), 1);
    // the key of the failed write is free: a retry creates the chat now
    assert!(matches!(
        store.create_chat(text(1, 7, "never acknowledged", "k1")).await.unwrap(),
        CreateOutcome::Created(_)
    ));
    let CreateOutcome::Created(kept) = kept else { panic!("created") };
    drop(store);
    let reopened = FjallChatStore::open(dir.path(), Arc::new(IdGenerator::new(1).unwrap())).unwrap();
    let after = reopened.list_chats(1, Range::After(0), 10, 0).await.unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].chat_id, kept.chat_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_share_syncs_and_every_answer_is_durable() {
    let (_dir, store) = FjallChatStore::temp();
    let before = store.stats();
    let senders = (0..64).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut covered = true;
            for j in 0..8 {
                let outcome = store.create_chat(text(i % 4, i, &format!("{i}/{j}"), "")).await.unwrap();
                let CreateOutcome::Created(chat) = outcome else { panic!("created") };
                covered &= store.stats().durable_id >= chat.chat_id;
            }
            covered
        })
    });
    for covered in futures::future::join_all(senders).await {
        assert!(covered.unwrap(), "an answer came before the sync that covers it");
    }
    let after = store.stats();
    let (writes, syncs) = (after.writes - before.writes, after.syncs - before.syncs);
    assert_eq!(writes, 512);
    println!("group commit: {syncs} syncs for {writes} writes from 64 concurrent senders");
    assert!(syncs * 4 <= writes, "group commit: {syncs} syncs for {writes} writes");
}
