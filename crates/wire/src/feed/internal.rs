//! Validation of FeedInternalService requests (service principals only): which statuses a
//! reader can read, and a moderator's deletion.

use std::collections::BTreeSet;

use chatmesh_api::feed::v1 as pb;
use tonic::Status;

use crate::{error::invalid_field, validate};

/// Statuses per GetStatusStates, at most (the batch cap of every id list).
pub const MAX_STATUS_STATES: usize = 100;

/// A valid `GetStatusStatesRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetStatusStates {
    /// Distinct, in request order; 1 to [`MAX_STATUS_STATES`].
    pub status_ids: Vec<u64>,
    pub reader_id: u64,
}

/// Checks a `GetStatusStatesRequest`: 1 to [`MAX_STATUS_STATES`] status ids (repeats dropped,
/// the first keeps its place), then the reader.
pub fn get_status_states(request: &pb::GetStatusStatesRequest) -> Result<GetStatusStates, Status> {
    let field = "status_ids";
    if request.status_ids.is_empty() {
        return Err(invalid_field(field, "is required"));
    }
    if request.status_ids.len() > MAX_STATUS_STATES {
        return Err(invalid_field(field, format!("at most {MAX_STATUS_STATES} ids")));
    }
    let mut seen = BTreeSet::new();
    let mut status_ids = Vec::with_capacity(request.status_ids.len());
    for value in &request.status_ids {
        let id = validate::id(field, value)?;
        if seen.insert(id) {
            status_ids.push(id);
        }
    }
    let reader_id = validate::id("reader_id", &request.reader_id)?;
    Ok(GetStatusStates { status_ids, reader_id })
}

/// A valid `ModerateDeleteStatusRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModerateDeleteStatus {
    pub status_id: u64,
    /// The admin who decided (for the log; the status is deleted as its author would).
    pub moderator_id: u64,
}

/// Checks a `ModerateDeleteStatusRequest`: both ids are required.
pub fn moderate_delete_status(request: &pb::ModerateDeleteStatusRequest) -> Result<ModerateDeleteStatus, Status> {
    let status_id = validate::id("status_id", &request.status_id)?;
    let moderator_id = validate::id("moderator_id", &request.moderator_id)?;
    Ok(ModerateDeleteStatus { status_id, moderator_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::refuses;

    fn states(ids: &[&str], reader: &str) -> pb::GetStatusStatesRequest {
        pb::GetStatusStatesRequest {
            status_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            reader_id: reader.into(),
        }
    }

    #[test]
    fn status_states_take_1_to_100_distinct_ids_and_a_reader() {
        let valid = get_status_states(&states(&["5", "3", "5"], "9")).unwrap();
        assert_eq!(valid, GetStatusStates { status_ids: vec![5, 3], reader_id: 9 }, "repeats count once");
        let most = vec!["7"; MAX_STATUS_STATES];
        assert_eq!(get_status_states(&states(&most, "9")).unwrap().status_ids, [7]);
        refuses(get_status_states(&states(&[], "9")), "status_ids");
        refuses(get_status_states(&states(&vec!["7"; MAX_STATUS_STATES + 1], "9")), "status_ids");
        for bad in ["", "0", "07", "x", "10000000000000000000"] {
            refuses(get_status_states(&states(&["5", bad], "9")), "status_ids");
            refuses(get_status_states(&states(&["5"], bad)), "reader_id");
        }
    }

    #[test]
    fn a_moderators_deletion_names_the_status_and_the_moderator() {
        let request = |status: &str, moderator: &str| pb::ModerateDeleteStatusRequest {
            status_id: status.into(),
            moderator_id: moderator.into(),
        };
        assert_eq!(
            moderate_delete_status(&request("5", "1")).unwrap(),
            ModerateDeleteStatus { status_id: 5, moderator_id: 1 }
        );
        refuses(moderate_delete_status(&request("", "1")), "status_id");
        refuses(moderate_delete_status(&request("5", "x")), "moderator_id");
        refuses(moderate_delete_status(&request("0", "")), "status_id");
    }
}
