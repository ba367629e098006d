//! Reports: `reports ((report_id))` holds each as JSON with `resolved` and a `revision`,
//! written only by lightweight transactions (created `IF NOT EXISTS`, then changed `IF revision
//! = ?` on the revision read), so a merge and a resolution never overwrite each other.
//! `open_reports ((reporter_id, target_user_id, chat_id))` is a reporter's open report of one
//! user or chat (chat 0: the user), `open_status_reports ((reporter_id, status_id))` of one
//! status; the claim is taken `IF NOT EXISTS` before the report is created, so a second report
//! merges into the first; a resolution releases it (`IF report_id = ?`) after it applied. A
//! claim whose report is resolved or missing (a resolution or a creation interrupted) is
//! released by the next report of that reporter and target, which then claims anew.
//!
//! The listings, `reports_by_day ((resolved, day), report_id DESC)` (with the days in
//! `user_days`) and `reports_by_target ((target_user_id), resolved, report_id DESC)`, are plain
//! writes after the report's transaction: readers load each listed report and keep it only if
//! it is (still) as listed, so an entry left by an interrupted resolution never shows.

use chatmesh_cql::{BatchKind, values};

use super::{
    MAX_ID, ScyllaUserStore, backend, corrupt, day_of_id,
    days::{OPEN_REPORTS_LIST, RESOLVED_REPORTS_LIST},
    limit_of,
    statements::*,
};
use crate::{
    model::ReportRecord,
    store::{Reports, StoreError},
};

/// Compare-and-set rounds on one report before giving up on one that keeps changing.
const ATTEMPTS: usize = 16;

type ReportRow = (String, bool, i64);

/// The claim key's chat: the chat reported, or 0 for a report of the user.
fn chat_key(report: &ReportRecord) -> u64 {
    report.target.chat.map_or(0, |(chat_id, _)| chat_id)
}

fn encode(report: &ReportRecord) -> Result<String, StoreError> {
    serde_json::to_string(report)
        .map_err(|e| StoreError::Backend(format!("report {}: encoding: {e}", report.report_id)))
}

impl ScyllaUserStore {
    /// Claims the open report of `report`'s reporter and target for `report_id`: `false` when
    /// another holds the claim.
    async fn claim_report(&self, report: &ReportRecord, report_id: u64) -> Result<bool, StoreError> {
        let reporter = report.reporter_id;
        match report.target.status {
            Some(status) => self.cql.lwt(&CLAIM_STATUS_REPORT, values![reporter, status, report_id]).await,
            None => {
                let values = values![reporter, report.target.user_id, chat_key(report), report_id];
                self.cql.lwt(&CLAIM_REPORT, values).await
            }
        }
        .map_err(backend)
    }

    /// The report holding the claim of `report`'s reporter and target, if one does.
    async fn report_claim(&self, report: &ReportRecord) -> Result<Option<u64>, StoreError> {
        let reporter = report.reporter_id;
        let row = match report.target.status {
            Some(status) => self.cql.row::<(i64,)>(&STATUS_REPORT_CLAIM, values![reporter, status]).await,
            None => {
                let values = values![reporter, report.target.user_id, chat_key(report)];
                self.cql.row::<(i64,)>(&REPORT_CLAIM, values).await
            }
        };
        Ok(row.map_err(backend)?.map(|(id,)| chatmesh_cql::id(id)))
    }

    /// Releases the claim of `report`'s reporter and target if `report_id` holds it.
    async fn release_report(&self, report: &ReportRecord, report_id: u64) -> Result<(), StoreError> {
        let reporter = report.reporter_id;
        match report.target.status {
            Some(status) => self.cql.lwt(&RELEASE_STATUS_REPORT, values![reporter, status, report_id]).await,
            None => {
                let values = values![reporter, report.target.user_id, chat_key(report), report_id];
                self.cql.lwt(&RELEASE_REPORT, values).await
            }
        }
        .map_err(backend)?;
        Ok(())
    }

