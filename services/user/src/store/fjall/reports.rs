//! Reports and the user-search directory on fjall (keyspaces in the parent module's doc).

use super::*;

#[async_trait]
impl Reports for FjallUserStore {
    #[tracing::instrument(name = "user_store.upsert_report", skip_all, fields(db.system = "fjall"))]
    async fn upsert_report(&self, report: &ReportRecord) -> Result<ReportRecord, StoreError> {
        let report = report.clone();
        self.write(move |s, tx| {
            let merge_key = open_report_key(&report);
            if report.resolution.is_none()
                && let Some(open_id) = tx.get(&s.open_reports, &merge_key).map_err(backend)?
                && let Some(bytes) = tx.get(&s.reports, &open_id).map_err(backend)?
            {
                let mut open: ReportRecord = decode(&bytes)?;
                open.category = report.category;
                open.text = report.text;
                open.updated_at_ms = open.updated_at_ms.max(report.updated_at_ms);
                s.put_report(tx, &open)?;
                return Ok(open);
            }
            s.put_report(tx, &report)?;
            let status = if report.resolution.is_some() { RESOLVED } else { OPEN };
            s.index_report(tx, &report, status, true);
            if status == OPEN {
                tx.insert(&s.open_reports, merge_key, report.report_id.to_be_bytes());
            }
            Ok(report)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.get_report", skip_all, fields(db.system = "fjall"))]
    async fn get_report(&self, report_id: u64) -> Result<Option<ReportRecord>, StoreError> {
        self.blocking(move |s| s.get_json(&s.reports, &report_id.to_be_bytes())).await
    }

    #[tracing::instrument(name = "user_store.list_reports", skip_all, fields(db.system = "fjall"))]
    async fn list_reports(
        &self,
        resolved: bool,
        target_user_id: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReportRecord>, StoreError> {
        self.blocking(move |s| {
            let snapshot = s.db.read_tx();
            let status = if resolved { RESOLVED } else { OPEN };
            let (ks, prefix) = match target_user_id {
                Some(target) => (&s.reports_by_target, vec![status, target]),
                None => (&s.reports_by_status, vec![status]),
            };
            let mut reports = Vec::new();
            for k in newest_first(&snapshot, ks, &prefix, before, limit)? {
                let report_id = part(&k, prefix.len())?;
                let bytes = snapshot.get(&s.reports, report_id.to_be_bytes()).map_err(backend)?;
                reports.push(decode(&bytes.ok_or_else(|| backend("indexed report missing"))?)?);
            }
            Ok(reports)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.resolve_report", skip_all, fields(db.system = "fjall"))]
    async fn resolve_report(&self, report: &ReportRecord) -> Result<bool, StoreError> {
        let Some(resolution) = report.resolution.clone() else {
            return Err(backend("a report resolves with a resolution"));
        };
        let report_id = report.report_id;
        self.write(move |s, tx| {
            let Some(bytes) = tx.get(&s.reports, report_id.to_be_bytes()).map_err(backend)? else {
                return Ok(false);
            };
            let mut stored: ReportRecord = decode(&bytes)?;
            if stored.resolution.is_some() {
                return Ok(false);
            }
            stored.resolution = Some(resolution);
            s.put_report(tx, &stored)?;
            s.index_report(tx, &stored, OPEN, false);
            s.index_report(tx, &stored, RESOLVED, true);
            let merge_key = open_report_key(&stored);
            if tx
                .get(&s.open_reports, &merge_key)
                .map_err(backend)?
                .is_some_and(|id| id.as_ref() == report_id.to_be_bytes())
            {
                tx.remove(&s.open_reports, merge_key);
            }
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl Directory for FjallUserStore {
    async fn directory_complete(&self) -> Result<bool, StoreError> {
        self.blocking(|s| Ok(s.meta.get(DIRECTORY_COMPLETE).map_err(backend)?.is_some())).await
    }

    async fn mark_directory_complete(&self) -> Result<(), StoreError> {
        self.blocking(|s| {
            let mut tx = s.db.write_tx().durability(Some(PersistMode::SyncAll));
            tx.insert(&s.meta, DIRECTORY_COMPLETE, "1");
            tx.commit().map_err(backend)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.index_terms", skip_all, fields(db.system = "fjall", %user_id))]
    async fn index_terms(&self, user_id: u64, terms: &[String]) -> Result<(), StoreError> {
        let mut terms = terms.to_vec();
        terms.sort();
        terms.dedup();
        self.write(move |s, tx| {
            let old: Vec<String> = match tx.get(&s.user_terms, user_id.to_be_bytes()).map_err(backend)? {
                Some(bytes) => decode(&bytes)?,
                None => Vec::new(),
            };
            for term in old.iter().filter(|t| !terms.contains(t)) {
                tx.remove(&s.terms, term_key(term, user_id));
            }
            for term in terms.iter().filter(|t| !old.contains(t)) {
                tx.insert(&s.terms, term_key(term, user_id), b"");
            }
            if terms.is_empty() {
                tx.remove(&s.user_terms, user_id.to_be_bytes());
            } else {
                tx.insert(&s.user_terms, user_id.to_be_bytes(), encode(&terms)?);
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "user_store.search_terms", skip_all, fields(db.system = "fjall"))]
    async fn search_terms(
        &self,
        prefix: &str,
        after: Option<(String, u64)>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = prefix.as_bytes().to_vec();
        self.blocking(move |s| {
            let start = match after.map(|(term, id)| term_key(&term, id)) {
                Some(after) if after >= prefix => Bound::Excluded(after),
                _ => Bound::Included(prefix.clone()),
            };
            let iter = s.db.read_tx().range(&s.terms, (start, Bound::Unbounded));
            let mut found = Vec::new();
            for guard in iter.take(limit) {
                let k = guard.key().map_err(backend)?;
                if !k.starts_with(&prefix) {
                    break;
                }
                found.push(split_term_key(&k)?);
            }
            Ok(found)
        })
        .await
    }
}
