//! User service: accounts, login sessions with rotating refresh tokens, profiles, the social
//! graph (follows, blocks, friends), user search, reports and moderation.

mod core;
mod error;
mod model;
mod service;
pub mod store;

pub use self::{
    core::search_terms_of,
    error::UserError,
    model::{SessionRecord, UserRecord},
    service::{Peers, UserApi, UserInternalApi},
};
