//! Every Redis key and pub/sub channel name chatmesh uses, in one place. Names carry the
//! `chatmesh:` prefix so a shared Redis stays readable; ids sit in `{…}` hash tags so a Redis
//! Cluster keeps one channel's keys on one shard.

/// The pub/sub channel carrying a chat channel's live events between dispatchers.
pub fn live_channel(channel_id: u64) -> String {
    format!("chatmesh:live:{{{channel_id}}}")
}

/// The pub/sub channel on which a dispatcher that failed to publish announces, once Redis
/// answers again, that others may have missed events (they send their sessions to resume).
pub fn live_gaps() -> &'static str {
    "chatmesh:live:gaps"
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_prefixed_and_hash_tagged() {
        assert_eq!(super::live_channel(42), "chatmesh:live:{42}");
    }
}
