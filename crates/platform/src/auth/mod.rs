//! Authentication: who is calling. Users carry access JWTs (`sub` = user id, `sid` = their
//! login session); services carry short-lived service tokens (`sub = svc:<part>`, internal
//! audience) signed with a separate key that clients never get.

mod keys;
mod revocations;
mod tokens;

pub use keys::{KeyRing, KeyRingError};
pub use revocations::Revocations;
pub use tokens::{AccessToken, AuthError, Authenticator, Claims, UserKeys};

/// The verified caller of an RPC, put into the request extensions by the platform layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An end user, on one of their login sessions.
    User { user_id: u64, session_id: String },
    /// A chatmesh part (`user`, `chat`, `rest`, ...) calling an internal RPC.
    Service { part: String },
}

impl Caller {
    /// The user id, when the caller is a user.
    pub fn user_id(&self) -> Option<u64> {
        match self {
            Caller::User { user_id, .. } => Some(*user_id),
            Caller::Service { .. } => None,
        }
    }
}

/// The token of an `authorization: Bearer <token>` header (gRPC metadata or HTTP).
pub fn bearer_token(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let token =
        value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).ok_or(AuthError::Malformed)?.trim();
    if token.is_empty() { Err(AuthError::Missing) } else { Ok(token) }
}

/// The caller of a request, or UNAUTHENTICATED (the layer always sets one on protected RPCs).
pub fn caller_of<T>(request: &tonic::Request<T>) -> Result<&Caller, tonic::Status> {
    request.extensions().get::<Caller>().ok_or_else(|| tonic::Status::unauthenticated("missing bearer token"))
}

/// The calling user's id and login session, or UNAUTHENTICATED for any other caller.
pub fn user_of<T>(request: &tonic::Request<T>) -> Result<(u64, String), tonic::Status> {
    match caller_of(request)? {
        Caller::User { user_id, session_id } => Ok((*user_id, session_id.clone())),
        Caller::Service { .. } => Err(tonic::Status::unauthenticated("this rpc needs a user token")),
    }
}
