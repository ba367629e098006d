//! Planning a write (bulk requests around channel deletes, chats staged since the last commit)
//! and sorting the items of a bulk answer into done, to retry and refused.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::backend;
use crate::{IndexChange, IndexError, IndexedChat, Rejected};

/// Elasticsearch's external versions are signed 64-bit.
const MAX_EXTERNAL_VERSION: u64 = i64::MAX as u64;
/// Staged chats tracked for channel deletes; past this (a rebuild), a channel delete refreshes.
pub(super) const MAX_TRACKED: usize = 100_000;

/// Chats staged since the last commit, by channel: what a channel delete must remove by id.
#[derive(Debug, Default)]
pub(super) struct Staged {
    channel_of: HashMap<u64, u64>,
    /// More were staged than are tracked: a channel delete refreshes before its query instead.
    overflowed: bool,
}

impl Staged {
    fn track(&mut self, chat_id: u64, channel_id: u64) {
        if self.overflowed {
            return;
        }
        if self.channel_of.len() >= MAX_TRACKED && !self.channel_of.contains_key(&chat_id) {
            self.overflowed = true;
            self.channel_of = HashMap::new();
            return;
        }
        self.channel_of.insert(chat_id, channel_id);
    }
}

/// A document operation of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DocOp {
    Upsert(IndexedChat),
    /// A versioned delete loses to a newer state written by another indexer (409, done).
    Delete {
        chat_id: u64,
        version: Option<u64>,
    },
}

impl DocOp {
    fn chat_id(&self) -> u64 {
        match self {
            DocOp::Upsert(chat) => chat.chat_id,
            DocOp::Delete { chat_id, .. } => *chat_id,
        }
    }
}

/// One request of a write, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Bulk(Vec<DocOp>),
    /// A `_delete_by_query` on the channel, after a refresh when staged chats were not tracked.
    DeleteChannel {
        channel_id: u64,
        refresh_first: bool,
    },
}

/// Turns a batch of changes into the requests that apply it in order, and the changes refused
/// before sending (a version Elasticsearch cannot hold). Tracks staged chats in `staged`.
pub(super) fn plan(changes: Vec<IndexChange>, staged: &mut Staged) -> (Vec<Step>, Vec<Rejected>) {
    let (mut steps, mut bulk, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
    for change in changes {
        match change {
            IndexChange::Upsert(chat) if chat.version > MAX_EXTERNAL_VERSION => rejected.push(Rejected {
                chat_id: chat.chat_id,
                reason: format!("version {} is beyond Elasticsearch's external versions", chat.version),
            }),
            IndexChange::Upsert(chat) => {
                staged.track(chat.chat_id, chat.channel_id);
                bulk.push(DocOp::Upsert(chat));
            }
            IndexChange::Delete { chat_id, version } => {
                staged.channel_of.remove(&chat_id);
                let version = (version > 0 && version <= MAX_EXTERNAL_VERSION).then_some(version);
                bulk.push(DocOp::Delete { chat_id, version });
            }
            IndexChange::DeleteChannel { channel_id } => {
                let mut ids: Vec<u64> =
                    staged.channel_of.iter().filter(|(_, c)| **c == channel_id).map(|(id, _)| *id).collect();
                ids.sort_unstable();
                for chat_id in ids {
                    staged.channel_of.remove(&chat_id);
                    bulk.push(DocOp::Delete { chat_id, version: None });
                }
                if !bulk.is_empty() {
                    steps.push(Step::Bulk(std::mem::take(&mut bulk)));
                }
                steps.push(Step::DeleteChannel { channel_id, refresh_first: staged.overflowed });
            }
        }
    }
    if !bulk.is_empty() {
        steps.push(Step::Bulk(bulk));
    }
    (steps, rejected)
}

/// What became of the items of a bulk request (indices into what was sent).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Outcome {
    /// Applied, or already superseded (409: the index holds this version or a newer one).
    pub done: Vec<usize>,
    /// Refused for now (429, 5xx): to send again.
    pub retry: Vec<usize>,
    /// Refused for good (400: the document is malformed).
    pub rejected: Vec<Rejected>,
    /// Why the first item to retry was refused.
    pub retry_reason: Option<String>,
}

/// Sorts the items of a bulk response; an item refused in a way no retry or dead letter fixes
/// (a missing index, a read-only block, a forbidden write) fails the whole write.
pub(super) fn classify(response: &Value, sent: &[DocOp]) -> Result<Outcome, IndexError> {
    let items = response.get("items").and_then(Value::as_array).ok_or_else(|| backend("bulk: no items in response"))?;
    if items.len() != sent.len() {
        return Err(backend(format!("bulk: {} items answered for {} sent", items.len(), sent.len())));
    }
    let mut outcome = Outcome::default();
    for (i, (item, op)) in items.iter().zip(sent).enumerate() {
        let result = item.as_object().and_then(|o| o.values().next()).unwrap_or(&Value::Null);
        let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
        let error = result.get("error");
        match status {
            200..=299 | 409 => outcome.done.push(i),
            // a delete of a chat the index does not hold
            404 if error.is_none() && matches!(op, DocOp::Delete { .. }) => outcome.done.push(i),
            429 | 500..=599 => {
                outcome.retry.push(i);
                outcome.retry_reason.get_or_insert_with(|| format!("HTTP {status}: {}", reason(error)));
            }
            400 => outcome.rejected.push(Rejected { chat_id: op.chat_id(), reason: reason(error) }),
            _ => {
                return Err(backend(format!(
                    "bulk: chat {} refused with HTTP {status}: {}",
                    op.chat_id(),
                    reason(error)
                )));
            }
        }
    }
    Ok(outcome)
}

/// `type: reason` of an Elasticsearch error object.
pub(super) fn reason(error: Option<&Value>) -> String {
    let Some(error) = error else { return "no error given".into() };
    let field = |name| error.get(name).and_then(Value::as_str);
    match (field("type"), field("reason")) {
        (Some(ty), Some(reason)) => format!("{ty}: {reason}"),
        (Some(ty), None) => ty.to_owned(),
        _ => error.to_string(),
    }
}

/// The items to send again: those refused, and every later one about the same chat, so a
/// retried change cannot land after a change that followed it.
pub(super) fn with_followers(ops: &[DocOp], refused: &[usize]) -> Vec<usize> {
    let refused: HashSet<usize> = refused.iter().copied().collect();
    let mut chats = HashSet::new();
    let mut again = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if refused.contains(&i) || chats.contains(&op.chat_id()) {
            chats.insert(op.chat_id());
            again.push(i);
        }
    }
    again
}
