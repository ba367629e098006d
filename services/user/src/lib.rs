//! User service: accounts, login sessions with rotating refresh tokens, and profiles.

mod core;
mod error;
mod model;
mod service;
pub mod store;

pub use self::{
    error::UserError,
    model::{SessionRecord, UserRecord},
    service::{UserApi, UserInternalApi},
};
