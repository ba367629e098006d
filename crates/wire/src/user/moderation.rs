//! Validation of reports, the account lifecycle (email, password, deletion) and the admins'
//! requests.

use super::*;

/// Why a user reports someone or something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportCategoryKind {
    /// REPORT_CATEGORY_SPAM.
    Spam,
    /// REPORT_CATEGORY_HARASSMENT.
    Harassment,
    /// REPORT_CATEGORY_HATE.
    Hate,
    /// REPORT_CATEGORY_VIOLENCE.
    Violence,
    /// REPORT_CATEGORY_SEXUAL.
    Sexual,
    /// REPORT_CATEGORY_IMPERSONATION.
    Impersonation,
    /// REPORT_CATEGORY_OTHER.
    Other,
}

/// A valid `CreateReportRequest`: of a user, of a chat or a status, or of both (the chat's
/// sender, the status's author).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateReport {
    /// The user reported; `None` for a chat or status report that leaves it to the chat's
    /// sender or the status's author.
    pub user_id: Option<u64>,
    /// The chat reported and its channel, `(chat_id, channel_id)`.
    pub chat: Option<(u64, u64)>,
    /// The status reported (never with a chat).
    pub status_id: Option<u64>,
    /// Why.
    pub category: ReportCategoryKind,
    /// What happened, as given (newlines and tabs kept); may be empty.
    pub text: String,
}

/// Checks a `CreateReportRequest`: each field's own rule (the ids given, the category, the
/// text, the status id), then the rules between them: a chat id goes with a channel id and the
/// other way round, a status id goes with neither, and a report names a user, a chat or a
/// status.
pub fn create_report(request: &pb::CreateReportRequest) -> Result<CreateReport, Status> {
    let user_id = optional_id("user_id", &request.user_id)?;
    let chat_id = optional_id("chat_id", &request.chat_id)?;
    let channel_id = optional_id("channel_id", &request.channel_id)?;
    let category = match pb::ReportCategory::try_from(request.category) {
        Ok(pb::ReportCategory::Unspecified) => return Err(invalid_field("category", "is required")),
        Ok(pb::ReportCategory::Spam) => ReportCategoryKind::Spam,
        Ok(pb::ReportCategory::Harassment) => ReportCategoryKind::Harassment,
        Ok(pb::ReportCategory::Hate) => ReportCategoryKind::Hate,
        Ok(pb::ReportCategory::Violence) => ReportCategoryKind::Violence,
        Ok(pb::ReportCategory::Sexual) => ReportCategoryKind::Sexual,
        Ok(pb::ReportCategory::Impersonation) => ReportCategoryKind::Impersonation,
        Ok(pb::ReportCategory::Other) => ReportCategoryKind::Other,
        Err(_) => return Err(invalid_field("category", "is not a known category")),
    };
    // why: a report may have lines and tabs; every other control character is refused.
    validate::text("text", &request.text.replace(['\n', '\t'], " "), 0, MAX_REPORT_TEXT)?;
    let status_id = optional_id("status_id", &request.status_id)?;
    if status_id.is_some() && (chat_id.is_some() || channel_id.is_some()) {
        return Err(invalid_field("status_id", "is not given with chat_id or channel_id"));
    }
    let chat = match (chat_id, channel_id) {
        (Some(chat_id), Some(channel_id)) => Some((chat_id, channel_id)),
        (Some(_), None) => return Err(invalid_field("channel_id", "is required with chat_id")),
        (None, Some(_)) => return Err(invalid_field("chat_id", "is required with channel_id")),
        (None, None) => None,
    };
    if user_id.is_none() && chat.is_none() && status_id.is_none() {
        return Err(invalid_field("user_id", "is required unless chat_id or status_id is given"));
    }
    Ok(CreateReport { user_id, chat, status_id, category, text: request.text.clone() })
}

