//! Reports and what admins do with them: resolve a report (dismiss, retract the chat, delete
//! the status, suspend the user), and list, read, suspend, unsuspend and delete accounts. Every
//! admin operation first checks the caller's role, read from the store (so a revoked admin
//! stops at once).

use chatmesh_api::{
    channel::v1::CheckMembershipRequest,
    chat::v1::{GetChatStatesRequest, ModerateRetractChatRequest},
    feed::v1::{GetStatusStatesRequest, ModerateDeleteStatusRequest},
};
use chatmesh_platform::ids::now_ms;
use chatmesh_wire::user as wire;

use super::{Profile, UserCore};
use crate::{
    error::UserError,
    model::{
        AccountState, ReportAction, ReportCategory, ReportRecord, ReportTarget, Resolution, Role, Suspension,
        UserRecord,
    },
};

/// Accounts read per page at most when filtering by state.
const MAX_ACCOUNT_SCAN: usize = 1000;

/// An account as admins see it.
#[derive(Debug, Clone)]
pub struct AccountView {
    pub profile: Profile,
    pub suspension: Option<Suspension>,
    pub deleted_at_ms: Option<u64>,
    pub purge_at_ms: Option<u64>,
}

fn category(kind: wire::ReportCategoryKind) -> ReportCategory {
    use wire::ReportCategoryKind as K;
    match kind {
        K::Spam => ReportCategory::Spam,
        K::Harassment => ReportCategory::Harassment,
        K::Hate => ReportCategory::Hate,
        K::Violence => ReportCategory::Violence,
        K::Sexual => ReportCategory::Sexual,
        K::Impersonation => ReportCategory::Impersonation,
        K::Other => ReportCategory::Other,
    }
}

fn action(kind: wire::ReportActionKind) -> ReportAction {
    match kind {
        wire::ReportActionKind::Dismiss => ReportAction::Dismiss,
        wire::ReportActionKind::RetractChat => ReportAction::RetractChat,
        wire::ReportActionKind::SuspendUser => ReportAction::SuspendUser,
        wire::ReportActionKind::DeleteStatus => ReportAction::DeleteStatus,
    }
}

/// Whether a state filter keeps an account.
fn state_matches(filter: Option<wire::AccountStateKind>, state: AccountState) -> bool {
    match filter {
        None => true,
        Some(wire::AccountStateKind::Active) => state == AccountState::Active,
        Some(wire::AccountStateKind::Suspended) => state == AccountState::Suspended,
        Some(wire::AccountStateKind::Deleted) => state == AccountState::Deleted,
    }
}

impl UserCore {
    /// The caller's account, if it is an admin's.
    async fn require_admin(&self, caller: u64) -> Result<UserRecord, UserError> {
        let user = self.load_user(caller).await?;
        if user.role != Role::Admin || user.state(now_ms()) != AccountState::Active {
            return Err(UserError::NotAdmin);
        }
        Ok(user)
    }

    /// Files a report (merged into the reporter's open one of the same target).
    pub async fn create_report(&self, reporter: u64, cmd: wire::CreateReport) -> Result<ReportRecord, UserError> {
        let target = match (cmd.chat, cmd.status_id) {
            (Some((chat_id, channel_id)), _) => {
                let sender = self.reported_chat_sender(reporter, chat_id, channel_id).await?;
                if cmd.user_id.is_some_and(|named| named != sender) {
                    return Err(UserError::ReportedUserIsNotTheSender);
                }
                ReportTarget { user_id: sender, chat: Some((chat_id, channel_id)), status: None }
            }
            (None, Some(status_id)) => {
                let author = self.reported_status_author(reporter, status_id).await?;
                if cmd.user_id.is_some_and(|named| named != author) {
                    return Err(UserError::ReportedUserIsNotTheAuthor);
                }
                ReportTarget { user_id: author, chat: None, status: Some(status_id) }
            }
            (None, None) => {
                let user_id = cmd.user_id.ok_or(UserError::ReportWithoutTarget)?;
                self.load_user(user_id).await?;
                ReportTarget { user_id, chat: None, status: None }
            }
        };
        if target.user_id == reporter {
            return Err(UserError::SelfRelation);
        }
        Self::take_hourly(&self.reports, reporter, "reports").await?;
        let now = now_ms();
        let report = ReportRecord {
            report_id: self.ids.next_id(),
            reporter_id: reporter,
            target,
            category: category(cmd.category),
            text: cmd.text,
            created_at_ms: now,
            updated_at_ms: now,
            resolution: None,
        };
        let stored = self.store.upsert_report(&report).await?;
        tracing::info!(report_id = stored.report_id, reporter, target = stored.target.user_id, "report filed");
        Ok(stored)
    }

