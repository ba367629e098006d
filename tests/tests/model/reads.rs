//! The harness's reads: history, unread counts, search, resume, members, my channels, and the final check.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use chatmesh_api::{
    channel::v1 as pb_channel,
    chat::v1::{self as pb, ChatKind, EventType, channel_event::Payload},
};
use chatmesh_tests::authed;
use tonic::Status;

use crate::{
    PAGE, SETTLE, USERS, WORDS,
    harness::{Checked, Harness, agree, id_of},
    ops::Role,
};

impl Harness {
    pub(crate) async fn list_history(
        &mut self,
        c: usize,
        by: usize,
        oldest_first: bool,
    ) -> Result<Vec<pb::Chat>, Status> {
        let (mut all, mut token) = (Vec::new(), String::new());
        loop {
            let request = pb::ListChatsRequest {
                channel_id: self.model.channels[c].id.clone(),
                after: if oldest_first { "1".into() } else { String::new() },
                page_size: PAGE,
                page_token: token,
                ..Default::default()
            };
            let page = self.chats.list_chats(authed(&self.token(by), request)).await?.into_inner();
            all.extend(page.chats);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    pub(crate) async fn history(&mut self, c: usize, by: usize, oldest_first: bool) -> Checked {
        let rule = self.model.access(c, by);
        let got = self.list_history(c, by, oldest_first).await;
        self.note(format!("u{by} history ch{c}{}", if oldest_first { " oldest-first" } else { "" }), &got);
        agree("list chats", &rule, &got)?;
        if let Ok(chats) = got {
            self.check_history(c, by, oldest_first, &chats)?;
        }
        Ok(())
    }

    /// History is the model's visible chats, in order, as they are now (tombstones without text).
    pub(crate) fn check_history(&self, c: usize, by: usize, oldest_first: bool, chats: &[pb::Chat]) -> Checked {
        let ids = chats.iter().map(|chat| id_of(&chat.chat_id)).collect::<Checked<Vec<u64>>>()?;
        let ordered = ids.windows(2).all(|w| if oldest_first { w[0] < w[1] } else { w[0] > w[1] });
        ensure!(ordered, "u{by}'s history of ch{c} is out of order: {ids:?}");
        let channel_id = &self.model.channels[c].id;
        ensure!(chats.iter().all(|chat| &chat.channel_id == channel_id), "a chat of another channel in ch{c}");
        let got: Vec<(u64, usize, String, bool)> = chats
            .iter()
            .filter(|chat| chat.kind() == ChatKind::Text)
            .map(|chat| {
                (id_of(&chat.chat_id).unwrap_or(0), self.user_index(&chat.sender_id), chat.text.clone(), chat.retracted)
            })
            .collect();
        let mut expected: Vec<(u64, usize, String, bool)> = self
            .model
            .visible(c, by)
            .map(|chat| (chat.id, chat.sender, chat.shown_text().to_owned(), chat.retracted))
            .collect();
        if !oldest_first {
            expected.reverse();
        }
        ensure!(got == expected, "u{by}'s history of ch{c}:\n  service {got:?}\n  model   {expected:?}");
        Ok(())
    }

    pub(crate) async fn unread(&mut self, by: usize, only: Option<usize>) -> Checked {
        let channel_ids = only.map(|c| vec![self.model.channels[c].id.clone()]).unwrap_or_default();
        let request = pb::GetUnreadCountsRequest { channel_ids };
        let got = self.chats.get_unread_counts(authed(&self.token(by), request)).await;
        let scope = only.map_or("all".to_owned(), |c| format!("ch{c}"));
        self.note(format!("u{by} unread {scope}"), &got);
        let rule = match only {
            Some(c) => self.model.access(c, by).map(|_| vec![c]),
            None => Ok(self.model.channels_of(by)),
        };
        agree("unread counts", &rule, &got)?;
        let (Ok(response), Ok(channels)) = (got, rule) else { return Ok(()) };
        let counts = response.into_inner().counts;
        for count in &counts {
            let c = self.model.channels.iter().position(|m| m.id == count.channel_id);
            let newest = self.model.chats.iter().filter(|m| Some(m.channel) == c).map(|m| m.id).max();
            // why: last_chat_id also counts announcements, which land later, so it may be newer.
            let last = count.last_chat_id.parse::<u64>().unwrap_or(0);
            ensure!(newest.is_none_or(|n| last >= n), "u{by}'s last chat id is behind the newest chat: {count:?}");
        }
        let got: BTreeMap<String, (i64, String)> =
            counts.into_iter().map(|count| (count.channel_id, (count.unread_count, count.last_read_chat_id))).collect();
        let expected: BTreeMap<String, (i64, String)> = channels
            .iter()
            .map(|c| {
                let pointer = self.model.pointers.get(&(*c, by)).map_or(String::new(), u64::to_string);
                (self.model.channels[*c].id.clone(), (self.model.unread(*c, by), pointer))
            })
            .collect();
        ensure!(
            got == expected,
            "u{by}'s unread counts (channel → (count, pointer)):\n  service {got:?}\n  model   {expected:?}"
        );
        Ok(())
    }

    /// Every hit of a search, page by page.
    pub(crate) async fn search_hits(
        &mut self,
        by: usize,
        word: &str,
        channel_id: &str,
    ) -> Result<Vec<pb::SearchHit>, Status> {
        let (mut hits, mut token) = (Vec::new(), String::new());
        loop {
            let request = pb::SearchChatsRequest {
                query: word.into(),
                channel_id: channel_id.into(),
                page_size: 3,
                page_token: token,
                ..Default::default()
            };
            let page = self.chats.search_chats(authed(&self.token(by), request)).await?.into_inner();
            hits.extend(page.hits);
            if page.next_page_token.is_empty() {
                return Ok(hits);
            }
            token = page.next_page_token;
        }
    }

    pub(crate) async fn search(&mut self, by: usize, word: &str, only: Option<usize>) -> Checked {
        // why: search trails the store; the model compares once the index has caught up.
        self.app.search_caught_up().await;
        let status = self.app.search_status().await;
        let channel_id = only.map(|c| self.model.channels[c].id.clone()).unwrap_or_default();
        let got = self.search_hits(by, word, &channel_id).await;
        let scope = only.map_or(String::new(), |c| format!(" in ch{c}"));
        self.note(format!("u{by} search {word:?}{scope}"), &got);
        let rule = match only {
            Some(c) => self.model.access(c, by).map(|_| ()),
            None => Ok(()),
        };
        agree("search", &rule, &got)?;
        let Ok(hits) = got else { return Ok(()) };
        let ids_of = |hits: &[pb::SearchHit]| -> Checked<Vec<u64>> {
            hits.iter().map(|hit| id_of(&hit.chat.as_ref().map(|c| c.chat_id.clone()).unwrap_or_default())).collect()
        };
        let ids: Vec<u64> = ids_of(&hits)?;
        let expected = self.model.search(by, word, only);
        // Every hit is visible to the caller now (the store vets each one), newest first.
        let sound = |ids: &[u64]| -> Checked {
            let foreign: Vec<&u64> = ids.iter().filter(|id| !expected.contains(id)).collect();
            ensure!(foreign.is_empty(), "u{by} searching {word:?}{scope} found {foreign:?}, which the model hides");
            ensure!(ids.windows(2).all(|w| w[0] > w[1]), "search hits are not newest first: {ids:?}");
            Ok(())
        };
        sound(&ids)?;
        if ids != expected {
            // complete once the index caught up: a miss is a divergence; whether and when it
            // heals only tells a slow index (late) from a lost change
            let started = Instant::now();
            let mut timeline = Vec::new();
            while started.elapsed() < SETTLE {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let again = self.search_hits(by, word, &channel_id).await.map_err(|s| format!("search: {s:?}"))?;
                let again = ids_of(&again)?;
                let now = self.app.search_status().await;
                let (ms, documents) = (started.elapsed().as_millis(), now.documents);
                timeline.push(format!("+{ms} ms: {again:?} ({documents} documents, indexed {})", now.indexed_event_id));
                if again == expected {
                    break;
                }
            }
            return Err(format!(
                "u{by} searching {word:?}{scope} right after GetSearchStatus reported no lag ({status:?}):\n  \
                 service {ids:?}\n  model   {expected:?}\n  then:\n    {}",
                timeline.join("\n    ")
            ));
        }
        for hit in &hits {
            ensure!(hit.snippet.contains(&format!("<em>{word}</em>")), "the snippet marks the word: {hit:?}");
        }
        Ok(())
    }

    pub(crate) async fn list_events(
        &mut self,
        c: usize,
        by: usize,
        after: &str,
    ) -> Result<Vec<pb::ChannelEvent>, Status> {
        let (mut all, mut after) = (Vec::new(), after.to_owned());
        loop {
            let request = pb::ListEventsRequest {
                channel_id: self.model.channels[c].id.clone(),
                after_event_id: after.clone(),
                page_size: 10,
            };
            let page = self.chats.list_events(authed(&self.token(by), request)).await?.into_inner();
            if let Some(last) = page.events.last() {
                after = last.event_id.clone();
            }
            all.extend(page.events);
            if !page.has_more {
                return Ok(all);
            }
        }
    }

    /// ListEvents from the start, then from a point in it (what a WebSocket `resume` replays).
    pub(crate) async fn resume(&mut self, c: usize, by: usize, at: usize, complete: bool) -> Checked {
        let rule = self.model.access(c, by);
        let got = self.list_events(c, by, "").await;
        let point = got.as_ref().map_or(0, |events| at % (events.len() + 1));
        self.note(format!("u{by} resume ch{c} after event #{point}"), &got);
        agree("list events", &rule, &got)?;
        let Ok(full) = got else { return Ok(()) };
        self.check_log(c, &full, complete)?;
        let after = if point == 0 { String::new() } else { full[point - 1].event_id.clone() };
        let tail = self.list_events(c, by, &after).await.map_err(|s| format!("resume refused: {s:?}"))?;
        let (expected, extra) = (&full[point..], tail.get(full.len() - point..).unwrap_or_default());
        let replayed: Vec<&str> = tail.iter().take(expected.len()).map(|e| e.event_id.as_str()).collect();
        let wanted: Vec<&str> = expected.iter().map(|e| e.event_id.as_str()).collect();
        ensure!(replayed == wanted, "resume of ch{c} after {after:?}:\n  service {replayed:?}\n  log     {wanted:?}");
        // why: announcements may land between the two reads; they can only come after the log seen.
        let newest = full.last().map_or(Ok(0), |e| id_of(&e.event_id))?;
        for event in extra {
            ensure!(id_of(&event.event_id)? > newest, "the resume replayed an event older than the log: {event:?}");
        }
        Ok(())
    }

    /// The event log of a channel: ordered, of this channel, nothing private, chats as they are
    /// now, each chat's history complete and in order, and the membership changes of the model
    /// (all of them once `complete`: they are relayed asynchronously).
    pub(crate) fn check_log(&self, c: usize, events: &[pb::ChannelEvent], complete: bool) -> Checked {
        let channel = &self.model.channels[c];
        let ids = events.iter().map(|e| id_of(&e.event_id)).collect::<Checked<Vec<u64>>>()?;
        ensure!(ids.windows(2).all(|w| w[0] < w[1]), "ch{c}'s event ids are not strictly increasing: {ids:?}");
        let mut per_chat: BTreeMap<u64, Vec<EventType>> = BTreeMap::new();
        let mut members = Vec::new();
        for event in events {
            ensure!(event.channel_id == channel.id, "an event of another channel in ch{c}: {event:?}");
            match (event.r#type(), &event.payload) {
                (
                    EventType::ChatCreated | EventType::ChatEdited | EventType::ChatRetracted,
                    Some(Payload::Chat(chat)),
                ) => {
                    ensure!(chat.channel_id == channel.id, "a chat of another channel in ch{c}'s log: {event:?}");
                    if chat.kind() == ChatKind::System {
                        continue;
                    }
                    let id = id_of(&chat.chat_id)?;
                    let Some(model) = self.model.chats.iter().find(|m| m.id == id && m.channel == c) else {
                        return Err(format!("ch{c}'s log names a chat the model never sent there: {event:?}"));
                    };
                    ensure!(
                        chat.text == model.shown_text() && chat.retracted == model.retracted,
                        "the log serves chats as they are now: {event:?} vs {model:?}"
                    );
                    per_chat.entry(id).or_default().push(event.r#type());
                }
                (
                    EventType::MemberJoined | EventType::MemberLeft | EventType::MemberUpdated,
                    Some(Payload::Member(m)),
                ) => {
                    let role =
                        Role::of_pb(m.role()).ok_or_else(|| format!("a member event without a role: {event:?}"))?;
                    members.push((event.r#type(), self.user_index(&event.actor_id), self.user_index(&m.user_id), role));
                }
                _ => return Err(format!("ch{c}'s log has an event it should not: {event:?}")),
            }
        }
        for chat in self.model.chats.iter().filter(|m| m.channel == c) {
            let mut expected = vec![EventType::ChatCreated];
            expected.extend(std::iter::repeat_n(EventType::ChatEdited, chat.edits));
            if chat.retracted {
                expected.push(EventType::ChatRetracted);
            }
            let got = per_chat.remove(&chat.id).unwrap_or_default();
            ensure!(got == expected, "ch{c}'s log of chat {}: {got:?}, the model expects {expected:?}", chat.id);
        }
        let model = &channel.member_events;
        let agrees = if complete { &members == model } else { model.starts_with(&members) };
        ensure!(
            agrees,
            "ch{c}'s membership events (type, actor, subject, role):\n  service {members:?}\n  model   {model:?}"
        );
        Ok(())
    }

    pub(crate) async fn get_channel(&mut self, c: usize, by: usize) -> Result<pb_channel::GetChannelResponse, Status> {
        let request = pb_channel::GetChannelRequest { channel_id: self.model.channels[c].id.clone() };
        self.channels.get_channel(authed(&self.token(by), request)).await.map(|r| r.into_inner())
    }

    /// GetChannel and ListMembers: who the members are, their roles, and whether `by` closed it.
    pub(crate) async fn members(&mut self, c: usize, by: usize) -> Checked {
        let got = self.get_channel(c, by).await;
        self.note(format!("u{by} members ch{c}"), &got);
        // a public channel shows its preview to anyone
        let preview = self.model.join_rule(c, by).is_ok();
        let rule = if preview { Ok(Role::Member) } else { self.model.access(c, by) };
        agree("get channel", &rule, &got)?;
        let Ok(response) = got else { return Ok(()) };
        let model = &self.model.channels[c];
        let channel = response.channel.ok_or("no channel in the answer")?;
        ensure!(channel.member_count as usize == model.members.len(), "ch{c}'s member count: {channel:?}");
        ensure!(response.membership.is_some() != preview, "a membership only for members: {:?}", response.membership);
        if preview {
            // but not its members
            let request = pb_channel::ListMembersRequest { channel_id: model.id.clone(), ..Default::default() };
            let listed = self.channels.list_members(authed(&self.token(by), request)).await;
            return agree("list members", &self.model.access(c, by), &listed);
        }
        let owner = model.members.iter().find(|(_, r)| **r == Role::Owner).map(|(u, _)| self.users[*u].id.clone());
        ensure!(channel.owner_id == owner.unwrap_or_default(), "ch{c}'s owner: {channel:?}");
        let membership = response.membership.ok_or("no membership")?;
        ensure!(
            Role::of_pb(membership.role()) == model.members.get(&by).copied(),
            "u{by}'s role in ch{c}: {membership:?}"
        );
        if membership.closed != model.closed.contains_key(&by) {
            self.settle_closed(c, by).await?;
        }
        self.member_list(c, by).await.map_err(|e| format!("ch{c}'s members as u{by} lists them: {e}"))
    }

    /// ListMembers, by a member: the model's members with their roles.
    pub(crate) async fn member_list(&mut self, c: usize, by: usize) -> Checked {
        let channel_id = self.model.channels[c].id.clone();
        let request = pb_channel::ListMembersRequest { channel_id, ..Default::default() };
        let listed = self.channels.list_members(authed(&self.token(by), request)).await;
        let listed = listed.map_err(|s| format!("refused to a member: {s:?}"))?.into_inner().members;
        let got: BTreeMap<usize, Option<Role>> =
            listed.iter().map(|m| (self.user_index(&m.user_id), Role::of_pb(m.role()))).collect();
        let expected: BTreeMap<usize, Option<Role>> =
            self.model.channels[c].members.iter().map(|(u, r)| (*u, Some(*r))).collect();
        ensure!(got == expected, "\n  service {got:?}\n  model   {expected:?}");
        Ok(())
    }

    /// Waits for `by`'s closed flag in `c` to reach the model's (a new chat reopens a closed
    /// channel asynchronously); a flag that never does is a divergence.
    pub(crate) async fn settle_closed(&mut self, c: usize, by: usize) -> Checked {
        let started = Instant::now();
        loop {
            let response = self.get_channel(c, by).await.map_err(|s| format!("get channel: {s:?}"))?;
            let closed = response.membership.is_some_and(|m| m.closed);
            let expected = self.model.channels[c].closed.contains_key(&by);
            if closed == expected {
                return Ok(());
            }
            ensure!(
                started.elapsed() < SETTLE,
                "u{by}'s ch{c} is {} for the service, {} for the model",
                if closed { "closed" } else { "open" },
                if expected {
                    "closed (no chat arrived since it was closed)"
                } else {
                    "open (a chat arrived since it was closed)"
                }
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn my_channel_ids(&mut self, by: usize, include_closed: bool) -> Result<Vec<String>, Status> {
        let (mut ids, mut token) = (Vec::new(), String::new());
        loop {
            let request = pb_channel::ListMyChannelsRequest { page_size: 2, page_token: token, include_closed };
            let page = self.channels.list_my_channels(authed(&self.token(by), request)).await?.into_inner();
            ids.extend(page.channels.into_iter().map(|c| c.channel_id));
            if page.next_page_token.is_empty() {
                return Ok(ids);
            }
            token = page.next_page_token;
        }
    }

    /// ListMyChannels: every channel of the user, newest first; closed ones only when asked.
    pub(crate) async fn my_channels(&mut self, by: usize) -> Checked {
        let got = self.my_channel_ids(by, true).await;
        self.note(format!("u{by} my-channels"), &got);
        let all = got.map_err(|s| format!("list my channels: {s:?}"))?;
        let mut expected: Vec<String> =
            self.model.channels_of(by).into_iter().rev().map(|c| self.model.channels[c].id.clone()).collect();
        ensure!(all == expected, "u{by}'s channels:\n  service {all:?}\n  model   {expected:?}");
        expected.retain(|id| {
            let c = self.model.channels.iter().position(|m| &m.id == id).unwrap_or(0);
            !self.model.channels[c].closed.contains_key(&by)
        });
        let started = Instant::now();
        loop {
            let open = self.my_channel_ids(by, false).await.map_err(|s| format!("list my channels: {s:?}"))?;
            if open == expected {
                return Ok(());
            }
            ensure!(
                started.elapsed() < SETTLE,
                "u{by}'s open channels (a new chat reopens a closed one; nothing else does):\n  service {open:?}\n  model   {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// After the last step: every read, for every user and channel, once asynchronous work settled.
    pub(crate) async fn check_everything(&mut self) -> Checked {
        self.final_reads = Some(0);
        self.trace.push("final check:".into());
        for c in 0..self.model.channels.len() {
            if self.model.channels[c].deleted {
                continue;
            }
            // every membership change is logged and announced, in order
            let reader = self.model.principal(c);
            let started = Instant::now();
            loop {
                let events = self.list_events(c, reader, "").await.map_err(|s| format!("list events: {s:?}"))?;
                let history = self.list_history(c, reader, false).await.map_err(|s| format!("list chats: {s:?}"))?;
                let announced = history.iter().filter(|chat| chat.kind() == ChatKind::System).count();
                let logged = self.check_log(c, &events, true);
                let expected = self.model.channels[c].member_events.len();
                if logged.is_ok() && announced == expected {
                    break;
                }
                if started.elapsed() > SETTLE {
                    logged?;
                    return Err(format!("ch{c} has {announced} announcements for {expected} membership changes"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for by in 0..USERS {
            self.my_channels(by).await?;
            self.unread(by, None).await?;
            for c in 0..self.model.channels.len() {
                self.history(c, by, false).await?;
                self.members(c, by).await?;
                self.resume(c, by, by, true).await?;
            }
            for word in WORDS {
                self.search(by, word, None).await?;
            }
        }
        Ok(())
    }
}
