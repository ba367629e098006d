//! Every Redis key and pub/sub channel name chatmesh uses, in one place. Names carry the
//! `chatmesh:` prefix so a shared Redis stays readable; ids sit in `{…}` hash tags so a Redis
//! Cluster keeps one channel's keys on one shard.

/// The pub/sub channel carrying a chat channel's live events between dispatchers.
pub fn live_channel(channel_id: u64) -> String {
    format!("chatmesh:live:{{{channel_id}}}")
}

/// The pub/sub channel every dispatcher hears: gap notices (a dispatcher failed to publish for
/// a while, so others send their sessions to resume) and user disconnects (logout).
pub fn live_control() -> &'static str {
    "chatmesh:live:control"
}

/// A user's presence: a sorted set of the dispatcher-gateway pairs holding a session of theirs,
/// scored by when that claim expires (ms since the epoch) unless refreshed.
pub fn presence(user_id: u64) -> String {
    format!("chatmesh:presence:{{{user_id}}}")
}

/// The pub/sub channel on which membership epochs are announced between processes.
pub fn membership_epochs() -> &'static str {
    "chatmesh:membership:epochs"
}

/// The pub/sub channel on which users' block epochs are announced between processes.
pub fn block_epochs() -> &'static str {
    "chatmesh:blocks:epochs"
}

/// A user's call-rate cell (the theoretical arrival time of their next call, in ms).
pub fn user_calls(user_id: u64) -> String {
    format!("chatmesh:limits:calls:{{{user_id}}}")
}

/// A keyed allowance's cell (`name`: what it limits, such as `login-source`; `key`: whose,
/// such as a client address or a hashed account key).
pub fn allowance(name: &str, key: &str) -> String {
    format!("chatmesh:limits:{name}:{{{key}}}")
}

/// The lease on a node id (value: the holder's random token).
pub fn node_lease(node_id: u16) -> String {
    format!("chatmesh:node:{node_id}")
}

/// The pub/sub channel on which ended login sessions are announced between processes.
pub fn ended_sessions() -> &'static str {
    "chatmesh:auth:ended-sessions"
}

/// When a user was last seen online anywhere (ms since the epoch).
pub fn last_seen(user_id: u64) -> String {
    format!("chatmesh:last-seen:{{{user_id}}}")
}

/// The stream of chat changes the chat part relays from its durable feed, read by the search
/// indexers' consumer group.
pub fn change_stream() -> &'static str {
    "chatmesh:changes"
}

/// Changes the search index refused for good, with the reason (for an operator to look at).
pub fn change_dead_letters() -> &'static str {
    "chatmesh:changes:dead"
}

/// The consumer group of the search indexers on [`change_stream`].
pub fn indexer_group() -> &'static str {
    "indexer"
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_prefixed_and_hash_tagged() {
        assert_eq!(super::live_channel(42), "chatmesh:live:{42}");
        assert_eq!(super::presence(7), "chatmesh:presence:{7}");
    }
}