    /// The sender of a chat the reporter can read; NOT_FOUND for any chat they cannot.
    async fn reported_chat_sender(&self, reporter: u64, chat_id: u64, channel_id: u64) -> Result<u64, UserError> {
        let (Some(chats), Some(channels)) = (&self.chats, &self.channels) else {
            return Err(UserError::PeerMissing("chat"));
        };
        let membership = CheckMembershipRequest { channel_id: channel_id.to_string(), user_id: reporter.to_string() };
        let member = channels.clone().check_membership(membership).await.map_err(UserError::Peer)?.into_inner();
        if !(member.channel_exists && member.is_member) {
            return Err(UserError::ChatNotFound(chat_id));
        }
        let states = GetChatStatesRequest { chat_ids: vec![chat_id.to_string()] };
        let states = chats.clone().get_chat_states(states).await.map_err(UserError::Peer)?.into_inner();
        let state = states
            .states
            .into_iter()
            .find(|s| s.chat_id == chat_id.to_string() && s.channel_id == channel_id.to_string())
            .ok_or(UserError::ChatNotFound(chat_id))?;
        state.sender_id.parse().map_err(|_| UserError::ChatNotFound(chat_id))
    }

    /// The author of a status the reporter can read (as GetStatus would show it to them);
    /// NOT_FOUND for any status they cannot.
    async fn reported_status_author(&self, reporter: u64, status_id: u64) -> Result<u64, UserError> {
        let Some(feed) = &self.feed else { return Err(UserError::PeerMissing("feed")) };
        let request =
            GetStatusStatesRequest { status_ids: vec![status_id.to_string()], reader_id: reporter.to_string() };
        let states = feed.clone().get_status_states(request).await.map_err(UserError::Peer)?.into_inner();
        let state = states
            .states
            .into_iter()
            .find(|s| s.status_id == status_id.to_string())
            .ok_or(UserError::StatusNotFound(status_id))?;
        state.author_id.parse().map_err(|_| UserError::StatusNotFound(status_id))
    }

    /// Reports for an admin, newest first.
    pub async fn list_reports(
        &self,
        caller: u64,
        cmd: wire::ListReports,
    ) -> Result<(Vec<ReportRecord>, Option<u64>), UserError> {
        self.require_admin(caller).await?;
        let size = cmd.page.page_size;
        let reports = self.store.list_reports(cmd.resolved, cmd.target_user_id, cmd.page.before, size).await?;
        let next = (reports.len() == size).then(|| reports.last().map(|r| r.report_id)).flatten();
        Ok((reports, next))
    }