    /// A report with its `resolved` flag and revision.
    async fn load_report(&self, report_id: u64) -> Result<Option<(ReportRecord, bool, i64)>, StoreError> {
        let Some((json, resolved, revision)) =
            self.cql.row::<ReportRow>(&GET_REPORT, values![report_id]).await.map_err(backend)?
        else {
            return Ok(None);
        };
        let record = serde_json::from_str(&json).map_err(|e| corrupt(format!("report {report_id}: {e}")))?;
        Ok(Some((record, resolved, revision)))
    }

    /// Adds the listed report `report_id` to `out` if it is (still) as listed.
    async fn keep_report(
        &self,
        report_id: u64,
        resolved: bool,
        target_user_id: Option<u64>,
        out: &mut Vec<ReportRecord>,
    ) -> Result<(), StoreError> {
        if let Some((record, is_resolved, _)) = self.load_report(report_id).await?
            && is_resolved == resolved
            && target_user_id.is_none_or(|t| record.target.user_id == t)
        {
            out.push(record);
        }
        Ok(())
    }

    /// The reports listed by `list` (restricted by `key`, then a report id below the cursor and
    /// a limit) below `before`, newest first, into `out` until it holds `limit`; whether any
    /// entry was listed.
    async fn listed_reports(
        &self,
        read: ListedBy,
        resolved: bool,
        before: u64,
        limit: usize,
        out: &mut Vec<ReportRecord>,
    ) -> Result<bool, StoreError> {
        let mut any = false;
        let mut cursor = before;
        while out.len() < limit {
            let asked = limit - out.len();
            let ids: Vec<(i64,)> = match read {
                ListedBy::Day(day) => self
                    .cql
                    .rows(&REPORTS_OF_DAY, values![resolved, day, cursor, limit_of(asked)])
                    .await
                    .map_err(backend)?,
                ListedBy::Target(target) => self
                    .cql
                    .rows(&REPORTS_OF_TARGET, values![target, resolved, cursor, limit_of(asked)])
                    .await
                    .map_err(backend)?,
            };
            any |= !ids.is_empty();
            let target = match read {
                ListedBy::Target(target) => Some(target),
                ListedBy::Day(_) => None,
            };
            for (id,) in &ids {
                self.keep_report(chatmesh_cql::id(*id), resolved, target, out).await?;
            }
            match ids.last() {
                Some((last,)) if ids.len() >= asked => cursor = chatmesh_cql::id(*last),
                _ => break,
            }
        }
        Ok(any)
    }
}

/// Which listing a read of reports walks.
#[derive(Debug, Clone, Copy)]
enum ListedBy {
    Day(u64),
    Target(u64),
}

#[async_trait::async_trait]
impl Reports for ScyllaUserStore {
    #[tracing::instrument(name = "user_store.upsert_report", skip_all, fields(db.system = "scylla"))]
    async fn upsert_report(&self, report: &ReportRecord) -> Result<ReportRecord, StoreError> {
        let (reporter, target) = (report.reporter_id, report.target.user_id);
        for _ in 0..ATTEMPTS {
            if self.claim_report(report, report.report_id).await? {
                let created = values![report.report_id, encode(report)?, false, 0i64];
                if !self.cql.lwt(&INSERT_REPORT, created).await.map_err(backend)?
                    && let Some((stored, _, _)) = self.load_report(report.report_id).await?
                {
                    // why: this report was stored by an earlier attempt of the same call
                    return Ok(stored);
                }
                let day = day_of_id(report.report_id);
                let listings = vec![
                    (&LIST_REPORT, values![false, day, report.report_id]),
                    (&PUT_DAY, values![OPEN_REPORTS_LIST, day]),
                    (&LIST_TARGET_REPORT, values![target, false, report.report_id]),
                ];
                self.cql.batch(BatchKind::Logged, listings).await.map_err(backend)?;
                return Ok(report.clone());
            }
            // released since the claim was refused: claim again
            let Some(open_id) = self.report_claim(report).await? else {
                continue;
            };
            match self.load_report(open_id).await? {
                Some((stored, false, revision)) => {
                    let merged = ReportRecord {
                        category: report.category,
                        text: report.text.clone(),
                        updated_at_ms: report.updated_at_ms,
                        ..stored
                    };
                    let values = values![encode(&merged)?, false, revision + 1, open_id, revision];
                    if self.cql.lwt(&UPDATE_REPORT, values).await.map_err(backend)? {
                        return Ok(merged);
                    }
                }
                // why: a resolution, or a creation, interrupted before the claim was released
                _ => self.release_report(report, open_id).await?,
            }
        }
        Err(StoreError::Backend(format!("upsert_report: the open report of reporter {reporter} kept changing")))
    }