/// A valid `ChangeEmailRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct ChangeEmail {
    /// As typed.
    pub current_password: String,
    /// As typed.
    pub new_email: String,
}

// why: a manual Debug so a logged or asserted request never prints the password.
impl fmt::Debug for ChangeEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeEmail")
            .field("current_password", &"<redacted>")
            .field("new_email", &self.new_email)
            .finish()
    }
}

/// Checks a `ChangeEmailRequest`: the current password is given, the new email is valid as
/// [`create_user`] takes one.
pub fn change_email(request: &pb::ChangeEmailRequest) -> Result<ChangeEmail, Status> {
    let current_password = secret("current_password", &request.current_password)?;
    email_address("new_email", &request.new_email)?;
    Ok(ChangeEmail { current_password, new_email: request.new_email.clone() })
}

/// A valid `ChangePasswordRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct ChangePassword {
    /// As typed.
    pub current_password: String,
    /// As typed (not trimmed).
    pub new_password: String,
}

// why: a manual Debug so a logged or asserted request never prints a password.
impl fmt::Debug for ChangePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangePassword")
            .field("current_password", &"<redacted>")
            .field("new_password", &"<redacted>")
            .finish()
    }
}

/// Checks a `ChangePasswordRequest`: the current password is given, the new one has
/// [`MIN_PASSWORD`] to [`MAX_PASSWORD`] characters.
pub fn change_password(request: &pb::ChangePasswordRequest) -> Result<ChangePassword, Status> {
    let current_password = secret("current_password", &request.current_password)?;
    password("new_password", &request.new_password)?;
    Ok(ChangePassword { current_password, new_password: request.new_password.clone() })
}

/// A valid `DeleteMeRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeleteMe {
    /// As typed.
    pub current_password: String,
}

// why: a manual Debug so a logged or asserted request never prints the password.
impl fmt::Debug for DeleteMe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeleteMe").field("current_password", &"<redacted>").finish()
    }
}

/// Checks a `DeleteMeRequest`: the current password is given.
pub fn delete_me(request: &pb::DeleteMeRequest) -> Result<DeleteMe, Status> {
    Ok(DeleteMe { current_password: secret("current_password", &request.current_password)? })
}

/// A valid `ListReportsRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListReports {
    /// Which page.
    pub page: Page,
    /// Resolved reports; false: open ones (the default).
    pub resolved: bool,
    /// Only the reports of this user.
    pub target_user_id: Option<u64>,
}

/// Checks a `ListReportsRequest`: the status is a known one (or unspecified), the user id if
/// given, then the page.
pub fn list_reports(request: &pb::ListReportsRequest) -> Result<ListReports, Status> {
    let resolved = match pb::ReportStatus::try_from(request.status) {
        Ok(pb::ReportStatus::Unspecified | pb::ReportStatus::Open) => false,
        Ok(pb::ReportStatus::Resolved) => true,
        Err(_) => return Err(invalid_field("status", "is not a known status")),
    };
    let target_user_id = optional_id("target_user_id", &request.target_user_id)?;
    Ok(ListReports { page: page(request.page_size, &request.page_token)?, resolved, target_user_id })
}

/// What an admin does about a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportActionKind {
    /// Nothing wrong: close it.
    Dismiss,
    /// Retract the reported chat.
    RetractChat,
    /// Suspend the reported user (or the chat's sender, or the status's author).
    SuspendUser,
    /// Delete the reported status.
    DeleteStatus,
}

/// A valid `ResolveReportRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveReport {
    /// The report.
    pub report_id: u64,
    /// What to do.
    pub action: ReportActionKind,
    /// For [`ReportActionKind::SuspendUser`]: how long, `None` for good. Always `None` for the
    /// other actions (whose `suspend_seconds` is checked, then ignored).
    pub suspend_for: Option<Duration>,
}

