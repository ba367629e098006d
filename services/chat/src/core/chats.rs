//! Chats: sending, reading, history, editing, removing for oneself and retracting.

use std::collections::BTreeSet;

use aws_lc_rs::digest;
use chatmesh_wire::chat as wire;

use super::{ChatCore, Page, ReadBy};
use crate::{
    error::ChatError,
    model::{ChatKind, ChatRecord, NewChat},
    store::{CreateOutcome, ItemOutcome, Range},
};

/// Mentions kept per chat, at most.
const MAX_MENTIONS: usize = 20;

/// Each chat id asked about, with what became of it.
pub type Outcomes = Vec<(u64, Result<(), ChatError>)>;

/// `@username`s in a text: a letter then 2 to 31 letters, digits or `_`, after a non-word
/// character; lowercase, distinct, sorted, at most [`MAX_MENTIONS`].
pub fn mentioned_usernames(text: &str) -> Vec<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let boundary = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if *c != '@' || !boundary {
            continue;
        }
        let name: String = chars[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').collect();
        if (3..=32).contains(&name.len()) && name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            names.insert(name.to_lowercase());
        }
        if names.len() == MAX_MENTIONS {
            break;
        }
    }
    names.into_iter().collect()
}

/// SHA-256 (hex) of what a sender sent, to tell a retry from a different chat under one key.
pub fn body_hash(text: &str, reply_to: u64, attachments: &[u64]) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&reply_to.to_be_bytes());
    for upload in attachments {
        context.update(&upload.to_be_bytes());
    }
    context.update(text.as_bytes());
    context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a page of history starts and the id it stays below: with `after`, oldest first after
/// it (or after the page token) and, with `before` too, below `before`; without, newest first
/// before `before` (or before the page token; neither: from the newest). `None`: nothing lies
/// between `after` and `before`.
pub fn history_range(before: Option<u64>, after: Option<u64>, cursor: Option<u64>) -> Option<(Range, Option<u64>)> {
    // why: the direction is the request's (after: oldest first); the token only moves the start.
    match after {
        Some(after) => {
            let start = cursor.unwrap_or(after);
            before.is_none_or(|before| start < before).then_some((Range::After(start), before))
        }
        None => Some((Range::Before(cursor.or(before)), None)),
    }
}

/// A page of the chats the store listed for a page of `size`, keeping those below `below`: a
/// full page may have more after it, one that reached the bound has not.
pub fn history_page(mut chats: Vec<ChatRecord>, size: usize, below: Option<u64>) -> Page<ChatRecord> {
    if let Some(below) = below {
        chats.retain(|chat| chat.chat_id < below);
    }
    // why: a page cut at the bound holds fewer than `size`, so it is the last.
    let next = chats.last().filter(|_| chats.len() == size).map(|last| last.chat_id);
    Page { items: chats, next }
}

/// What became of one chat in a change of several.
fn item(chat_id: u64, outcome: ItemOutcome) -> Result<ChatRecord, ChatError> {
    match outcome {
        ItemOutcome::Done(chat) => Ok(*chat),
        ItemOutcome::NotFound => Err(ChatError::ChatNotFound(chat_id)),
        ItemOutcome::NotSender => Err(ChatError::NotSender(chat_id)),
        ItemOutcome::Retracted => Err(ChatError::Retracted(chat_id)),
    }
}

impl ChatCore {
    /// Sends a text chat: the caller writes in the channel, a reply stays in it, mentions name
    /// its members, attachments are the caller's finished uploads. A retry under the same
    /// `client_msg_id` answers the chat first sent.
    pub async fn create_chat(&self, caller: u64, cmd: wire::CreateChat) -> Result<ChatRecord, ChatError> {
        let wire::CreateChat { channel_id, text, client_msg_id, reply_to, upload_ids } = cmd;
        self.writer(channel_id, caller).await?;
        let reply_to = reply_to.unwrap_or(0);
        if reply_to != 0 {
            let target = self.store.get_chat(reply_to).await?;
            if target.is_none_or(|t| t.channel_id != channel_id) {
                return Err(ChatError::ReplyNotInChannel(reply_to));
            }
        }
        let mentions = self.mentions(channel_id, &text).await?;
        let mut attachments = Vec::with_capacity(upload_ids.len());
        for upload_id in &upload_ids {
            attachments.push(self.attachment(*upload_id, caller, channel_id).await?);
        }
        let chat = NewChat {
            channel_id,
            sender_id: caller,
            kind: ChatKind::Text,
            body_hash: body_hash(&text, reply_to, &upload_ids),
            attachments,
            text,
            client_msg_id,
            reply_to,
            mentions,
            announcement: None,
        };
        match self.store.create_chat(chat).await? {
            CreateOutcome::Created(chat) => {
                self.tick();
                Ok(chat)
            }
            CreateOutcome::Duplicate(chat) => Ok(chat),
            CreateOutcome::KeyConflict(existing) => Err(ChatError::KeyReused(existing)),
            CreateOutcome::UploadUnavailable(upload) => Err(ChatError::UploadAttached(upload)),
        }
    }

