//! The harness: the real services, the model beside them, and the trace of what ran.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use chatmesh_api::{
    channel::v1::{self as pb_channel, ChannelVisibility, channel_service_client::ChannelServiceClient},
    chat::v1::{self as pb, chat_service_client::ChatServiceClient},
};
use chatmesh_platform::ids::{now_ms, unix_ms_of};
use chatmesh_tests::{TestApp, User, authed};
use tonic::{Code, Status, transport::Channel};

use crate::{
    SETTLE, USERS, WORDS,
    ops::{Kind, Op, VERBS},
    reference::Model,
};

/// A divergence between the service and the model, described.
pub(crate) type Checked<T = ()> = Result<T, String>;

pub(crate) fn code_of<T>(result: &Result<T, Status>) -> Code {
    result.as_ref().map_or_else(Status::code, |_| Code::Ok)
}

pub(crate) fn expected_code<T>(rule: &Result<T, Code>) -> Code {
    rule.as_ref().map_or_else(|code| *code, |_| Code::Ok)
}

/// The service answered as the model expects.
pub(crate) fn agree<T, R>(what: &str, rule: &Result<R, Code>, got: &Result<T, Status>) -> Checked {
    let (expected, answered) = (expected_code(rule), code_of(got));
    let detail = got.as_ref().err().map(|s| format!(" ({})", s.message())).unwrap_or_default();
    ensure!(expected == answered, "{what}: the model expects {expected:?}, the service answered {answered:?}{detail}");
    Ok(())
}

/// The per-id reason a RetractChats or RemoveChats outcome carries for a refusal.
pub(crate) fn reason(rule: &Result<(), Code>) -> &'static str {
    match rule {
        Ok(()) => "",
        Err(Code::PermissionDenied) => "NOT_A_MEMBER",
        Err(Code::FailedPrecondition) => "CHAT_RETRACTED",
        Err(_) => "CHAT_NOT_FOUND",
    }
}

pub(crate) fn id_of(id: &str) -> Checked<u64> {
    id.parse().map_err(|_| format!("{id:?} is not an id"))
}

