//! Reads of the embedded chat store, each on one durable snapshot (the writer publishes a new
//! one after every synced batch).

use chatmesh_api::chat::v1::{ChannelEvent, EventType, channel_event::Payload};
use fjall::{Readable, Snapshot};
use prost::Message;

use super::{
    Shared,
    keys::{
        CHAT_CHANNEL, CHATS, EVENTS, FEED, META, POINTERS, PRIVATE, RECLAIM, REMOVED, REMOVED_BY, UPLOADS, backend,
        decode_chat, decode_upload, key2, tail_u64, u64_of,
    },
};
use crate::{
    model::{ChatKind, ChatRecord, ReadPointer, UploadRecord},
    store::{Range, StoreError, Unread},
};

impl Shared {
    fn chat(&self, snap: &Snapshot, channel_id: u64, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
        snap.get(&self.ks[CHATS], key2(channel_id, chat_id)).map_err(backend)?.map(|v| decode_chat(&v)).transpose()
    }

    fn channel_of(&self, snap: &Snapshot, chat_id: u64) -> Result<Option<u64>, StoreError> {
        snap.get(&self.ks[CHAT_CHANNEL], chat_id.to_be_bytes()).map_err(backend)?.map(|v| u64_of(&v)).transpose()
    }

    pub(super) fn removed(&self, snap: &Snapshot, user: u64, chat_id: u64) -> Result<bool, StoreError> {
        snap.contains_key(&self.ks[REMOVED], key2(user, chat_id)).map_err(backend)
    }

    /// A logged event with its chat as it is now.
    fn hydrate(&self, snap: &Snapshot, bytes: &[u8]) -> Result<ChannelEvent, StoreError> {
        let mut event = ChannelEvent::decode(bytes).map_err(backend)?;
        if let Some(Payload::Chat(stub)) = &event.payload {
            let (channel, chat) = (stub.channel_id.parse().unwrap_or(0), stub.chat_id.parse().unwrap_or(0));
            if let Some(record) = self.chat(snap, channel, chat)? {
                event.payload = Some(Payload::Chat(record.to_pb(None)));
            }
        }
        Ok(event)
    }

    // chats

    pub(super) fn get_chat(&self, snap: &Snapshot, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
        match self.channel_of(snap, chat_id)? {
            Some(channel) => self.chat(snap, channel, chat_id),
            None => Ok(None),
        }
    }

