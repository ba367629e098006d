//! Statuses as the wire shows them.

use chatmesh_api::feed::v1 as pb;
use chatmesh_platform::ids::timestamp;

use crate::{core::StatusView, model::StatusKind};

pub fn statuses_pb(views: Vec<StatusView>) -> Vec<pb::Status> {
    views.into_iter().map(status_pb).collect()
}

pub fn status_pb(view: StatusView) -> pb::Status {
    let kind = match view.kind {
        StatusKind::Post => pb::StatusKind::Post,
        StatusKind::Reply => pb::StatusKind::Reply,
        StatusKind::Repost => pb::StatusKind::Repost,
    };
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    pb::Status {
        status_id: view.status_id.to_string(),
        author_id: if view.deleted { String::new() } else { view.author_id.to_string() },
        author: view.author,
        kind: if view.deleted { pb::StatusKind::Unspecified } else { kind } as i32,
        text: view.text,
        referenced_status_id: view.referenced_id.map(|id| id.to_string()).unwrap_or_default(),
        referenced_status: view.referenced.map(|r| Box::new(status_pb(*r))),
        tags: view.tags,
        mentioned_user_ids: view.mentions.iter().map(u64::to_string).collect(),
        total_likes: count(view.counts.likes),
        total_reposts: count(view.counts.reposts),
        total_replies: count(view.counts.replies),
        relation: (!view.deleted && !view.scheduled)
            .then_some(pb::StatusRelation { liked: view.liked, reposted: view.reposted }),
        create_time: Some(timestamp(view.created_at_ms)),
        publish_time: Some(timestamp(view.publish_at_ms)),
        scheduled: view.scheduled,
        deleted: view.deleted,
    }
}