    #[tracing::instrument(name = "user_store.get_report", skip_all, fields(db.system = "scylla"))]
    async fn get_report(&self, report_id: u64) -> Result<Option<ReportRecord>, StoreError> {
        Ok(self.load_report(report_id).await?.map(|(record, _, _)| record))
    }

    #[tracing::instrument(name = "user_store.list_reports", skip_all, fields(db.system = "scylla"))]
    async fn list_reports(
        &self,
        resolved: bool,
        target_user_id: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReportRecord>, StoreError> {
        let before = before.unwrap_or(MAX_ID);
        let mut out = Vec::new();
        if let Some(target) = target_user_id {
            self.listed_reports(ListedBy::Target(target), resolved, before, limit, &mut out).await?;
            return Ok(out);
        }
        let list = if resolved { RESOLVED_REPORTS_LIST } else { OPEN_REPORTS_LIST };
        let mut to_day = day_of_id(before);
        while out.len() < limit {
            let days = self.days_down(list, to_day).await?;
            for &day in &days {
                let any = self.listed_reports(ListedBy::Day(day), resolved, before, limit, &mut out).await?;
                // why: only a day the read covered whole (before the cursor's day) is known empty;
                // resolved reports land in the day of their id, long after it, so those stay
                if !any && !resolved && day < day_of_id(before) {
                    self.forget_day_if_closed(OPEN_REPORTS_LIST, day).await?;
                }
                if out.len() >= limit {
                    break;
                }
            }
            match days.last() {
                Some(&last) if days.len() >= self.page as usize && last > 0 => to_day = last - 1,
                _ => break,
            }
        }
        Ok(out)
    }

    #[tracing::instrument(name = "user_store.resolve_report", skip_all, fields(db.system = "scylla"))]
    async fn resolve_report(&self, report: &ReportRecord) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let Some((stored, resolved, revision)) = self.load_report(report.report_id).await? else {
                return Ok(false);
            };
            if resolved {
                return Ok(false);
            }
            let record =
                ReportRecord { resolution: report.resolution.clone(), updated_at_ms: report.updated_at_ms, ..stored };
            let values = values![encode(&record)?, true, revision + 1, record.report_id, revision];
            if !self.cql.lwt(&UPDATE_REPORT, values).await.map_err(backend)? {
                continue;
            }
            let (id, day, target) = (record.report_id, day_of_id(record.report_id), record.target.user_id);
            let listings = vec![
                (&UNLIST_REPORT, values![false, day, id]),
                (&LIST_REPORT, values![true, day, id]),
                (&PUT_DAY, values![RESOLVED_REPORTS_LIST, day]),
                (&UNLIST_TARGET_REPORT, values![target, false, id]),
                (&LIST_TARGET_REPORT, values![target, true, id]),
            ];
            self.cql.batch(BatchKind::Logged, listings).await.map_err(backend)?;
            // why after: a claim released before the resolution applied could let a new report
            // open beside one about to be resolved
            self.release_report(&record, id).await?;
            return Ok(true);
        }
        Err(StoreError::Backend(format!("resolve_report: report {} kept changing", report.report_id)))
    }
}
