//! The account lifecycle: changing email and password, deleting an account with a grace period
//! in which signing in (with `restore`) brings it back, and the sweeper that erases it after.

use std::{net::IpAddr, time::Duration};

use chatmesh_platform::ids::now_ms;
use chatmesh_wire::user as wire;

use super::{Credentials, LoggedIn, Profile, UserCore, at_least_a_second, credentials};
use crate::{
    error::UserError,
    model::{AccountState, UserRecord},
};

/// Accounts the sweeper erases per store read.
const SWEEP_BATCH: usize = 100;

impl UserCore {
    /// When a deletion at `deleted_at_ms` becomes final.
    pub fn purge_at_ms(&self, deleted_at_ms: u64) -> u64 {
        deleted_at_ms.saturating_add(self.accounts.deletion_grace_secs * 1000)
    }

    /// Lets a login with a right password in, or says why the account cannot be used; a
    /// deleted account within its grace period is restored when the login asks to.
    pub(crate) async fn admit(&self, user: UserRecord, restore: bool) -> Result<UserRecord, UserError> {
        let now = now_ms();
        match user.state(now) {
            AccountState::Active => Ok(user),
            AccountState::Suspended => {
                let suspension = user.suspension.clone().unwrap_or_else(|| unreachable_suspension(&user));
                Err(UserError::AccountSuspended { until_ms: suspension.until_ms, reason: suspension.reason })
            }
            AccountState::Deleted => {
                let purge_at_ms = self.purge_at_ms(user.deleted_at_ms.unwrap_or(now));
                if !restore || purge_at_ms <= now {
                    return Err(UserError::AccountDeleted { purge_at_ms });
                }
                self.restore(user).await
            }
        }
    }

    /// Brings a deleted account back: its record, follows and friendships, its search entries.
    async fn restore(&self, mut user: UserRecord) -> Result<UserRecord, UserError> {
        user.deleted_at_ms = None;
        user.updated_at_ms = now_ms();
        self.store.update_user(&user).await?;
        self.store.restore_edges(user.user_id).await?;
        self.store.restore_friends(user.user_id).await?;
        self.reindex(&user).await?;
        tracing::info!(user_id = user.user_id, "account restored");
        Ok(user)
    }

    /// Checks the caller's current password (throttled per account like logins).
    async fn check_current_password(&self, user_id: u64, password: String) -> Result<UserRecord, UserError> {
        let user = self.load_user(user_id).await?;
        let key = user_id.to_string();
        let attempt =
            self.password_checks.take(&key).await.map_err(|wait| UserError::LoginThrottled(at_least_a_second(wait)))?;
        let verified = self.hasher.verify(password, Some(user.password_hash.clone())).await?;
        match credentials(Some(user), verified) {
            Ok(Credentials::Valid(user) | Credentials::Rehashed(user)) => {
                self.password_checks.give_back(attempt).await;
                Ok(user)
            }
            Err(_) => Err(UserError::WrongPassword),
        }
    }

    /// Changes the caller's email; the old one is free at once.
    pub async fn change_email(&self, user_id: u64, cmd: wire::ChangeEmail) -> Result<Profile, UserError> {
        let mut user = self.check_current_password(user_id, cmd.current_password).await?;
        user.email = cmd.new_email;
        user.updated_at_ms = now_ms();
        self.store.update_user(&user).await?;
        tracing::info!(user_id, "email changed");
        self.profile(user, Some(user_id), true).await
    }

    /// Changes the caller's password: every login session ends (their sockets close) and a new
    /// one is opened for the caller. Returns how many ended and the new session's tokens.
    pub async fn change_password(
        &self,
        user_id: u64,
        cmd: wire::ChangePassword,
        source: Option<IpAddr>,
    ) -> Result<(usize, LoggedIn), UserError> {
        let mut user = self.check_current_password(user_id, cmd.current_password).await?;
        user.password_hash = self.hasher.hash(cmd.new_password).await?;
        user.updated_at_ms = now_ms();
        self.store.update_user(&user).await?;
        let ended = self.logout_all(user_id).await?;
        tracing::info!(user_id, ?source, "password changed");
        let logged_in = self.open_session(user).await?;
        Ok((ended, logged_in))
    }

    /// Deletes the caller's account (password checked); returns when it will be erased.
    pub async fn delete_me(&self, user_id: u64, cmd: wire::DeleteMe) -> Result<u64, UserError> {
        let user = self.check_current_password(user_id, cmd.current_password).await?;
        self.delete(user).await
    }

    /// Marks an account deleted: at once it shows as deleted, leaves search, lists and
    /// counters, and its tokens stop working. Returns when it will be erased.
    pub(crate) async fn delete(&self, mut user: UserRecord) -> Result<u64, UserError> {
        let now = now_ms();
        let deleted_at = *user.deleted_at_ms.get_or_insert(now);
        user.updated_at_ms = now;
        self.store.update_user(&user).await?;
        self.reindex(&user).await?;
        self.store.park_edges(user.user_id).await?;
        self.store.park_friends(user.user_id).await?;
        self.logout_all(user.user_id).await?;
        tracing::info!(user_id = user.user_id, "account deleted");
        Ok(self.purge_at_ms(deleted_at))
    }

    /// Erases every account whose grace period has passed; returns how many.
    pub async fn sweep_deleted(&self) -> Result<usize, UserError> {
        let cutoff = now_ms().saturating_sub(self.accounts.deletion_grace_secs * 1000);
        let mut erased = 0;
        loop {
            let due = self.store.users_deleted_before(cutoff, SWEEP_BATCH).await?;
            let full = due.len() == SWEEP_BATCH;
            for user in due {
                self.erase(user.user_id).await?;
                erased += 1;
            }
            if !full {
                return Ok(erased);
            }
        }
    }

    /// Erases an account for good: the graph first, then the record (email and username free).
    async fn erase(&self, user_id: u64) -> Result<(), UserError> {
        self.store.index_terms(user_id, &[]).await?;
        self.store.erase_edges(user_id).await?;
        self.store.erase_friends(user_id).await?;
        let epoch = self.ids.next_id();
        self.store.erase_blocks(user_id).await?;
        self.store.erase_recommendations(user_id).await?;
        self.block_epochs.raise(user_id, epoch);
        self.store.erase_user(user_id).await?;
        tracing::info!(user_id, "account erased");
        Ok(())
    }

    /// How often the sweeper runs.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.accounts.sweep_interval_secs.max(1))
    }
}

/// A suspended account always carries its suspension; this keeps the refusal total if not.
fn unreachable_suspension(user: &UserRecord) -> crate::model::Suspension {
    tracing::error!(user_id = user.user_id, "suspended account without a suspension");
    crate::model::Suspension { until_ms: None, reason: String::new(), by_user_id: 0, at_ms: 0 }
}
