//! Time-ordered 64-bit ids (snowflake): 41 bits of milliseconds since 2024-01-01 UTC,
//! 10 bits of node id, 12 bits of sequence. Rendered in decimal on the wire.

use std::{
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

/// 2024-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_MS: u64 = 1_704_067_200_000;
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;
const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;

/// Mints ids for one node. The clock never runs backwards in ids: if the wall clock steps
/// back, ids keep counting from the last millisecond used.
#[derive(Debug)]
pub struct IdGenerator {
    node: u64,
    state: Mutex<(u64, u64)>, // (last millisecond, sequence)
}

impl IdGenerator {
    pub fn new(node_id: u16) -> Result<Self, String> {
        if node_id > MAX_NODE_ID {
            return Err(format!("node_id {node_id} is above {MAX_NODE_ID}"));
        }
        Ok(Self { node: u64::from(node_id), state: Mutex::new((0, 0)) })
    }

    /// The node id this generator mints for.
    pub fn node_id(&self) -> u16 {
        self.node as u16
    }

    pub fn next_id(&self) -> u64 {
        let now = now_ms().saturating_sub(EPOCH_MS);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, seq) = *state;
        let (ms, seq) = if now > last {
            (now, 0)
        } else if seq < MAX_SEQ {
            (last, seq + 1)
        } else {
            // why: 4096 ids in one millisecond; borrow the next millisecond rather than spin.
            (last + 1, 0)
        };
        *state = (ms, seq);
        (ms << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | seq
    }
}

/// The Unix time in milliseconds an id was minted at.
pub fn unix_ms_of(id: u64) -> u64 {
    (id >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS
}

/// The largest id that could have been minted at or before Unix millisecond `unix_ms`.
pub fn max_id_at(unix_ms: u64) -> u64 {
    let ms = unix_ms.saturating_sub(EPOCH_MS);
    (ms << (NODE_BITS + SEQ_BITS)) | ((1 << (NODE_BITS + SEQ_BITS)) - 1)
}

pub use chatmesh_wire::ids::parse_id;

/// A protobuf timestamp of Unix milliseconds.
pub fn timestamp(unix_ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: (unix_ms / 1000) as i64, nanos: ((unix_ms % 1000) * 1_000_000) as i32 }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strictly_increasing_and_carry_the_node() {
        let ids = IdGenerator::new(7).unwrap();
        let mut last = 0;
        for _ in 0..100_000 {
            let id = ids.next_id();
            assert!(id > last);
            assert_eq!((id >> SEQ_BITS) & u64::from(MAX_NODE_ID), 7);
            last = id;
        }
        assert!(unix_ms_of(last) <= now_ms() + 100);
        assert!(max_id_at(unix_ms_of(last)) >= last);
        assert!(max_id_at(unix_ms_of(last) - 1) < last);
    }

    #[test]
    fn node_ids_above_the_range_are_refused() {
        assert!(IdGenerator::new(1024).is_err());
    }

    #[test]
    fn parse_id_accepts_decimal_only() {
        assert_eq!(parse_id("42"), Some(42));
        for bad in ["", "0", "-1", "1e3", " 1", "99999999999999999999999"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
