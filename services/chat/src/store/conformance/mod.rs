//! The conformance suite of [`ChatStore`], in one part per trait ([`chats`], [`event_log`],
//! [`change_feed`], [`read_pointers`], [`uploads`]): every backend runs all of it unchanged
//! through `chat_store_suite!(constructor)`, where the constructor returns `(guard, store)`.
//! The fixtures here are public for the backends' own tests.

pub mod change_feed;
pub mod chats;
pub mod event_log;
pub mod read_pointers;
pub mod uploads;

use chatmesh_api::chat::v1::{ChannelEvent, EventType};

use super::{ChatStore, CreateOutcome, ExternalEvent};
use crate::model::{Announcement, AttachmentRecord, ChatKind, NewChat, UploadRecord, UploadState};

/// A text chat of `sender_id` in `channel_id` under client_msg_id `key` ("" for none).
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

/// Sends a text chat without a key; its id.
async fn send(store: &dyn ChatStore, channel: u64, sender: u64, body: &str) -> u64 {
    match store.create_chat(text(channel, sender, body, "")).await.unwrap() {
        CreateOutcome::Created(chat) => chat.chat_id,
        other => panic!("expected a new chat, got {other:?}"),
    }
}

fn types(events: &[ChannelEvent]) -> Vec<EventType> {
    events.iter().map(|e| e.r#type()).collect()
}

/// Instantiates the whole suite for a backend constructor returning `(guard, store)`: a module
/// `chat_store_conformance` with one module of cases per trait. Each case is listed here once.
#[macro_export]
macro_rules! chat_store_suite {
    ($($make:tt)+) => {
        mod chat_store_conformance {
            use super::*;

            chatmesh_platform::conformance_suite!(
                chats,
                $crate::store::conformance::chats,
                ($($make)+),
                [
                    chats_are_idempotent_per_sender_channel_and_key,
                    history_pages_run_both_ways,
                    chats_scan_in_channel_order,
                    edits_and_retractions_belong_to_the_sender_and_leave_tombstones,
                    removed_chats_are_hidden_from_their_remover_only
                ]
            );
            chatmesh_platform::conformance_suite!(
                event_log,
                $crate::store::conformance::event_log,
                ($($make)+),
                [appended_events_are_recorded_once_with_their_announcement, deleted_channels_are_known]
            );
            chatmesh_platform::conformance_suite!(
                change_feed,
                $crate::store::conformance::change_feed,
                ($($make)+),
                [the_feed_orders_every_channel_and_cursors_persist, removals_enter_the_feed_privately_once]
            );
            chatmesh_platform::conformance_suite!(
                read_pointers,
                $crate::store::conformance::read_pointers,
                ($($make)+),
                [read_pointers_only_move_forward_and_unread_counts_follow]
            );
            chatmesh_platform::conformance_suite!(
                uploads,
                $crate::store::conformance::uploads,
                ($($make)+),
                [
                    uploads_attach_once_to_their_uploaders_chat_and_are_reclaimed_when_released,
                    a_deleted_channel_releases_its_uploads
                ]
            );
        }
    };
}
