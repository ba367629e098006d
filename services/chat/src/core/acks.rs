//! Read pointers and unread counts.

use chatmesh_api::chat::v1::{self as pb, ChannelEvent, EventType};
use chatmesh_platform::ids::{max_id_at, now_ms};
use chatmesh_wire::chat::{self as wire, AckTarget};

use super::ChatCore;
use crate::{
    convert,
    error::ChatError,
    model::{ReadPointer, timestamp},
    store::Unread,
};

impl ChatCore {
    /// Moves the caller's read pointer in a channel forward, to a chat of it or to the newest
    /// chat at or before a time, and tells the channel (best-effort: receipts are ephemeral).
    pub async fn ack_chats(&self, caller: u64, cmd: wire::AckChats) -> Result<ReadPointer, ChatError> {
        let wire::AckChats { channel_id, target } = cmd;
        self.directory.member(channel_id, caller).await?;
        let target = match target {
            AckTarget::Chat(chat_id) => {
                let chat = self.store.get_chat(chat_id).await?;
                if chat.is_none_or(|c| c.channel_id != channel_id) {
                    return Err(ChatError::AckNotInChannel(chat_id));
                }
                Some(chat_id)
            }
            AckTarget::CreatedAt(ms) => {
                // why: a time past now names no chat yet; clamping also keeps the arithmetic in range.
                let ms = ms.min(now_ms());
                // why: ids carry their creation millisecond, so "the newest chat at or before t" is a key range.
                self.store.newest_chat_at_or_before(channel_id, max_id_at(ms)).await?
            }
        };
        let pointer = match target {
            Some(id) => self.store.ack(channel_id, caller, id).await?,
            None => self.store.unread(channel_id, caller).await?.pointer,
        };
        self.publish_receipt(channel_id, caller, pointer);
        Ok(pointer)
    }

    /// Unread state of the caller in the given channels (all of theirs when none are given).
    pub async fn unread_counts(
        &self,
        caller: u64,
        cmd: wire::GetUnreadCounts,
    ) -> Result<Vec<(u64, Unread)>, ChatError> {
        let channels = if cmd.channel_ids.is_empty() {
            self.directory.channels_of(caller).await?
        } else {
            for channel_id in &cmd.channel_ids {
                self.directory.member(*channel_id, caller).await?;
            }
            cmd.channel_ids
        };
        let mut counts = Vec::with_capacity(channels.len());
        for channel_id in channels {
            counts.push((channel_id, self.store.unread(channel_id, caller).await?));
        }
        Ok(counts)
    }

    /// Publishes a `chat.acked` receipt without waiting: a lost one is harmless.
    fn publish_receipt(&self, channel_id: u64, caller: u64, pointer: ReadPointer) {
        let event = ChannelEvent {
            channel_id: channel_id.to_string(),
            r#type: EventType::ChatAcked as i32,
            occurred_at: Some(timestamp(pointer.acked_at_ms)),
            actor_id: caller.to_string(),
            payload: Some(pb::channel_event::Payload::ReadPointer(convert::read_pointer(channel_id, caller, pointer))),
            ..Default::default()
        };
        let publisher = self.publisher.clone();
        tokio::spawn(async move {
            if let Err(e) = publisher.publish(vec![event]).await {
                tracing::debug!(error = %e, "receipt not published");
            }
        });
    }
}
