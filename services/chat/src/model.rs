//! The chat service's domain records, as stored.

use std::collections::HashSet;

use chatmesh_api::chat::v1 as pb;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ChatKind {
    Text,
    System,
}

/// What a SYSTEM chat announces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Announcement {
    /// e.g. "member.joined", "member.invited", "member.left", "member.kicked", "channel.renamed".
    pub kind: String,
    pub actor_id: u64,
    /// 0 when the announcement concerns the actor only.
    pub subject_user_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatRecord {
    pub chat_id: u64,
    pub channel_id: u64,
    pub sender_id: u64,
    pub kind: ChatKind,
    /// Empty once retracted: the text leaves storage.
    pub text: String,
    pub client_msg_id: String,
    /// 0: not a reply.
    pub reply_to: u64,
    pub mentions: Vec<u64>,
    pub announcement: Option<Announcement>,
    /// SHA-256 (hex) of what the sender sent, to tell a retry from a different chat.
    pub body_hash: String,
    pub created_at_ms: u64,
    pub edited_at_ms: Option<u64>,
    pub retracted_at_ms: Option<u64>,
    /// Files attached when the chat was sent; cleared when it is retracted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentRecord>,
}

/// A file on a chat, as declared at upload and checked when attached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachmentRecord {
    pub upload_id: u64,
    /// The client's name for the file: metadata only, never part of a storage key.
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: u64,
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
}

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum UploadState {
    /// URL handed out; the bytes may or may not be there yet.
    Pending,
    /// On this chat.
    Attached(u64),
    /// Abandoned, retracted or of a deleted channel: its object is to be deleted.
    Reclaiming,
}

/// An upload started with CreateUpload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadRecord {
    pub upload_id: u64,
    pub uploader_id: u64,
    pub channel_id: u64,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub created_at_ms: u64,
    pub state: UploadState,
}

impl UploadRecord {
    /// The object's key in the media store: generated here, never from client input.
    pub fn object_key(&self) -> String {
        object_key(self.upload_id)
    }
}

pub fn object_key(upload_id: u64) -> String {
    format!("uploads/{upload_id}")
}

/// A chat to create; the store assigns its id and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChat {
    pub channel_id: u64,
    pub sender_id: u64,
    pub kind: ChatKind,
    pub text: String,
    /// Empty: not idempotent.
    pub client_msg_id: String,
    pub reply_to: u64,
    pub mentions: Vec<u64>,
    pub announcement: Option<Announcement>,
    pub body_hash: String,
    /// Checked uploads of the sender in this channel; the store attaches them with the chat.
    pub attachments: Vec<AttachmentRecord>,
}

/// A member's read pointer in one channel.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ReadPointer {
    pub last_read_chat_id: u64,
    pub acked_at_ms: u64,
}

pub use chatmesh_platform::ids::timestamp;

impl ChatRecord {
    /// The record of a chat just sent, under the id the store gave it.
    pub fn created(chat: NewChat, chat_id: u64) -> Self {
        ChatRecord {
            chat_id,
            channel_id: chat.channel_id,
            sender_id: chat.sender_id,
            kind: chat.kind,
            text: chat.text,
            client_msg_id: chat.client_msg_id,
            reply_to: chat.reply_to,
            mentions: chat.mentions,
            announcement: chat.announcement,
            body_hash: chat.body_hash,
            created_at_ms: chatmesh_platform::ids::unix_ms_of(chat_id),
            edited_at_ms: None,
            retracted_at_ms: None,
            attachments: chat.attachments,
        }
    }

    pub fn is_retracted(&self) -> bool {
        self.retracted_at_ms.is_some()
    }

    /// The wire form; `viewer` sees the idempotency key only on their own chats.
    pub fn to_pb(&self, viewer: Option<u64>) -> pb::Chat {
        pb::Chat {
            chat_id: self.chat_id.to_string(),
            channel_id: self.channel_id.to_string(),
            sender_id: self.sender_id.to_string(),
            kind: match self.kind {
                ChatKind::Text => pb::ChatKind::Text,
                ChatKind::System => pb::ChatKind::System,
            } as i32,
            text: self.text.clone(),
            client_msg_id: if viewer == Some(self.sender_id) { self.client_msg_id.clone() } else { String::new() },
            reply_to_chat_id: if self.reply_to == 0 { String::new() } else { self.reply_to.to_string() },
            thread_root_id: String::new(),
            mention_user_ids: self.mentions.iter().map(u64::to_string).collect(),
            attachments: self
                .attachments
                .iter()
                .map(|a| pb::Attachment {
                    upload_id: a.upload_id.to_string(),
                    file_name: a.file_name.clone(),
                    content_type: a.content_type.clone(),
                    size_bytes: a.size_bytes as i64,
                    width: a.width as i32,
                    height: a.height as i32,
                })
                .collect(),
            system: self.announcement.as_ref().map(|a| pb::SystemAnnouncement {
                r#type: a.kind.clone(),
                actor_id: a.actor_id.to_string(),
                subject_user_id: if a.subject_user_id == 0 { String::new() } else { a.subject_user_id.to_string() },
            }),
            created_at: Some(timestamp(self.created_at_ms)),
            edited_at: self.edited_at_ms.map(timestamp),
            retracted: self.is_retracted(),
            retracted_at: self.retracted_at_ms.map(timestamp),
            sender_blocked: false,
        }
    }

    /// The wire form as `reader` reads it (history, get, search): marked `sender_blocked` when
    /// its sender is among those the reader `blocked`.
    pub fn to_pb_read_by(&self, reader: u64, blocked: &HashSet<u64>) -> pb::Chat {
        pb::Chat { sender_blocked: blocked.contains(&self.sender_id), ..self.to_pb(Some(reader)) }
    }
}
