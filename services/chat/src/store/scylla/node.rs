//! This process's node in `chat_feed_nodes` (migration 0005): whether an earlier process of the
//! node wrote its feed, and whether the last one stopped cleanly.
//!
//! A process that died may have left a logged batch of its node's feed in the batchlog, which
//! can land up to [`change_feed::REPLAY_WINDOW`] later, below a cursor that has moved on. So a
//! process whose node's feed was written before leaves the feed's last
//! [`change_feed::REPLAY_WINDOW`] out for that long ([`change_feed::Inflight::hold_recent`]) —
//! unless the process before it stopped cleanly: an orderly stop with nothing in flight
//! ([`change_feed::Inflight::quiet`]) sets `clean_close_us`, and the next process, finding it set
//! and newer than the feed's newest event, waits for nothing. Before a feed write (its first, or
//! the first after its own clean stop) a process clears the mark and waits for the clear to
//! return, so a crash after that write is never taken for a clean stop.
//!
//! The mark is set and cleared `USING TIMESTAMP` past every write of it the process knows (read
//! at start, or its own), so a clear beats the mark it clears even from a process whose clock
//! is behind the one that set it. The mark's value is its own write timestamp (µs).

use std::sync::atomic::{AtomicBool, Ordering};

use chatmesh_cql::values;
use tokio::sync::{Mutex, OnceCell};

use super::{
    ScyllaChatStore, change_feed, cql_error,
    statements::{GET_FEED_NODE, MARK_FEED_NODE, PUT_FEED_NODE},
    write::timestamp_of,
};
use crate::store::StoreError;

/// What this process knows of its node's row.
#[derive(Debug, Default)]
pub(super) struct NodeRow {
    /// Set once the row was read (and written, for a fresh node): before the first feed read or
    /// write.
    started: OnceCell<()>,
    /// Whether the row may hold a clean-stop mark, which a feed write clears first.
    marked: AtomicBool,
    /// The newest write timestamp (µs) of the mark this process knows; locked while the mark
    /// is set or cleared.
    mark_written_at: Mutex<i64>,
}

impl ScyllaChatStore {
    /// Before this process's first feed read or write: records its node, or, when an earlier
    /// process of the node wrote the feed and did not stop cleanly after its last write, holds
    /// back the feed's last [`change_feed::REPLAY_WINDOW`] for that long. A fresh node, or one
    /// whose last process stopped cleanly, waits for nothing.
    pub(super) async fn started(&self) -> Result<(), StoreError> {
        self.inner.node_row.started.get_or_try_init(|| self.check_node()).await.map(|_| ())
    }

    async fn check_node(&self) -> Result<(), StoreError> {
        let (node, row) = (self.inner.node, &self.inner.node_row);
        let found: Option<(Option<i64>, Option<i64>)> =
            self.cql().row(&GET_FEED_NODE, values![node]).await.map_err(cql_error)?;
        match found {
            None => {
                let first_write_ms = (self.inner.now)();
                self.cql().execute(&PUT_FEED_NODE, values![node, first_write_ms]).await.map_err(cql_error)?;
                self.synced(&[]);
            }
            Some((_, Some(clean_close))) => {
                {
                    let mut written_at = row.mark_written_at.lock().await;
                    *written_at = (*written_at).max(clean_close);
                }
                row.marked.store(true, Ordering::SeqCst);
                // why: the mark counts only if no feed write of the node came after it
                let head = change_feed::feed_head_at(self.cql(), node, (self.inner.now)()).await?;
                if head == 0 || timestamp_of(head) < clean_close {
                    tracing::info!(node, "this node's last process stopped cleanly: no batchlog replay to wait out");
                } else {
                    self.inner.inflight.hold_recent();
                    tracing::info!(
                        node,
                        head,
                        "this node's feed was written after its last clean stop: waiting out the batchlog's replay window"
                    );
                }
            }
            Some((_, None)) => {
                self.inner.inflight.hold_recent();
                tracing::info!(node, "this node's feed was written before: waiting out the batchlog's replay window");
            }
        }
        Ok(())
    }

    /// Before a feed write: [`started`](Self::started), and the node's clean-stop mark cleared
    /// (the clear returned), so the node is never marked clean while a write of it may still be
    /// in the batchlog. The caller's event ids are in flight already.
    pub(super) async fn writing(&self) -> Result<(), StoreError> {
        self.started().await?;
        let row = &self.inner.node_row;
        if !row.marked.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut written_at = row.mark_written_at.lock().await;
        if !row.marked.load(Ordering::SeqCst) {
            return Ok(());
        }
        let ts = self.past(*written_at);
        // why: taken even if the clear fails: it may still apply, and the next mark must beat it
        *written_at = ts;
        self.cql().execute(&MARK_FEED_NODE, values![ts, None::<i64>, self.inner.node]).await.map_err(cql_error)?;
        row.marked.store(false, Ordering::SeqCst);
        self.synced(&[]);
        Ok(())
    }

    /// At an orderly stop: marks the node's last process as stopped cleanly, unless a write of
    /// it is unsettled (in flight, or failed and held while it is retried) or the replay window
    /// of a process before it is not waited out yet; then the next process waits it out. A feed
    /// write after this clears the mark again.
    pub(super) async fn close_node(&self) -> Result<(), StoreError> {
        self.started().await?;
        let (node, row) = (self.inner.node, &self.inner.node_row);
        let mut written_at = row.mark_written_at.lock().await;
        // why: from here a feed write waits for this lock and then clears the mark; one that
        // passed the check before has its ids in flight, which `quiet` sees
        row.marked.store(true, Ordering::SeqCst);
        if !self.inner.inflight.quiet() {
            tracing::warn!(
                node,
                "stopping with a chat write unsettled or a replay window not waited out: the next process of this \
                 node waits out the batchlog's replay window"
            );
            return Ok(());
        }
        let ts = self.past(*written_at).max(timestamp_of(self.inner.inflight.high()) + 1);
        *written_at = ts;
        self.cql().execute(&MARK_FEED_NODE, values![ts, ts, node]).await.map_err(cql_error)?;
        self.synced(&[]);
        tracing::info!(node, "stopped cleanly: the next process of this node delivers at once");
        Ok(())
    }

    /// A write timestamp (µs) for the mark: now, or past `known` if that is later.
    fn past(&self, known: i64) -> i64 {
        let now_us = i64::try_from((self.inner.now)()).unwrap_or(i64::MAX).saturating_mul(1000);
        now_us.max(known.saturating_add(1))
    }
}