    /// A chat the caller may read, with whether they blocked its sender.
    pub async fn get_chat(&self, caller: u64, cmd: wire::GetChat) -> Result<ReadBy<ChatRecord>, ChatError> {
        let chat = self.readable_chat(cmd.chat_id, caller).await?;
        let blocked = self.blocked_senders(caller, [&chat]).await;
        Ok(ReadBy { read: chat, blocked })
    }

    /// A page of a channel's history, without what the caller removed for themselves, with the
    /// senders the caller blocked.
    pub async fn list_chats(&self, caller: u64, cmd: wire::ListChats) -> Result<ReadBy<Page<ChatRecord>>, ChatError> {
        let wire::ListChats { channel_id, before, after, page_size: size, cursor } = cmd;
        self.directory.member(channel_id, caller).await?;
        let Some((range, below)) = history_range(before, after, cursor) else {
            return Ok(ReadBy { read: Page { items: Vec::new(), next: None }, blocked: Default::default() });
        };
        let chats = self.store.list_chats(channel_id, range, size, caller).await?;
        let page = history_page(chats, size, below);
        let blocked = self.blocked_senders(caller, &page.items).await;
        Ok(ReadBy { read: page, blocked })
    }

    /// Replaces the text of one of the caller's own chats (not in a direct channel where a
    /// block stands between its two members).
    pub async fn edit_chat(&self, caller: u64, cmd: wire::EditChat) -> Result<ChatRecord, ChatError> {
        let wire::EditChat { chat_id, text } = cmd;
        let (_, access) = self.readable_chat_in(chat_id, caller).await?;
        self.not_blocked(caller, access).await?;
        let chat = item(chat_id, self.store.edit_chat(chat_id, caller, text).await?)?;
        self.tick();
        Ok(chat)
    }

    /// Hides chats the caller may read, for the caller only.
    pub async fn remove_chats(&self, caller: u64, cmd: wire::RemoveChats) -> Result<Outcomes, ChatError> {
        let mut outcomes = Vec::with_capacity(cmd.chat_ids.len());
        let mut removable = Vec::new();
        for chat_id in cmd.chat_ids {
            let readable = self.readable_chat(chat_id, caller).await.map(|_| ());
            if readable.is_ok() {
                removable.push(chat_id);
            }
            outcomes.push((chat_id, readable));
        }
        if !removable.is_empty() {
            self.store.remove_chats(caller, removable).await?;
        }
        Ok(outcomes)
    }

    /// Withdraws chats of the caller's own, for everyone.
    pub async fn retract_chats(&self, caller: u64, cmd: wire::RetractChats) -> Result<Outcomes, ChatError> {
        let mut outcomes: Outcomes = Vec::with_capacity(cmd.chat_ids.len());
        let mut retractable = Vec::new();
        for chat_id in cmd.chat_ids {
            let readable = self.readable_chat(chat_id, caller).await.map(|_| ());
            if readable.is_ok() {
                retractable.push(chat_id);
            }
            outcomes.push((chat_id, readable));
        }
        if retractable.is_empty() {
            return Ok(outcomes);
        }
        let done = self.store.retract_chats(caller, retractable.clone()).await?;
        for (chat_id, outcome) in retractable.into_iter().zip(done) {
            if let Some(slot) = outcomes.iter_mut().find(|(id, _)| *id == chat_id) {
                slot.1 = item(chat_id, outcome).map(|_| ());
            }
        }
        self.tick();
        Ok(outcomes)
    }

    /// Retracts a chat on an admin's decision (`moderator`), as its sender would: the same
    /// tombstone and `chat.retracted` event. A chat already retracted is left as it is.
    pub async fn moderate_retract(&self, cmd: wire::ModerateRetractChat) -> Result<(), ChatError> {
        let wire::ModerateRetractChat { chat_id, moderator_id } = cmd;
        let chat = self.store.get_chat(chat_id).await?.ok_or(ChatError::ChatNotFound(chat_id))?;
        if chat.is_retracted() {
            return Ok(());
        }
        let outcome = self.store.retract_chats(chat.sender_id, vec![chat_id]).await?.into_iter().next();
        match outcome.map(|outcome| item(chat_id, outcome)) {
            Some(Ok(_)) => {
                self.tick();
                tracing::info!(chat_id, channel_id = chat.channel_id, moderator_id, "chat retracted by a moderator");
                Ok(())
            }
            // why: retracted in between (by its sender, or a second decision): the end is the same
            Some(Err(ChatError::Retracted(_))) => Ok(()),
            Some(Err(e)) => Err(e),
            None => Err(ChatError::ChatNotFound(chat_id)),
        }
    }

