//! User service: accounts, login sessions with rotating refresh tokens, and profiles.

mod error;
mod model;
mod service;
pub mod store;

pub use error::UserError;
pub use model::{SessionRecord, UserRecord};
pub use service::{UserApi, UserInternalApi};
