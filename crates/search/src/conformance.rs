//! One behaviour suite for every search index backend; `search_index_suite!` instantiates it.

use crate::{IndexChange, IndexQuery, IndexedChat, SearchIndex, parse_query};

pub fn chat(chat_id: u64, channel_id: u64, sender_id: u64, text: &str) -> IndexedChat {
    IndexedChat {
        chat_id,
        channel_id,
        sender_id,
        created_at_ms: chat_id * 1000,
        text: text.to_owned(),
        removed_for: Vec::new(),
        version: chat_id,
    }
}

pub fn query(text: &str, channels: &[u64]) -> IndexQuery {
    IndexQuery {
        query: parse_query(text).expect("a valid query"),
        channel_ids: channels.to_vec(),
        sender_id: None,
        from_ms: None,
        until_ms: None,
        before_chat_id: None,
        viewer: 0,
        limit: 100,
    }
}

async fn load(index: &dyn SearchIndex, chats: Vec<IndexedChat>) {
    index.write(chats.into_iter().map(IndexChange::Upsert).collect()).await.unwrap();
    index.commit(100).await.unwrap();
}

pub async fn words_are_stemmed_and_cjk_phrases_match_as_written(index: &dyn SearchIndex) {
    load(
        index,
        vec![
            chat(1, 1, 7, "Planning the meetings for tomorrow"),
            chat(2, 1, 7, "私は猫が好きです"),
            chat(3, 1, 7, "好きな猫がいる"),
            chat(4, 1, 7, "release notes are out"),
            chat(5, 1, 7, "notes on the release"),
        ],
    )
    .await;
    let found = |text: &str| {
        let q = query(text, &[1]);
        async move { index.search(q).await.unwrap() }
    };
    assert_eq!(found("meeting").await, vec![1]);
    assert_eq!(found("MEETINGS plan").await, vec![1], "every word, stemmed, case folded");
    assert_eq!(found("meeting absent").await, Vec::<u64>::new(), "every word must match");
    assert_eq!(found("猫が好き").await, vec![2], "the CJK run in order");
    assert_eq!(found("猫").await, vec![3, 2], "a single character");
    assert_eq!(found("好き").await, vec![3, 2]);
    assert_eq!(found("\"release notes\"").await, vec![4], "a quoted phrase in order");
    assert_eq!(found("release notes").await, vec![5, 4], "unquoted words anywhere, newest first");
}

pub async fn filters_narrow_and_pages_run_newest_first(index: &dyn SearchIndex) {
    load(index, (1..=6).map(|i| chat(i, i % 2 + 1, 10 + i % 3, &format!("shared word{i}"))).collect()).await;
    let mut q = query("shared", &[1, 2]);
    assert_eq!(index.search(q.clone()).await.unwrap(), vec![6, 5, 4, 3, 2, 1]);
    q.channel_ids = vec![2];
    assert_eq!(index.search(q.clone()).await.unwrap(), vec![5, 3, 1], "only the given channels");
    q.channel_ids = vec![];
    assert!(index.search(q.clone()).await.unwrap().is_empty(), "no channels, no hits");
    q.channel_ids = vec![1, 2];
    q.sender_id = Some(11);
    assert_eq!(index.search(q.clone()).await.unwrap(), vec![4, 1]);
    q.sender_id = None;
    (q.from_ms, q.until_ms) = (Some(2000), Some(5000));
    assert_eq!(index.search(q.clone()).await.unwrap(), vec![4, 3, 2], "from included, until excluded");
    (q.from_ms, q.until_ms) = (None, None);
    q.limit = 2;
    assert_eq!(index.search(q.clone()).await.unwrap(), vec![6, 5]);
    q.before_chat_id = Some(5);
    assert_eq!(index.search(q.clone()).await.unwrap(), vec![4, 3], "the next page");
}

