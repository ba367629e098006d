//! The day index of the day-partitioned lists (`user_days ((list_name), day)`): a list's
//! listing walks only the days holding its entries, a page of days at a time.
//!
//! A day of a list whose entries land on the day they are written (deleted accounts, open
//! reports) is dropped from the index once a reader finds it empty more than
//! [`CLOSED_AFTER_DAYS`] after it ended: no entry can land there any more (clocks of writers are
//! within that of each other), so the drop never hides one, and the sweeper and the admin's
//! list stop probing days whose entries all left. Days of the other lists stay (accounts by the
//! day of their id rarely empty; resolved reports land in the day of their id, which may be
//! long past).

use chatmesh_cql::values;

use super::{ScyllaUserStore, backend, day_of, statements::*};
use crate::store::StoreError;

/// `users_by_day`.
pub(super) const USERS_LIST: &str = "users";
/// `deleted_users`.
pub(super) const DELETED_LIST: &str = "deleted_users";
/// `reports_by_day`, open reports.
pub(super) const OPEN_REPORTS_LIST: &str = "reports_open";
/// `reports_by_day`, resolved reports.
pub(super) const RESOLVED_REPORTS_LIST: &str = "reports_resolved";
/// Days after its end before an empty day is dropped from the index.
pub(super) const CLOSED_AFTER_DAYS: u64 = 2;

impl ScyllaUserStore {
    /// A page of the days of `list` at or before `to_day`, newest first.
    pub(super) async fn days_down(&self, list: &str, to_day: u64) -> Result<Vec<u64>, StoreError> {
        let rows: Vec<(i64,)> = self.cql.rows(&DAYS_DOWN, values![list, to_day, self.page]).await.map_err(backend)?;
        Ok(rows.into_iter().map(|(day,)| chatmesh_cql::id(day)).collect())
    }

    /// A page of the days of `list` from `from_day` to `to_day`, oldest first.
    pub(super) async fn days_up(&self, list: &str, from_day: u64, to_day: u64) -> Result<Vec<u64>, StoreError> {
        let rows: Vec<(i64,)> =
            self.cql.rows(&DAYS_UP, values![list, from_day, to_day, self.page]).await.map_err(backend)?;
        Ok(rows.into_iter().map(|(day,)| chatmesh_cql::id(day)).collect())
    }

    /// Drops `day`, found empty, from the index of `list` if it ended long enough ago that
    /// nothing can land there any more.
    pub(super) async fn forget_day_if_closed(&self, list: &str, day: u64) -> Result<(), StoreError> {
        if day.saturating_add(1 + CLOSED_AFTER_DAYS) <= day_of((self.clock)()) {
            self.cql.execute(&FORGET_DAY, values![list, day]).await.map_err(backend)?;
        }
        Ok(())
    }
}
