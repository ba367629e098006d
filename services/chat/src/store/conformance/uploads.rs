//! The [`Uploads`](crate::store::Uploads) part of the suite: an upload attaches once, to its
//! uploader's chat in its channel, and is reclaimed when expired, retracted or of a deleted
//! channel.

use super::{attached, channel_deleted, text, upload};
use crate::{
    model::{NewChat, UploadState},
    store::{ChatStore, CreateOutcome},
};

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