pub(crate) fn text_of(words: &[u8]) -> String {
    words.iter().map(|w| WORDS[*w as usize % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

/// A private channel of a user outside the cast, which tells when the activity relay (which
/// reopens closed channels) has delivered every chat sent so far.
pub(crate) struct Canary {
    pub(crate) user: User,
    pub(crate) channel_id: String,
    pub(crate) channels: ChannelServiceClient<Channel>,
    pub(crate) chats: ChatServiceClient<Channel>,
}

impl Canary {
    pub(crate) async fn new(app: &TestApp) -> Self {
        let user = app.user("canary").await;
        let channel_id = app.group(&user, ChannelVisibility::Private, &[]).await.channel_id;
        Self { user, channel_id, channels: app.channels().await, chats: app.chats().await }
    }

    /// Returns once the activity relay delivered every chat sent before the call. The relay
    /// delivers the change feed in order, one RecordActivity call at a time, and a call may
    /// reopen several channels one after another: the first reopening of the canary shows that
    /// the call holding every earlier chat has begun, the second that it has ended.
    pub(crate) async fn settle(&mut self) -> Checked {
        self.reopened_by_a_new_chat().await?;
        self.reopened_by_a_new_chat().await
    }

    /// Closes the canary's channel, sends it a chat of a later millisecond than the close, and
    /// waits until the relay delivered that chat (it reopens the channel).
    async fn reopened_by_a_new_chat(&mut self) -> Checked {
        let (token, channel_id) = (&self.user.token, self.channel_id.clone());
        let close = pb_channel::CloseChannelRequest { channel_id: channel_id.clone() };
        self.channels.close_channel(authed(token, close)).await.map_err(|s| format!("canary close: {s:?}"))?;
        let closed_by = now_ms();
        let started = Instant::now();
        // why: only a chat of a later millisecond than the close reopens it; one minted in the
        // close's millisecond is followed by another (the clock moves on while it is sent)
        loop {
            let chat =
                pb::CreateChatRequest { channel_id: channel_id.clone(), text: "tweet".into(), ..Default::default() };
            let sent = self.chats.create_chat(authed(token, chat)).await.map_err(|s| format!("canary chat: {s:?}"))?;
            let id = id_of(&sent.into_inner().chat.ok_or("canary chat: no chat in the answer")?.chat_id)?;
            if unix_ms_of(id) > closed_by {
                break;
            }
            ensure!(started.elapsed() < SETTLE, "the canary's chats never left the millisecond of its close");
        }
        loop {
            let request = pb_channel::GetChannelRequest { channel_id: channel_id.clone() };
            let got = self.channels.get_channel(authed(token, request)).await;
            let got = got.map_err(|s| format!("canary channel: {s:?}"))?.into_inner();
            if got.membership.is_some_and(|m| !m.closed) {
                return Ok(());
            }
            ensure!(started.elapsed() < SETTLE, "a new chat never reopened the canary's closed channel");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Tallies over the whole run.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) cases: usize,
    pub(crate) operations: usize,
    /// "op → outcome" → how many times.
    pub(crate) outcomes: BTreeMap<String, usize>,
    pub(crate) final_reads: usize,
    /// Chats sent in a millisecond a close may have been recorded in (the service told the side).
    pub(crate) shared_milliseconds: usize,
}

impl Tally {
    /// Every kind of operation reached its success path at least `least` times: a run whose
    /// draws never got, say, a kick accepted would leave kicking untested and still pass.
    pub(crate) fn reached(&self, least: usize) -> Checked {
        let short: Vec<String> = VERBS
            .iter()
            .filter_map(|verb| {
                let n = self.outcomes.get(&format!("{verb} → Ok")).copied().unwrap_or(0);
                (n < least).then(|| format!("{verb} ({n})"))
            })
            .collect();
        ensure!(short.is_empty(), "operations that succeeded fewer than {least} times: {}", short.join(", "));
        Ok(())
    }
}

pub(crate) struct Harness {
    pub(crate) users: Vec<User>,
    pub(crate) channels: ChannelServiceClient<Channel>,
    pub(crate) chats: ChatServiceClient<Channel>,
    pub(crate) model: Model,
    /// What ran, resolved ("u1 kick ch0 u2 → PermissionDenied"), for the failure message.
    pub(crate) trace: Vec<String>,
    /// "verb → outcome" per operation, for the tally.
    pub(crate) outcomes: Vec<String>,
    /// Reads made by the final check (tallied apart from the operations).
    pub(crate) final_reads: Option<usize>,
    /// Chats sent in a millisecond a close may have been recorded in.
    pub(crate) shared_milliseconds: usize,
    pub(crate) canary: Canary,
    pub(crate) app: TestApp,
}

impl Harness {
    pub(crate) async fn start() -> Self {
        let app = TestApp::spawn().await;
        let mut users = Vec::new();
        for u in 0..USERS {
            users.push(app.user(&format!("u{u}")).await);
        }
        let canary = Canary::new(&app).await;
        let (channels, chats) = (app.channels().await, app.chats().await);
        Self {
            users,
            channels,
            chats,
            model: Model::default(),
            trace: Vec::new(),
            outcomes: Vec::new(),
            final_reads: None,
            shared_milliseconds: 0,
            canary,
            app,
        }
    }

    pub(crate) fn token(&self, user: usize) -> String {
        self.users[user].token.clone()
    }

    pub(crate) fn user_index(&self, id: &str) -> usize {
        self.users.iter().position(|u| u.id == id).unwrap_or(usize::MAX)
    }

    /// Notes what an operation was and how the service answered it.
    pub(crate) fn note<T>(&mut self, what: String, got: &Result<T, Status>) {
        self.note_outcome(what, format!("{:?}", code_of(got)));
    }

    pub(crate) fn note_outcome(&mut self, what: String, outcome: String) {
        let verb = what.split(' ').nth(1).unwrap_or("?");
        match &mut self.final_reads {
            Some(reads) => *reads += 1,
            None => self.outcomes.push(format!("{verb} → {outcome}")),
        }
        self.trace.push(format!("{what} → {outcome}"));
    }

    pub(crate) async fn run(&mut self, ops: &[Op]) -> Checked {
        for (i, op) in ops.iter().enumerate() {
            self.step(op).await.map_err(|e| format!("step {i} ({op:?}): {e}"))?;
        }
        self.check_everything().await.map_err(|e| format!("final check: {e}"))
    }

    pub(crate) async fn step(&mut self, op: &Op) -> Checked {
        match op {
            Op::Create { by, kind, public, members } => {
                let by = *by as usize % USERS;
                match kind {
                    Kind::Direct => self.create_direct(by, (by + 1 + *members as usize % (USERS - 1)) % USERS).await,
                    _ => self.create_group(by, *kind, *public, *members).await,
                }
            }
            Op::Join { by, ch } => {
                let Some(c) = self.model.channel(*ch) else { return Ok(()) };
                let by = self.model.who(*by, c, self.model.principal(c));
                self.add_member(c, by, by).await
            }
            Op::Invite { by, ch, user } => {
                let Some(c) = self.model.channel(*ch) else { return Ok(()) };
                let by = self.model.who(*by, c, self.model.principal(c));
                let target = self.model.who(*user, c, self.model.principal(c));
                self.add_member(c, by, target).await
            }
            Op::Leave { by, ch } => {
                let Some(c) = self.model.channel(*ch) else { return Ok(()) };
                let by = self.model.who(*by, c, self.model.principal(c));
                self.remove_member(c, by, by).await
            }
            Op::Kick { by, ch, user } => {
                let Some(c) = self.model.channel(*ch) else { return Ok(()) };
                let by = self.model.who(*by, c, self.model.principal(c));
                let target = self.model.who(*user, c, self.model.principal(c));
                self.remove_member(c, by, target).await
            }
            Op::SetRole { by, ch, user, role } => {
                let Some(c) = self.model.channel(*ch) else { return Ok(()) };
                let by = self.model.who(*by, c, self.model.principal(c));
                let target = self.model.who(*user, c, self.model.principal(c));
                self.set_role(c, by, target, *role).await
            }
            Op::Close { by, ch } | Op::Reopen { by, ch } => {
                let Some(c) = self.model.channel(*ch) else { return Ok(()) };
                let by = self.model.who(*by, c, self.model.principal(c));
                self.close(c, by, matches!(op, Op::Close { .. })).await
            }
            Op::Delete { by, ch } => {
                let Some(c) = self.model.channel(*ch) else { return Ok(()) };
                let by = self.model.who(*by, c, self.model.principal(c));
                self.delete(c, by).await
            }
            Op::Send { by, ch, words } => {
                let Some(c) = self.model.channel(*ch) else { return Ok(()) };
                let by = self.model.who(*by, c, self.model.principal(c));
                self.send(c, by, text_of(words)).await
            }
            Op::Edit { by, chat, words } => {
                let Some(m) = self.model.chat(*chat) else { return Ok(()) };
                let by = self.model.who(*by, self.model.chats[m].channel, self.model.chats[m].sender);
                self.edit(m, by, text_of(words)).await
            }
            Op::Retract { by, chat } | Op::Remove { by, chat } => {
                let Some(m) = self.model.chat(*chat) else { return Ok(()) };
                let by = self.model.who(*by, self.model.chats[m].channel, self.model.chats[m].sender);
                self.retract_or_remove(m, by, matches!(op, Op::Retract { .. })).await
            }
            Op::Ack { by, chat } => {
                let Some(m) = self.model.chat(*chat) else { return Ok(()) };
                let by = self.model.who(*by, self.model.chats[m].channel, self.model.chats[m].sender);
                self.ack(m, by).await
            }
            Op::GetChat { by, chat } => {
                let Some(m) = self.model.chat(*chat) else { return Ok(()) };
                let by = self.model.who(*by, self.model.chats[m].channel, self.model.chats[m].sender);
                self.get_chat(m, by).await
            }
            Op::History { by, ch, oldest_first } => {
                let Some(c) = self.model.channel(*ch) else { return Ok(()) };
                let by = self.model.who(*by, c, self.model.principal(c));
                self.history(c, by, *oldest_first).await
            }
            Op::Unread { by, ch } => {
                let only = ch.and_then(|ch| self.model.channel(ch));
                self.unread(*by as usize % USERS, only).await
            }
            Op::Search { by, word, ch } => {
                let only = ch.and_then(|ch| self.model.channel(ch));
                self.search(*by as usize % USERS, WORDS[*word as usize % WORDS.len()], only).await
            }
            Op::Resume { by, ch, at } => {
                let Some(c) = self.model.channel(*ch) else { return Ok(()) };
                let by = self.model.who(*by, c, self.model.principal(c));
                self.resume(c, by, *at as usize, false).await
            }
            Op::Members { by, ch } => {
                let Some(c) = self.model.channel(*ch) else { return Ok(()) };
                let by = self.model.who(*by, c, self.model.principal(c));
                self.members(c, by).await
            }
            Op::MyChannels { by } => self.my_channels(*by as usize % USERS).await,
        }
    }
}