/// Checks a `ResolveReportRequest`: the report id, the action, then `suspend_seconds` (0 to
/// [`MAX_SUSPEND_SECONDS`], whatever the action).
pub fn resolve_report(request: &pb::ResolveReportRequest) -> Result<ResolveReport, Status> {
    let report_id = validate::id("report_id", &request.report_id)?;
    let action = match pb::ReportAction::try_from(request.action) {
        Ok(pb::ReportAction::Unspecified) => return Err(invalid_field("action", "is required")),
        Ok(pb::ReportAction::Dismiss) => ReportActionKind::Dismiss,
        Ok(pb::ReportAction::RetractChat) => ReportActionKind::RetractChat,
        Ok(pb::ReportAction::SuspendUser) => ReportActionKind::SuspendUser,
        Ok(pb::ReportAction::DeleteStatus) => ReportActionKind::DeleteStatus,
        Err(_) => return Err(invalid_field("action", "is not a known action")),
    };
    let suspend_for = suspension(request.suspend_seconds)?.filter(|_| action == ReportActionKind::SuspendUser);
    Ok(ResolveReport { report_id, action, suspend_for })
}

/// Whether an account can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStateKind {
    /// USER_STATE_ACTIVE.
    Active,
    /// USER_STATE_SUSPENDED.
    Suspended,
    /// USER_STATE_DELETED.
    Deleted,
}

/// A valid `ListAccountsRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListAccounts {
    /// Which page.
    pub page: Page,
    /// Only accounts in this state; `None`: every one.
    pub state: Option<AccountStateKind>,
}

/// Checks a `ListAccountsRequest`: the state is a known one (or unspecified), then the page.
pub fn list_accounts(request: &pb::ListAccountsRequest) -> Result<ListAccounts, Status> {
    let state = match pb::UserState::try_from(request.state) {
        Ok(pb::UserState::Unspecified) => None,
        Ok(pb::UserState::Active) => Some(AccountStateKind::Active),
        Ok(pb::UserState::Suspended) => Some(AccountStateKind::Suspended),
        Ok(pb::UserState::Deleted) => Some(AccountStateKind::Deleted),
        Err(_) => return Err(invalid_field("state", "is not a known state")),
    };
    Ok(ListAccounts { page: page(request.page_size, &request.page_token)?, state })
}

/// A valid `SuspendAccountRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspendAccount {
    /// Whose account.
    pub user_id: u64,
    /// How long; `None`: for good.
    pub suspend_for: Option<Duration>,
    /// Shown to the user when login is refused, as given; may be empty.
    pub reason: String,
}

/// Checks a `SuspendAccountRequest`: the user id, `suspend_seconds` (0 to
/// [`MAX_SUSPEND_SECONDS`]), then the reason (at most [`MAX_REASON`] characters, one line).
pub fn suspend_account(request: &pb::SuspendAccountRequest) -> Result<SuspendAccount, Status> {
    let user_id = validate::id("user_id", &request.user_id)?;
    let suspend_for = suspension(request.suspend_seconds)?;
    validate::text("reason", &request.reason, 0, MAX_REASON)?;
    Ok(SuspendAccount { user_id, suspend_for, reason: request.reason.clone() })
}

