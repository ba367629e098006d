//! The chat service's rules, in domain types: who may write where, what a chat carries, which
//! uploads may be attached, what a search may show. Each operation of ChatService and
//! ChatInternalService is a method of [`ChatCore`] taking the caller's user id and the
//! validated request (`chatmesh_wire::chat`); the rules it asks are plain functions beside it,
//! tested without tonic. Durability and ordering live in the store.

mod acks;
mod chats;
mod events;
mod search;
mod uploads;

use std::{collections::HashSet, sync::Arc};

use chatmesh_api::channel::v1::{ChannelKind, MemberRole};
use chatmesh_platform::ids::IdGenerator;
use chatmesh_search::{IndexerStatus, SearchIndex};
use tokio::sync::watch;

pub use self::search::{Hit, SearchHealth};

use crate::{
    delivery::Publisher,
    directory::{Access, Directory},
    error::ChatError,
    media::Media,
    model::ChatRecord,
    store::ChatStore,
};

/// The search index this process serves queries from, and whether its indexer runs here.
#[derive(Clone)]
pub struct Search {
    pub index: Arc<dyn SearchIndex>,
    pub indexer: Arc<IndexerStatus>,
}

/// What the chat service is built from.
pub struct ChatDeps {
    pub store: Arc<dyn ChatStore>,
    pub directory: Directory,
    pub publisher: Arc<dyn Publisher>,
    /// Ticks after each committed write, waking the change feed's delivery tasks.
    pub committed: watch::Sender<u64>,
    /// The search index queries are served from, when this process has one.
    pub search: Option<Search>,
    /// The attachments' backend, when this process has one.
    pub media: Option<Arc<Media>>,
    /// For upload ids.
    pub ids: Arc<IdGenerator>,
}

/// One page of a list, and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<u64>,
}

/// What a reader read, with the senders they blocked (whose chats are marked `sender_blocked`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBy<T> {
    pub read: T,
    pub blocked: Arc<HashSet<u64>>,
}

/// The operations of the chat service, shared by its public and internal surfaces.
pub struct ChatCore {
    store: Arc<dyn ChatStore>,
    directory: Directory,
    publisher: Arc<dyn Publisher>,
    committed: watch::Sender<u64>,
    search: Option<Search>,
    media: Option<Arc<Media>>,
    ids: Arc<IdGenerator>,
}

/// Whether a member with `role` may write (send chats, start uploads) in a channel of `kind`:
/// in a broadcast channel only its owner writes.
pub fn may_write(kind: ChannelKind, role: MemberRole) -> Result<(), ChatError> {
    match chatmesh_platform::membership::may_write(kind, role) {
        true => Ok(()),
        false => Err(ChatError::BroadcastOwnerOnly),
    }
}

/// Whether a member may write in a direct channel whose other member is `peer`: not while
/// either of the two has blocked the other (`blocked`). Groups and broadcasts ask no block.
pub fn may_write_to(peer: u64, blocked: bool) -> Result<(), ChatError> {
    if blocked { Err(ChatError::UserBlocked(peer)) } else { Ok(()) }
}

impl ChatCore {
    pub fn new(deps: ChatDeps) -> Self {
        let ChatDeps { store, directory, publisher, committed, search, media, ids } = deps;
        Self { store, directory, publisher, committed, search, media, ids }
    }

    /// Wakes the change feed's delivery tasks after a committed write.
    fn tick(&self) {
        self.committed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Checks that `caller` may write in `channel_id`.
    async fn writer(&self, channel_id: u64, caller: u64) -> Result<(), ChatError> {
        let access = self.directory.member(channel_id, caller).await?;
        may_write(access.kind, access.role)?;
        self.not_blocked(caller, access).await
    }

    /// Checks that no block stands between `caller` and the other member of a direct channel
    /// (asked beside the membership check, with the same cache and staleness bound).
    async fn not_blocked(&self, caller: u64, access: Access) -> Result<(), ChatError> {
        // why: a channel service that names no direct members (an older one, mid-upgrade)
        // leaves nobody to ask about; the block holds again once it does
        let Some(peer) = access.peer.filter(|_| access.kind == ChannelKind::Direct) else { return Ok(()) };
        may_write_to(peer, self.directory.blocked_between(caller, peer).await?)
    }

    /// A chat the caller may read: it exists, they belong to its channel, they did not remove it.
    async fn readable_chat(&self, chat_id: u64, caller: u64) -> Result<ChatRecord, ChatError> {
        Ok(self.readable_chat_in(chat_id, caller).await?.0)
    }

    /// A chat the caller may read, with the caller's access to its channel.
    async fn readable_chat_in(&self, chat_id: u64, caller: u64) -> Result<(ChatRecord, Access), ChatError> {
        let chat = self.store.get_chat(chat_id).await?.ok_or(ChatError::ChatNotFound(chat_id))?;
        let access = match self.directory.member(chat.channel_id, caller).await {
            Ok(access) => access,
            // why: a chat of a channel the caller cannot see does not exist for them.
            Err(ChatError::ChannelNotFound(_)) => return Err(ChatError::ChatNotFound(chat_id)),
            Err(e) => return Err(e),
        };
        if self.store.is_removed(caller, chat_id).await? {
            return Err(ChatError::ChatNotFound(chat_id));
        }
        Ok((chat, access))
    }

    /// Whom `reader` blocked, to mark `chats` with: one lookup for a whole answer, none when
    /// every chat is the reader's own.
    async fn blocked_senders<'a>(
        &self,
        reader: u64,
        chats: impl IntoIterator<Item = &'a ChatRecord>,
    ) -> Arc<HashSet<u64>> {
        if !chats.into_iter().any(|chat| chat.sender_id != reader) {
            return Arc::default();
        }
        // why: the mark only helps a client fold chats; when the user service cannot say, the
        // chats are answered unmarked rather than not at all
        self.directory.blocked_by(reader).await.unwrap_or_else(|e| {
            tracing::warn!(reader, error = %e, "blocked senders unknown, chats answered unmarked");
            Arc::default()
        })
    }

    fn media(&self) -> Result<&Arc<Media>, ChatError> {
        self.media.as_ref().ok_or(ChatError::MediaNotServed)
    }

    fn search(&self) -> Result<&Search, ChatError> {
        self.search.as_ref().ok_or(ChatError::SearchNotServed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_writes_in_a_broadcast_channel() {
        use ChannelKind::*;
        use MemberRole::*;
        let cases = [
            (Broadcast, Owner, true),
            (Broadcast, Admin, false),
            (Broadcast, Member, false),
            (Group, Member, true),
            (Group, Admin, true),
            (Group, Owner, true),
            (Direct, Member, true),
        ];
        for (kind, role, allowed) in cases {
            let verdict = may_write(kind, role);
            assert_eq!(verdict.is_ok(), allowed, "{kind:?} {role:?}");
            if !allowed {
                assert!(matches!(verdict, Err(ChatError::BroadcastOwnerOnly)));
            }
        }
    }

    #[test]
    fn a_block_either_way_stops_writing_to_the_other_of_a_direct_channel() {
        assert!(may_write_to(7, false).is_ok());
        assert!(matches!(may_write_to(7, true), Err(ChatError::UserBlocked(7))));
    }
}

#[cfg(test)]
mod blocks_tests;
