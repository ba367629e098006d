//! User service: accounts, login sessions with rotating refresh tokens, and profiles.

mod core;
mod error;
mod model;
mod service;
pub mod store;

pub use self::{
    core::{LoggedIn, Tokens, UserCore},
    error::UserError,
    model::{SessionRecord, UserRecord},
    service::{UserApi, UserInternalApi},
};