    pub(super) fn list_chats(
        &self,
        snap: &Snapshot,
        channel_id: u64,
        range: Range,
        limit: usize,
        viewer: u64,
    ) -> Result<Vec<ChatRecord>, StoreError> {
        let ks = &self.ks[CHATS];
        let iter: Box<dyn Iterator<Item = fjall::Guard>> = match range {
            Range::Before(before) => {
                let end = key2(channel_id, before.unwrap_or(u64::MAX));
                let start = key2(channel_id, 0);
                match before {
                    Some(_) => Box::new(snap.range(ks, start..end).rev()),
                    None => Box::new(snap.range(ks, start..=end).rev()),
                }
            }
            Range::After(after) => {
                Box::new(snap.range(ks, key2(channel_id, after.saturating_add(1))..=key2(channel_id, u64::MAX)))
            }
        };
        let mut out = Vec::new();
        for guard in iter {
            let chat = decode_chat(&guard.value().map_err(backend)?)?;
            if !self.removed(snap, viewer, chat.chat_id)? {
                out.push(chat);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(super) fn newest_chat_at_or_before(
        &self,
        snap: &Snapshot,
        channel_id: u64,
        max_id: u64,
    ) -> Result<Option<u64>, StoreError> {
        match snap.range(&self.ks[CHATS], key2(channel_id, 0)..=key2(channel_id, max_id)).next_back() {
            Some(guard) => Ok(Some(tail_u64(&guard.key().map_err(backend)?)?)),
            None => Ok(None),
        }
    }

    pub(super) fn scan_chats(
        &self,
        snap: &Snapshot,
        after: (u64, u64),
        limit: usize,
    ) -> Result<Vec<ChatRecord>, StoreError> {
        let start = match after {
            (0, 0) => key2(0, 0),
            (channel, chat) if chat == u64::MAX => key2(channel.saturating_add(1), 0),
            (channel, chat) => key2(channel, chat + 1),
        };
        snap.range(&self.ks[CHATS], start..)
            .take(limit)
            .map(|guard| decode_chat(&guard.value().map_err(backend)?))
            .collect()
    }

    pub(super) fn removed_by(&self, snap: &Snapshot, chat_id: u64) -> Result<Vec<u64>, StoreError> {
        snap.range(&self.ks[REMOVED_BY], key2(chat_id, 0)..=key2(chat_id, u64::MAX))
            .map(|guard| tail_u64(&guard.key().map_err(backend)?))
            .collect()
    }

    // the event log

    pub(super) fn list_events(
        &self,
        snap: &Snapshot,
        channel_id: u64,
        after_event: u64,
        limit: usize,
    ) -> Result<Vec<ChannelEvent>, StoreError> {
        let start = key2(channel_id, after_event.saturating_add(1));
        let end = key2(channel_id, u64::MAX);
        let mut out = Vec::new();
        for guard in snap.range(&self.ks[EVENTS], start..=end).take(limit) {
            out.push(self.hydrate(snap, &guard.value().map_err(backend)?)?);
        }
        Ok(out)
    }

    pub(super) fn channel_deleted(&self, snap: &Snapshot, channel_id: u64) -> Result<bool, StoreError> {
        let newest = snap.range(&self.ks[EVENTS], key2(channel_id, 0)..=key2(channel_id, u64::MAX)).next_back();
        match newest {
            Some(guard) => {
                let event = ChannelEvent::decode(&*guard.value().map_err(backend)?).map_err(backend)?;
                Ok(event.r#type() == EventType::ChannelDeleted)
            }
            None => Ok(false),
        }
    }

    // the change feed

    pub(super) fn feed(
        &self,
        snap: &Snapshot,
        after_event: u64,
        limit: usize,
    ) -> Result<Vec<ChannelEvent>, StoreError> {
        let mut out = Vec::new();
        for guard in snap.range(&self.ks[FEED], after_event.saturating_add(1).to_be_bytes()..).take(limit) {
            let (key, value) = guard.into_inner().map_err(backend)?;
            let event_id = u64_of(&key)?;
            let stored = match value.len() {
                8 => snap.get(&self.ks[EVENTS], key2(u64_of(&value)?, event_id)),
                _ => snap.get(&self.ks[PRIVATE], key2(tail_u64(&value)?, event_id)),
            };
            if let Some(bytes) = stored.map_err(backend)? {
                out.push(self.hydrate(snap, &bytes)?);
            }
        }
        Ok(out)
    }

    pub(super) fn feed_head(&self, snap: &Snapshot) -> Result<u64, StoreError> {
        match snap.iter(&self.ks[FEED]).next_back() {
            Some(guard) => u64_of(&guard.key().map_err(backend)?),
            None => Ok(0),
        }
    }

    pub(super) fn feed_count(&self, snap: &Snapshot, after_event: u64, cap: u64) -> Result<u64, StoreError> {
        Ok(snap.range(&self.ks[FEED], after_event.saturating_add(1).to_be_bytes()..).take(cap as usize).count() as u64)
    }

    pub(super) fn cursor(&self, snap: &Snapshot, name: &str) -> Result<u64, StoreError> {
        snap.get(&self.ks[META], format!("cursor:{name}")).map_err(backend)?.map_or(Ok(0), |v| u64_of(&v))
    }

    // read pointers

    pub(super) fn unread(&self, snap: &Snapshot, channel_id: u64, user: u64) -> Result<Unread, StoreError> {
        let pointer: ReadPointer = snap
            .get(&self.ks[POINTERS], key2(channel_id, user))
            .map_err(backend)?
            .map(|v| serde_json::from_slice(&v).map_err(backend))
            .transpose()?
            .unwrap_or_default();
        let ks = &self.ks[CHATS];
        let last_chat_id = match snap.range(ks, key2(channel_id, 0)..=key2(channel_id, u64::MAX)).next_back() {
            Some(guard) => tail_u64(&guard.key().map_err(backend)?)?,
            None => 0,
        };
        let mut count = 0;
        let start = key2(channel_id, pointer.last_read_chat_id.saturating_add(1));
        for guard in snap.range(ks, start..=key2(channel_id, u64::MAX)) {
            let chat = decode_chat(&guard.value().map_err(backend)?)?;
            if chat.sender_id != user
                && chat.kind == ChatKind::Text
                && !chat.is_retracted()
                && !self.removed(snap, user, chat.chat_id)?
            {
                count += 1;
            }
        }
        Ok(Unread { count, last_chat_id, pointer })
    }

    // uploads

    pub(super) fn get_upload(&self, snap: &Snapshot, upload_id: u64) -> Result<Option<UploadRecord>, StoreError> {
        snap.get(&self.ks[UPLOADS], upload_id.to_be_bytes()).map_err(backend)?.map(|v| decode_upload(&v)).transpose()
    }

    pub(super) fn reclaimable_uploads(&self, snap: &Snapshot, limit: usize) -> Result<Vec<UploadRecord>, StoreError> {
        let mut out = Vec::new();
        for guard in snap.iter(&self.ks[RECLAIM]).take(limit) {
            let key = guard.key().map_err(backend)?;
            if let Some(bytes) = snap.get(&self.ks[UPLOADS], &*key).map_err(backend)? {
                out.push(decode_upload(&bytes)?);
            }
        }
        Ok(out)
    }
}
