//! Feed service: statuses (posts, replies, reposts), likes, hashtags and trends, scheduled
//! statuses and home timelines, fanned out on write and merged on read for celebrities.

mod convert;
mod core;
mod error;
mod graph;
mod model;
mod service;
pub mod store;

pub use self::{
    core::merge_newest_first,
    error::FeedError,
    model::{
        Counts, Edge, FanoutJob, ScheduledRecord, StatusKind, StatusRecord, Stored, TimelineEntry, TrendsSnapshot,
    },
    service::{FeedApi, FeedInternalApi},
};
