//! The `chatmesh` binary's wiring: which parts run in this process, on which listeners.
//! Binaries only wire; every rule lives in a service or the platform crate.
//!
//! [`start`] opens a [`node::Node`] (what the parts of a process share) and starts each part
//! with its own method: the gRPC services (`parts`), the standalone indexer (`search`), and the
//! REST and WebSocket gateways.

pub mod admin;
mod background;
mod grpc;
mod listen;
mod node;
mod parts;
mod peers;
mod running;
mod search;
pub mod stores;

use std::{collections::BTreeSet, str::FromStr};

use chatmesh_platform::config::Config;

pub(crate) use self::search::search_index;
pub use self::{
    running::{Listening, Running},
    search::search_dir,
};

/// A part of the mesh that a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    User,
    Channel,
    Chat,
    Dispatcher,
    Feed,
    Indexer,
    Rest,
    Ws,
}

impl Part {
    pub const ALL: [Part; 8] =
        [Part::User, Part::Channel, Part::Chat, Part::Dispatcher, Part::Feed, Part::Indexer, Part::Rest, Part::Ws];

    /// The part's name on the command line, in `[peers]` and in its service principal.
    pub fn name(self) -> &'static str {
        match self {
            Part::User => "user",
            Part::Channel => "channel",
            Part::Chat => "chat",
            Part::Dispatcher => "dispatcher",
            Part::Feed => "feed",
            Part::Indexer => "indexer",
            Part::Rest => "rest",
            Part::Ws => "ws",
        }
    }

    fn is_grpc(self) -> bool {
        matches!(self, Part::User | Part::Channel | Part::Chat | Part::Dispatcher | Part::Feed)
    }

    /// Whether the part keeps a store (and so opens one and mints ids).
    fn has_store(self) -> bool {
        matches!(self, Part::User | Part::Channel | Part::Chat | Part::Feed)
    }
}

impl FromStr for Part {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Part::ALL
            .into_iter()
            .find(|part| part.name() == s)
            .ok_or_else(|| format!("unknown part {s:?}: one of {}", Part::ALL.map(Part::name).join(", ")))
    }
}

/// Starts `parts` in this process on the listeners of `config` (port 0 picks a free port).
pub async fn start(config: Config, parts: &BTreeSet<Part>) -> anyhow::Result<Running> {
    search::check_source(&config, parts)?;
    let mut node = node::Node::open(config, parts).await?;
    if parts.iter().any(|p| p.is_grpc()) {
        node.grpc().await?;
    }
    if node.runs(Part::Indexer) && !node.runs(Part::Chat) {
        node.indexer().await?;
    }
    if node.runs(Part::Rest) {
        node.rest().await?;
    }
    if node.runs(Part::Ws) {
        node.ws().await?;
    }
    Ok(node.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_reads_back_from_its_name() {
        for part in Part::ALL {
            assert_eq!(part.name().parse::<Part>(), Ok(part));
        }
        let err = "search".parse::<Part>().unwrap_err();
        assert!(err.contains("\"search\"") && err.contains("indexer"), "{err}");
    }
}
