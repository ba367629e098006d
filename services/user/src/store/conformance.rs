//! The one conformance suite of [`UserStore`]: every backend runs it unchanged through
//! `user_store_suite!(constructor)`, where the constructor returns `(guard, store)`.

use super::{Rotation, StoreError, UserStore};
use crate::model::{SessionRecord, UserRecord};

pub fn user(id: u64, email: &str, username: Option<&str>) -> UserRecord {
    UserRecord {
        user_id: id,
        email: email.to_owned(),
        name: format!("user {id}"),
        username: username.map(str::to_owned),
        avatar_url: String::new(),
        bio: String::new(),
        password_hash: "$argon2id$test".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

pub fn session(sid: &str, user_id: u64, hash: &str) -> SessionRecord {
    SessionRecord {
        session_id: sid.to_owned(),
        user_id,
        refresh_hash: hash.to_owned(),
        used_hashes: Vec::new(),
        created_at_ms: 1,
        expires_at_ms: u64::MAX,
        ended_at_ms: None,
    }
}

pub async fn emails_and_usernames_are_unique_case_insensitively(store: &dyn UserStore) {
    store.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
    assert_eq!(store.insert_user(&user(2, "ada@example.COM", None)).await, Err(StoreError::EmailTaken));
    assert!(matches!(
        store.insert_user(&user(3, "b@example.com", Some("ADA"))).await,
        Err(StoreError::UsernameTaken(_))
    ));
    assert_eq!(store.get_user(2).await.unwrap(), None, "a refused insert stores nothing");
    assert_eq!(store.get_user(3).await.unwrap(), None);
    assert_eq!(store.get_user_by_email("ada@example.com").await.unwrap().unwrap().user_id, 1);
    assert_eq!(store.get_user_by_username("ada").await.unwrap().unwrap().user_id, 1);
}

pub async fn username_changes_move_the_index(store: &dyn UserStore) {
    store.insert_user(&user(1, "a@example.com", Some("alpha"))).await.unwrap();
    store.insert_user(&user(2, "b@example.com", Some("beta"))).await.unwrap();
    let mut a = store.get_user(1).await.unwrap().unwrap();
    a.username = Some("Beta".into());
    assert!(matches!(store.update_user(&a).await, Err(StoreError::UsernameTaken(_))));
    a.username = Some("gamma".into());
    store.update_user(&a).await.unwrap();
    assert!(store.get_user_by_username("alpha").await.unwrap().is_none());
    assert_eq!(store.get_user_by_username("gamma").await.unwrap().unwrap().user_id, 1);
    // the freed name can be taken again
    let mut b = store.get_user(2).await.unwrap().unwrap();
    b.username = Some("alpha".into());
    store.update_user(&b).await.unwrap();
}

pub async fn refresh_rotation_detects_reuse(store: &dyn UserStore) {
    store.insert_session(&session("s1", 1, "h1")).await.unwrap();
    assert!(matches!(store.rotate_session("s1", "h1", "h2", 10).await.unwrap(), Rotation::Rotated(_)));
    assert!(matches!(store.rotate_session("s1", "h2", "h3", 11).await.unwrap(), Rotation::Rotated(_)));
    assert_eq!(store.rotate_session("s1", "never-issued", "hx", 12).await.unwrap(), Rotation::Unknown);
    assert!(matches!(store.rotate_session("s1", "h1", "h4", 13).await.unwrap(), Rotation::Reused(_)));
    assert_eq!(store.rotate_session("s1", "h3", "h5", 14).await.unwrap(), Rotation::Ended, "reuse ended the session");
    assert_eq!(store.sessions_ended_since(13).await.unwrap(), vec!["s1".to_owned()]);
    assert_eq!(store.rotate_session("nope", "h", "h", 1).await.unwrap(), Rotation::Unknown);
}

pub async fn sessions_end_one_or_all(store: &dyn UserStore) {
    for sid in ["a", "b", "c"] {
        store.insert_session(&session(sid, 7, sid)).await.unwrap();
    }
    store.insert_session(&session("other", 8, "o")).await.unwrap();
    assert!(store.end_session("a", 100).await.unwrap().is_some());
    assert!(store.end_session("a", 101).await.unwrap().is_none(), "ending twice is a no-op");
    let ended: Vec<_> = store.end_user_sessions(7, 200).await.unwrap().into_iter().map(|s| s.session_id).collect();
    assert_eq!(ended.len(), 2);
    assert!(ended.contains(&"b".to_owned()) && ended.contains(&"c".to_owned()));
    assert!(store.get_session("other").await.unwrap().unwrap().ended_at_ms.is_none());
    assert_eq!(store.sessions_ended_since(150).await.unwrap().len(), 2);
}

/// Instantiates the suite for a backend constructor returning `(guard, store)`.
#[macro_export]
macro_rules! user_store_suite {
    ($($make:tt)+) => {
        chatmesh_platform::conformance_suite!(
            user_store_conformance,
            $crate::store::conformance,
            ($($make)+),
            [
                emails_and_usernames_are_unique_case_insensitively,
                username_changes_move_the_index,
                refresh_rotation_detects_reuse,
                sessions_end_one_or_all
            ]
        );
    };
}