    /// Mentions of members of the channel.
    async fn mentions(&self, channel_id: u64, text: &str) -> Result<Vec<u64>, ChatError> {
        let names = mentioned_usernames(text);
        let mut members = Vec::new();
        for user in self.directory.resolve_usernames(names).await? {
            if self.directory.is_member(channel_id, user).await? {
                members.push(user);
            }
        }
        members.sort_unstable();
        members.dedup();
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chats(ids: &[u64]) -> Vec<ChatRecord> {
        let chat = |chat_id| {
            let new = NewChat {
                channel_id: 5,
                sender_id: 1,
                kind: ChatKind::Text,
                text: "hi".into(),
                client_msg_id: String::new(),
                reply_to: 0,
                mentions: Vec::new(),
                announcement: None,
                body_hash: String::new(),
                attachments: Vec::new(),
            };
            ChatRecord::created(new, chat_id)
        };
        ids.iter().copied().map(chat).collect()
    }

    #[test]
    fn history_runs_the_way_its_bounds_say() {
        let cases = [
            ((None, None, None), Some((Range::Before(None), None))),
            ((Some(9), None, None), Some((Range::Before(Some(9)), None))),
            ((Some(9), None, Some(7)), Some((Range::Before(Some(7)), None))),
            ((None, Some(3), None), Some((Range::After(3), None))),
            ((None, Some(3), Some(5)), Some((Range::After(5), None))),
            ((Some(9), Some(3), None), Some((Range::After(3), Some(9)))),
            ((Some(9), Some(3), Some(5)), Some((Range::After(5), Some(9)))),
            ((Some(9), Some(8), None), Some((Range::After(8), Some(9)))),
            ((Some(9), Some(9), None), None),
            ((Some(3), Some(9), None), None),
            ((Some(9), Some(3), Some(9)), None),
        ];
        for ((before, after, cursor), expected) in cases {
            assert_eq!(
                history_range(before, after, cursor),
                expected,
                "before {before:?} after {after:?} token {cursor:?}"
            );
        }
    }

    #[test]
    fn a_page_between_two_chats_ends_at_the_bound() {
        let page = |listed: &[u64], size, below| {
            let page = history_page(chats(listed), size, below);
            (page.items.iter().map(|c| c.chat_id).collect::<Vec<_>>(), page.next)
        };
        assert_eq!(page(&[4, 5], 2, Some(9)), (vec![4, 5], Some(5)), "full and below the bound: more may follow");
        assert_eq!(page(&[4, 5, 6], 3, Some(6)), (vec![4, 5], None), "the bound reached: the last page");
        assert_eq!(page(&[9, 10], 2, Some(9)), (vec![], None), "nothing below the bound");
        assert_eq!(page(&[4], 2, Some(9)), (vec![4], None), "the channel's end");
        assert_eq!(page(&[4, 6], 2, None), (vec![4, 6], Some(6)), "no bound: a full page may have more");
        assert_eq!(page(&[], 2, None), (vec![], None));
    }

    #[test]
    fn mentions_are_found_at_word_boundaries() {
        assert_eq!(mentioned_usernames("hi @Ada and @bob_1, not me@mail.com or @x"), vec!["ada", "bob_1"]);
        assert_eq!(mentioned_usernames("@@ada"), vec!["ada"]);
        assert!(mentioned_usernames("no mentions").is_empty());
    }

    #[test]
    fn mentions_are_capped_and_deduplicated() {
        let text: String = (0..30).map(|i| format!("@user{i:02} @USER{i:02} ")).collect();
        let names = mentioned_usernames(&text);
        assert_eq!(names.len(), MAX_MENTIONS);
        assert_eq!(names[0], "user00");
        assert!(mentioned_usernames("@ab @9lives @_under").is_empty(), "too short, or not starting with a letter");
    }

    #[test]
    fn the_body_hash_tells_different_chats_apart() {
        let base = body_hash("hello", 0, &[]);
        assert_eq!(base, body_hash("hello", 0, &[]));
        assert_eq!(base.len(), 64);
        assert_ne!(base, body_hash("hello!", 0, &[]));
        assert_ne!(base, body_hash("hello", 5, &[]));
        assert_ne!(base, body_hash("hello", 0, &[5]));
        assert_ne!(body_hash("", 0, &[1, 2]), body_hash("", 0, &[2, 1]), "attachment order counts");
    }
}
