//! The newest membership epoch known per channel, shared by the parts of one process: the
//! channel service raises it before a membership change returns, and callers' cached
//! membership answers older than it are stale. (Across processes it is fed by the backplane.)

use std::{collections::HashMap, sync::RwLock};

#[derive(Debug, Default)]
pub struct EpochBoard {
    epochs: RwLock<HashMap<u64, u64>>,
}

impl EpochBoard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `channel_id` reached `epoch` (epochs only grow).
    pub fn raise(&self, channel_id: u64, epoch: u64) {
        let mut epochs = self.epochs.write().unwrap_or_else(|e| e.into_inner());
        let entry = epochs.entry(channel_id).or_insert(epoch);
        *entry = (*entry).max(epoch);
    }

    /// Whether an answer carrying `epoch` may still be used.
    pub fn is_current(&self, channel_id: u64, epoch: u64) -> bool {
        let epochs = self.epochs.read().unwrap_or_else(|e| e.into_inner());
        epochs.get(&channel_id).is_none_or(|known| *known <= epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_older_than_the_newest_epoch_are_stale() {
        let board = EpochBoard::new();
        assert!(board.is_current(1, 3), "nothing known yet");
        board.raise(1, 5);
        board.raise(1, 4);
        assert!(!board.is_current(1, 4));
        assert!(board.is_current(1, 5));
        assert!(board.is_current(2, 1));
    }
}
