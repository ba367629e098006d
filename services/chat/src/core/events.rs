//! Each channel's event log: reading it, and recording the channel service's events in it.

use chatmesh_api::chat::v1::ChannelEvent;
use chatmesh_platform::ids::unix_ms_of;
use chatmesh_wire::chat as wire;

use super::ChatCore;
use crate::{announce, error::ChatError, model::timestamp, store::ExternalEvent};

/// A page of a channel's events, and whether more follow.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<ChannelEvent>,
    pub has_more: bool,
}

impl ChatCore {
    /// A member's page of a channel's events after a given one, oldest first.
    pub async fn list_events(&self, caller: u64, cmd: wire::ListEvents) -> Result<EventPage, ChatError> {
        let wire::ListEvents { channel_id, after_event_id, page_size: size } = cmd;
        self.directory.member(channel_id, caller).await?;
        let mut events = self.store.list_events(channel_id, after_event_id.unwrap_or(0), size + 1).await?;
        let has_more = events.len() > size;
        events.truncate(size);
        // why: idempotency keys are between services; clients dedupe by event id.
        events.iter_mut().for_each(|e| e.idempotency_key.clear());
        Ok(EventPage { events, has_more })
    }

    /// Records events of the channel service in their channels' logs (once per idempotency
    /// key), with the SYSTEM chats announcing them; returns them as recorded.
    pub async fn append_channel_events(&self, events: Vec<ChannelEvent>) -> Result<Vec<ChannelEvent>, ChatError> {
        let external: Vec<ExternalEvent> = events
            .into_iter()
            .map(|event| ExternalEvent { announcement: announce::announcement(&event), event })
            .collect();
        let recorded = external.iter().map(|e| e.event.clone()).collect::<Vec<_>>();
        let event_ids = self.store.append_events(external).await?;
        self.tick();
        Ok(recorded
            .into_iter()
            .zip(event_ids)
            .map(|(mut event, id)| {
                event.event_id = id.to_string();
                event.occurred_at = event.occurred_at.or(Some(timestamp(unix_ms_of(id))));
                event
            })
            .collect())
    }
}