pub async fn upserts_replace_and_deletes_forget(index: &dyn SearchIndex) {
    load(index, vec![chat(1, 1, 7, "first draft"), chat(2, 1, 7, "other draft"), chat(3, 2, 7, "draft elsewhere")])
        .await;
    index.write(vec![IndexChange::Upsert(IndexedChat { version: 9, ..chat(1, 1, 7, "final text") })]).await.unwrap();
    index.commit(101).await.unwrap();
    assert_eq!(index.search(query("draft", &[1, 2])).await.unwrap(), vec![3, 2]);
    assert_eq!(index.search(query("final", &[1, 2])).await.unwrap(), vec![1]);
    assert_eq!(index.documents().await.unwrap(), 3, "one document per chat");
    index
        .write(vec![IndexChange::Delete { chat_id: 2, version: 103 }, IndexChange::DeleteChannel { channel_id: 2 }])
        .await
        .unwrap();
    index.commit(102).await.unwrap();
    assert!(index.search(query("draft", &[1, 2])).await.unwrap().is_empty());
    assert_eq!(index.documents().await.unwrap(), 1);
    assert_eq!(index.position().await.unwrap(), 102);
}

pub async fn removed_chats_are_not_found_by_their_removers(index: &dyn SearchIndex) {
    load(
        index,
        vec![IndexedChat { removed_for: vec![8, 9], ..chat(1, 1, 7, "hidden word") }, chat(2, 1, 7, "hidden too")],
    )
    .await;
    let as_viewer = |viewer| async move {
        let mut q = query("hidden", &[1]);
        q.viewer = viewer;
        index.search(q).await.unwrap()
    };
    assert_eq!(as_viewer(8).await, vec![2]);
    assert_eq!(as_viewer(9).await, vec![2]);
    assert_eq!(as_viewer(7).await, vec![2, 1]);
}

pub async fn entries_list_what_was_committed_in_chat_order(index: &dyn SearchIndex) {
    let removed = IndexedChat { removed_for: vec![9], ..chat(3, 2, 7, "third") };
    load(index, vec![chat(2, 1, 7, "second"), removed.clone(), chat(1, 1, 8, "first")]).await;
    index.write(vec![IndexChange::Upsert(chat(4, 1, 7, "staged only"))]).await.unwrap();
    let entries = index.entries_after(0, 10).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.chat_id).collect::<Vec<_>>(), vec![1, 2, 3], "committed, ascending");
    assert_eq!(entries[2].digest, removed.digest(), "the digest of the state written");
    assert_ne!(entries[2].digest, chat(3, 2, 7, "third").digest(), "removals are part of it");
    assert_eq!(entries[1].version, 2);
    assert_eq!(index.entries_after(1, 1).await.unwrap().iter().map(|e| e.chat_id).collect::<Vec<_>>(), vec![2]);
}

pub async fn nothing_is_searchable_before_a_commit(index: &dyn SearchIndex) {
    assert_eq!(index.position().await.unwrap(), 0);
    index.write(vec![IndexChange::Upsert(chat(1, 1, 7, "staged"))]).await.unwrap();
    assert!(index.search(query("staged", &[1])).await.unwrap().is_empty());
    index.commit(5).await.unwrap();
    assert_eq!(index.search(query("staged", &[1])).await.unwrap(), vec![1]);
    assert_eq!(index.position().await.unwrap(), 5);
}

/// Instantiates the suite for a backend constructor returning `(guard, index)`.
#[macro_export]
macro_rules! search_index_suite {
    ($($make:tt)+) => {
        chatmesh_platform::conformance_suite!(
            search_index_conformance,
            $crate::conformance,
            ($($make)+),
            [
                words_are_stemmed_and_cjk_phrases_match_as_written,
                filters_narrow_and_pages_run_newest_first,
                upserts_replace_and_deletes_forget,
                removed_chats_are_not_found_by_their_removers,
                entries_list_what_was_committed_in_chat_order,
                nothing_is_searchable_before_a_commit
            ]
        );
    };
}