/// `suspend_seconds`: 0 (for good, `None`) to [`MAX_SUSPEND_SECONDS`].
fn suspension(seconds: i64) -> Result<Option<Duration>, Status> {
    match seconds {
        0 => Ok(None),
        1..=MAX_SUSPEND_SECONDS => Ok(Some(Duration::from_secs(seconds.unsigned_abs()))),
        _ => Err(invalid_field(
            "suspend_seconds",
            format!("must be 0 (for good) to {MAX_SUSPEND_SECONDS} seconds (10 years)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::refuses;

    fn user_report() -> pb::CreateReportRequest {
        pb::CreateReportRequest {
            user_id: "2".into(),
            category: pb::ReportCategory::Spam.into(),
            text: "Sends the same link\nto everyone.\t(twice a minute)".into(),
            ..Default::default()
        }
    }

    #[test]
    fn reports_name_a_user_a_chat_or_both() {
        let valid = create_report(&user_report()).unwrap();
        assert_eq!(
            valid,
            CreateReport {
                user_id: Some(2),
                chat: None,
                status_id: None,
                category: ReportCategoryKind::Spam,
                text: "Sends the same link\nto everyone.\t(twice a minute)".into(),
            }
        );
        let chat = pb::CreateReportRequest {
            user_id: String::new(),
            chat_id: "5".into(),
            channel_id: "3".into(),
            category: pb::ReportCategory::Harassment.into(),
            text: String::new(),
            status_id: String::new(),
        };
        let valid = create_report(&chat).unwrap();
        assert_eq!((valid.user_id, valid.chat, valid.category), (None, Some((5, 3)), ReportCategoryKind::Harassment));
        let both = create_report(&pb::CreateReportRequest { user_id: "2".into(), ..chat.clone() }).unwrap();
        assert_eq!((both.user_id, both.chat), (Some(2), Some((5, 3))));

        let neither = pb::CreateReportRequest { user_id: String::new(), ..user_report() };
        refuses(create_report(&neither), "user_id");
        refuses(create_report(&pb::CreateReportRequest { channel_id: String::new(), ..chat.clone() }), "channel_id");
        refuses(create_report(&pb::CreateReportRequest { chat_id: String::new(), ..chat.clone() }), "chat_id");

        let status = pb::CreateReportRequest { user_id: String::new(), status_id: "8".into(), ..user_report() };
        let valid = create_report(&status).unwrap();
        assert_eq!((valid.user_id, valid.chat, valid.status_id), (None, None, Some(8)));
        let with_author = create_report(&pb::CreateReportRequest { user_id: "2".into(), ..status.clone() }).unwrap();
        assert_eq!((with_author.user_id, with_author.status_id), (Some(2), Some(8)));
        refuses(create_report(&pb::CreateReportRequest { status_id: "8".into(), ..chat.clone() }), "status_id");
        let with_channel = pb::CreateReportRequest { channel_id: "3".into(), ..status.clone() };
        refuses(create_report(&with_channel), "status_id");
        refuses(create_report(&pb::CreateReportRequest { status_id: "08".into(), ..status }), "status_id");
    }

    #[test]
    fn reports_refuse_field_by_field() {
        refuses(create_report(&pb::CreateReportRequest { user_id: "0".into(), ..user_report() }), "user_id");
        refuses(create_report(&pb::CreateReportRequest { chat_id: "x".into(), ..user_report() }), "chat_id");
        refuses(create_report(&pb::CreateReportRequest { channel_id: "01".into(), ..user_report() }), "channel_id");
        refuses(create_report(&pb::CreateReportRequest { category: 0, ..user_report() }), "category");
        refuses(create_report(&pb::CreateReportRequest { category: 99, ..user_report() }), "category");
        refuses(create_report(&pb::CreateReportRequest { text: "a\r\nb".into(), ..user_report() }), "text");
        let long = "é".repeat(MAX_REPORT_TEXT + 1);
        refuses(create_report(&pb::CreateReportRequest { text: long, ..user_report() }), "text");
        let longest = "é".repeat(MAX_REPORT_TEXT);
        assert!(create_report(&pb::CreateReportRequest { text: longest, ..user_report() }).is_ok());
    }

    #[test]
    fn change_email_needs_the_password_and_a_valid_address() {
        let request = |current_password: &str, new_email: &str| pb::ChangeEmailRequest {
            current_password: current_password.into(),
            new_email: new_email.into(),
        };
        let valid = change_email(&request("correct horse", "Ada@Example.org")).unwrap();
        assert_eq!(valid.new_email, "Ada@Example.org");
        assert_eq!(valid.current_password, "correct horse");
        assert!(!format!("{valid:?}").contains("horse"), "the password is not printed");
        refuses(change_email(&request("", "ada@example.org")), "current_password");
        for bad in ["", "nope", " ada@example.org", &format!("{}@example.org", "a".repeat(MAX_EMAIL))] {
            refuses(change_email(&request("correct horse", bad)), "new_email");
        }
    }

    #[test]
    fn change_password_needs_the_current_one_and_a_new_one_of_8_to_128_characters() {
        let request = |current_password: &str, new_password: &str| pb::ChangePasswordRequest {
            current_password: current_password.into(),
            new_password: new_password.into(),
        };
        let valid = change_password(&request("correct horse", "battery staple")).unwrap();
        assert_eq!(valid.new_password, "battery staple");
        let shown = format!("{valid:?}");
        assert!(!shown.contains("horse") && !shown.contains("staple"), "no password is printed: {shown}");
        assert!(change_password(&request("x", &"é".repeat(MIN_PASSWORD))).is_ok());
        assert!(change_password(&request("x", &"é".repeat(MAX_PASSWORD))).is_ok());
        refuses(change_password(&request("", "battery staple")), "current_password");
        refuses(change_password(&request("x", &"é".repeat(MIN_PASSWORD - 1))), "new_password");
        refuses(change_password(&request("x", &"é".repeat(MAX_PASSWORD + 1))), "new_password");
    }

    #[test]
    fn delete_me_needs_the_password() {
        let valid = delete_me(&pb::DeleteMeRequest { current_password: "correct horse".into() }).unwrap();
        assert_eq!(valid.current_password, "correct horse");
        assert!(!format!("{valid:?}").contains("horse"), "the password is not printed");
        refuses(delete_me(&pb::DeleteMeRequest::default()), "current_password");
    }

    #[test]
    fn report_lists_default_to_open_reports_of_anyone() {
        let open = list_reports(&pb::ListReportsRequest::default()).unwrap();
        assert_eq!(
            open,
            ListReports { page: Page { page_size: DEFAULT_PAGE, before: None }, resolved: false, target_user_id: None }
        );
        let request = pb::ListReportsRequest {
            page_size: 10,
            page_token: crate::page::encode_token(9),
            status: pb::ReportStatus::Resolved.into(),
            target_user_id: "4".into(),
        };
        let resolved = list_reports(&request).unwrap();
        assert_eq!(
            resolved,
            ListReports { page: Page { page_size: 10, before: Some(9) }, resolved: true, target_user_id: Some(4) }
        );
        let explicit_open = pb::ListReportsRequest { status: pb::ReportStatus::Open.into(), ..request.clone() };
        assert!(!list_reports(&explicit_open).unwrap().resolved);
        refuses(list_reports(&pb::ListReportsRequest { status: 3, ..request.clone() }), "status");
        refuses(
            list_reports(&pb::ListReportsRequest { target_user_id: "0".into(), ..request.clone() }),
            "target_user_id",
        );
        refuses(list_reports(&pb::ListReportsRequest { page_token: "9".into(), ..request }), "page_token");
    }

    fn suspend_report(suspend_seconds: i64) -> pb::ResolveReportRequest {
        pb::ResolveReportRequest {
            report_id: "7".into(),
            action: pb::ReportAction::SuspendUser.into(),
            suspend_seconds,
        }
    }

    #[test]
    fn resolving_a_report_suspends_for_a_time_or_for_good() {
        let day = resolve_report(&suspend_report(86_400)).unwrap();
        assert_eq!(
            day,
            ResolveReport {
                report_id: 7,
                action: ReportActionKind::SuspendUser,
                suspend_for: Some(Duration::from_secs(86_400))
            }
        );
        assert_eq!(resolve_report(&suspend_report(0)).unwrap().suspend_for, None, "for good");
        let longest = resolve_report(&suspend_report(MAX_SUSPEND_SECONDS)).unwrap();
        assert_eq!(longest.suspend_for, Some(Duration::from_secs(315_360_000)));
        let dismiss = pb::ResolveReportRequest { action: pb::ReportAction::Dismiss.into(), ..suspend_report(60) };
        let dismissed = resolve_report(&dismiss).unwrap();
        assert_eq!((dismissed.action, dismissed.suspend_for), (ReportActionKind::Dismiss, None));
        let retract = pb::ResolveReportRequest { action: pb::ReportAction::RetractChat.into(), ..suspend_report(0) };
        assert_eq!(resolve_report(&retract).unwrap().action, ReportActionKind::RetractChat);
        let delete = pb::ResolveReportRequest { action: pb::ReportAction::DeleteStatus.into(), ..suspend_report(60) };
        let deleted = resolve_report(&delete).unwrap();
        assert_eq!((deleted.action, deleted.suspend_for), (ReportActionKind::DeleteStatus, None));
    }

    #[test]
    fn resolving_a_report_refuses_field_by_field() {
        refuses(
            resolve_report(&pb::ResolveReportRequest { report_id: String::new(), ..suspend_report(0) }),
            "report_id",
        );
        refuses(resolve_report(&pb::ResolveReportRequest { action: 0, ..suspend_report(0) }), "action");
        refuses(resolve_report(&pb::ResolveReportRequest { action: 5, ..suspend_report(0) }), "action");
        for seconds in [-1, MAX_SUSPEND_SECONDS + 1, i64::MIN, i64::MAX] {
            refuses(resolve_report(&suspend_report(seconds)), "suspend_seconds");
        }
        let dismiss = pb::ResolveReportRequest { action: pb::ReportAction::Dismiss.into(), ..suspend_report(-1) };
        refuses(resolve_report(&dismiss), "suspend_seconds");
    }

    #[test]
    fn account_lists_filter_by_a_known_state() {
        let request = |state: i32| pb::ListAccountsRequest { state, ..Default::default() };
        let all = list_accounts(&request(0)).unwrap();
        assert_eq!(all, ListAccounts { page: Page { page_size: DEFAULT_PAGE, before: None }, state: None });
        for (state, kind) in [
            (pb::UserState::Active, AccountStateKind::Active),
            (pb::UserState::Suspended, AccountStateKind::Suspended),
            (pb::UserState::Deleted, AccountStateKind::Deleted),
        ] {
            assert_eq!(list_accounts(&request(state.into())).unwrap().state, Some(kind));
        }
        refuses(list_accounts(&request(4)), "state");
        refuses(list_accounts(&pb::ListAccountsRequest { page_token: "x".into(), ..Default::default() }), "page_token");
    }

    #[test]
    fn suspending_an_account_checks_the_user_the_time_and_the_reason() {
        let request = |user_id: &str, suspend_seconds, reason: &str| pb::SuspendAccountRequest {
            user_id: user_id.into(),
            suspend_seconds,
            reason: reason.into(),
        };
        let week = suspend_account(&request("2", 604_800, "Spam, repeatedly.")).unwrap();
        assert_eq!(
            week,
            SuspendAccount {
                user_id: 2,
                suspend_for: Some(Duration::from_secs(604_800)),
                reason: "Spam, repeatedly.".into()
            }
        );
        let for_good = suspend_account(&request("2", 0, "")).unwrap();
        assert_eq!((for_good.suspend_for, for_good.reason.as_str()), (None, ""));
        assert!(suspend_account(&request("2", 0, &"é".repeat(MAX_REASON))).is_ok());
        refuses(suspend_account(&request("", 0, "")), "user_id");
        refuses(suspend_account(&request("2", -5, "")), "suspend_seconds");
        refuses(suspend_account(&request("2", MAX_SUSPEND_SECONDS + 1, "")), "suspend_seconds");
        refuses(suspend_account(&request("2", 0, "two\nlines")), "reason");
        refuses(suspend_account(&request("2", 0, &"é".repeat(MAX_REASON + 1))), "reason");
    }
}