    /// Closes a report with an admin's action.
    pub async fn resolve_report(&self, caller: u64, cmd: wire::ResolveReport) -> Result<ReportRecord, UserError> {
        self.require_admin(caller).await?;
        let mut report = self.store.get_report(cmd.report_id).await?.ok_or(UserError::ReportNotFound(cmd.report_id))?;
        if report.resolution.is_some() {
            return Err(UserError::ReportResolved(cmd.report_id));
        }
        let action = action(cmd.action);
        match action {
            ReportAction::Dismiss => {}
            ReportAction::RetractChat => {
                let (chat_id, _) = report.target.chat.ok_or(UserError::NotAChatReport(cmd.report_id))?;
                let Some(chats) = &self.chats else { return Err(UserError::PeerMissing("chat")) };
                let request =
                    ModerateRetractChatRequest { chat_id: chat_id.to_string(), moderator_id: caller.to_string() };
                chats.clone().moderate_retract_chat(request).await.map_err(UserError::Peer)?;
            }
            ReportAction::DeleteStatus => {
                let status_id = report.target.status.ok_or(UserError::NotAStatusReport(cmd.report_id))?;
                let Some(feed) = &self.feed else { return Err(UserError::PeerMissing("feed")) };
                let request =
                    ModerateDeleteStatusRequest { status_id: status_id.to_string(), moderator_id: caller.to_string() };
                feed.clone().moderate_delete_status(request).await.map_err(UserError::Peer)?;
            }
            ReportAction::SuspendUser => {
                let target = self.load_user(report.target.user_id).await?;
                self.suspend(caller, target, cmd.suspend_for, format!("report {}", report.report_id)).await?;
            }
        }
        report.resolution = Some(Resolution { action, by_user_id: caller, at_ms: now_ms() });
        if !self.store.resolve_report(&report).await? {
            return Err(UserError::ReportResolved(cmd.report_id));
        }
        tracing::info!(report_id = report.report_id, admin = caller, ?action, "report resolved");
        Ok(report)
    }

    /// Accounts for an admin, newest first, optionally in one state.
    pub async fn list_accounts(
        &self,
        caller: u64,
        cmd: wire::ListAccounts,
    ) -> Result<(Vec<AccountView>, Option<u64>), UserError> {
        self.require_admin(caller).await?;
        let (size, now) = (cmd.page.page_size, now_ms());
        let (mut before, mut scanned, mut views) = (cmd.page.before, 0, Vec::new());
        let mut next = None;
        while views.len() < size && scanned < MAX_ACCOUNT_SCAN {
            let users = self.store.list_users(before, size).await?;
            let full = users.len() == size;
            scanned += users.len();
            for user in users {
                before = Some(user.user_id);
                if state_matches(cmd.state, user.state(now)) {
                    views.push(self.account_view(user).await?);
                    if views.len() == size {
                        break;
                    }
                }
            }
            next = before.filter(|_| full || views.len() == size);
            if !full {
                break;
            }
        }
        Ok((views, next))
    }

    /// One account for an admin.
    pub async fn get_account(&self, caller: u64, user_id: u64) -> Result<AccountView, UserError> {
        self.require_admin(caller).await?;
        let user = self.load_user(user_id).await?;
        self.account_view(user).await
    }

    /// Suspends an account (an admin's decision): its tokens stop at once, search forgets it.
    pub async fn suspend_account(&self, caller: u64, cmd: wire::SuspendAccount) -> Result<AccountView, UserError> {
        self.require_admin(caller).await?;
        let target = self.load_user(cmd.user_id).await?;
        let user = self.suspend(caller, target, cmd.suspend_for, cmd.reason).await?;
        self.account_view(user).await
    }

    async fn suspend(
        &self,
        admin: u64,
        mut target: UserRecord,
        suspend_for: Option<std::time::Duration>,
        reason: String,
    ) -> Result<UserRecord, UserError> {
        if target.user_id == admin {
            return Err(UserError::SelfRelation);
        }
        let now = now_ms();
        let until_ms = suspend_for.map(|d| now.saturating_add(d.as_millis() as u64));
        target.suspension = Some(Suspension { until_ms, reason, by_user_id: admin, at_ms: now });
        target.updated_at_ms = now;
        self.store.update_user(&target).await?;
        self.reindex(&target).await?;
        self.logout_all(target.user_id).await?;
        tracing::info!(user_id = target.user_id, admin, ?until_ms, "account suspended");
        Ok(target)
    }

    /// Lifts a suspension.
    pub async fn unsuspend_account(&self, caller: u64, user_id: u64) -> Result<AccountView, UserError> {
        self.require_admin(caller).await?;
        let mut user = self.load_user(user_id).await?;
        if user.suspension.take().is_some() {
            user.updated_at_ms = now_ms();
            self.store.update_user(&user).await?;
            self.reindex(&user).await?;
            tracing::info!(user_id, admin = caller, "suspension lifted");
        }
        self.account_view(user).await
    }

    /// Deletes an account as its owner would (same grace period).
    pub async fn delete_account(&self, caller: u64, user_id: u64) -> Result<AccountView, UserError> {
        self.require_admin(caller).await?;
        if user_id == caller {
            return Err(UserError::SelfRelation);
        }
        let user = self.load_user(user_id).await?;
        self.delete(user).await?;
        self.account_view(self.load_user(user_id).await?).await
    }

    /// Sets an account's role (the operator's `chatmesh admin grant`).
    pub async fn set_role(&self, email_key: &str, role: Role) -> Result<Profile, UserError> {
        let mut user = self.store.get_user_by_email(email_key).await?.ok_or(UserError::EmailNotFound)?;
        user.role = role;
        user.updated_at_ms = now_ms();
        self.store.update_user(&user).await?;
        tracing::info!(user_id = user.user_id, ?role, "role set");
        let own = user.user_id;
        self.profile(user, Some(own), true).await
    }

    async fn account_view(&self, user: UserRecord) -> Result<AccountView, UserError> {
        let (suspension, deleted_at_ms) = (user.suspension.clone(), user.deleted_at_ms);
        let purge_at_ms = deleted_at_ms.map(|at| self.purge_at_ms(at));
        let own = user.user_id;
        let profile = self.profile(user, Some(own), true).await?;
        Ok(AccountView { profile, suspension, deleted_at_ms, purge_at_ms })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wire::ReportActionKind::{DeleteStatus, RetractChat};

    use super::*;
    use crate::store::{Accounts, FjallUserStore, Reports, conformance::user};

    fn filed(report_id: u64, target: ReportTarget) -> ReportRecord {
        ReportRecord {
            report_id,
            reporter_id: 2,
            target,
            category: ReportCategory::Spam,
            text: String::new(),
            created_at_ms: 1,
            updated_at_ms: 1,
            resolution: None,
        }
    }

    fn resolve(report_id: u64, action: wire::ReportActionKind) -> wire::ResolveReport {
        wire::ResolveReport { report_id, action, suspend_for: None }
    }

    #[tokio::test]
    async fn status_reports_need_the_feed_peer_and_each_action_its_own_kind_of_report() {
        let (_dir, store) = FjallUserStore::temp();
        let store = Arc::new(store);
        for (id, email) in [(1, "root@example.com"), (2, "bob@example.com"), (3, "ada@example.com")] {
            store.insert_user(&user(id, email, None)).await.unwrap();
        }
        // a process with no feed peer (Peers::default())
        let (_keys, core) = crate::core::tests::core_over(store.clone());
        core.set_role("root@example.com", Role::Admin).await.unwrap();

        let of_status = wire::CreateReport {
            user_id: None,
            chat: None,
            status_id: Some(70),
            category: wire::ReportCategoryKind::Spam,
            text: String::new(),
        };
        assert!(matches!(core.create_report(2, of_status).await, Err(UserError::PeerMissing("feed"))));

        let status = ReportTarget { user_id: 3, chat: None, status: Some(70) };
        let chat = ReportTarget { user_id: 3, chat: Some((80, 90)), status: None };
        let person = ReportTarget { user_id: 3, chat: None, status: None };
        for (id, target) in [(10, status), (11, chat), (12, person)] {
            store.upsert_report(&filed(id, target)).await.unwrap();
        }
        let outcome = core.resolve_report(1, resolve(10, DeleteStatus)).await;
        assert!(matches!(outcome, Err(UserError::PeerMissing("feed"))), "{outcome:?}");
        let outcome = core.resolve_report(1, resolve(10, RetractChat)).await;
        assert!(matches!(outcome, Err(UserError::NotAChatReport(10))), "{outcome:?}");
        for id in [11, 12] {
            let outcome = core.resolve_report(1, resolve(id, DeleteStatus)).await;
            assert!(matches!(outcome, Err(UserError::NotAStatusReport(n)) if n == id), "{outcome:?}");
        }
        for id in [10, 11, 12] {
            assert_eq!(store.get_report(id).await.unwrap().unwrap().resolution, None, "report {id} stays open");
        }
    }
}
