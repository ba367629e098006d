//! The harness's chat operations: send, edit, retract, remove for me, ack, get.

use std::collections::BTreeSet;

use chatmesh_api::chat::v1::{self as pb, ChatKind};
use chatmesh_platform::ids::unix_ms_of;
use chatmesh_tests::authed;
use tonic::Code;

use crate::{
    harness::{Checked, Harness, agree, id_of, reason},
    reference::ModelChat,
};

impl Harness {
    pub(crate) async fn send(&mut self, c: usize, by: usize, text: String) -> Checked {
        let rule = self.model.send_rule(c, by);
        let channel_id = self.model.channels[c].id.clone();
        let request =
            pb::CreateChatRequest { channel_id: channel_id.clone(), text: text.clone(), ..Default::default() };
        let got = self.chats.create_chat(authed(&self.token(by), request)).await;
        let m = self.model.chats.len();
        self.note(format!("u{by} send ch{c} m{m} {text:?}"), &got);
        agree("create chat", &rule, &got)?;
        if let Ok(response) = got {
            let chat = response.into_inner().chat.ok_or("no chat in the answer")?;
            let id = id_of(&chat.chat_id)?;
            ensure!(
                chat.text == text && chat.sender_id == self.users[by].id && chat.channel_id == channel_id,
                "the answer is the chat sent: {chat:?}"
            );
            ensure!(chat.kind() == ChatKind::Text && !chat.retracted, "a new text chat: {chat:?}");
            ensure!(self.model.chats.last().is_none_or(|last| last.id < id), "chat ids grow in commit order");
            self.model.chats.push(ModelChat {
                id,
                channel: c,
                sender: by,
                text,
                retracted: false,
                edits: 0,
                removed_for: BTreeSet::new(),
            });
            self.reopen(c, m, id).await?;
        }
        Ok(())
    }

    /// A new chat shows a closed channel again to the members who closed it in an earlier
    /// millisecond (ids carry their millisecond; the model knows each close's window). When
    /// the chat's millisecond lies inside a close's window, the service, once the activity relay
    /// delivered the chat, tells which side of the close it fell on, and the window narrows.
    async fn reopen(&mut self, c: usize, m: usize, chat_id: u64) -> Checked {
        let chat_ms = unix_ms_of(chat_id);
        let mut unsure = Vec::new();
        self.model.channels[c].closed.retain(|user, window| match window.reopened_by(chat_ms) {
            Some(reopened) => !reopened,
            None => {
                unsure.push(*user);
                true
            }
        });
        if unsure.is_empty() {
            return Ok(());
        }
        self.canary.settle().await?;
        for user in unsure {
            let got = self.get_channel(c, user).await.map_err(|s| format!("u{user}'s ch{c}: {s:?}"))?;
            let closed = got.membership.is_some_and(|m| m.closed);
            let windows = &mut self.model.channels[c].closed;
            match windows.get_mut(&user) {
                // the close was recorded in the chat's millisecond or a later one
                Some(window) if closed => window.earliest = chat_ms,
                _ => {
                    windows.remove(&user);
                }
            }
            let side = if closed { "kept it closed" } else { "reopened it" };
            self.trace.push(format!("  m{m} shares a millisecond with u{user}'s close of ch{c}: the service {side}"));
            self.shared_milliseconds += 1;
        }
        Ok(())
    }

    pub(crate) async fn edit(&mut self, m: usize, by: usize, text: String) -> Checked {
        let rule = self.model.change_rule(m, by);
        let request = pb::EditChatRequest { chat_id: self.model.chats[m].id.to_string(), text: text.clone() };
        let got = self.chats.edit_chat(authed(&self.token(by), request)).await;
        self.note(format!("u{by} edit m{m} {text:?}"), &got);
        agree("edit chat", &rule, &got)?;
        if let Ok(response) = got {
            let chat = response.into_inner().chat.ok_or("no chat in the answer")?;
            ensure!(chat.text == text && chat.edited_at.is_some(), "the answer is the edited chat: {chat:?}");
            let model = &mut self.model.chats[m];
            model.text = text;
            model.edits += 1;
        }
        Ok(())
    }

    pub(crate) async fn retract_or_remove(&mut self, m: usize, by: usize, retract: bool) -> Checked {
        let rule = if retract { self.model.change_rule(m, by) } else { self.model.readable(m, by) };
        let chat_ids = vec![self.model.chats[m].id.to_string()];
        let got = if retract {
            let request = pb::RetractChatsRequest { chat_ids };
            self.chats.retract_chats(authed(&self.token(by), request)).await.map(|r| r.into_inner().outcomes)
        } else {
            let request = pb::RemoveChatsRequest { chat_ids };
            self.chats.remove_chats(authed(&self.token(by), request)).await.map(|r| r.into_inner().outcomes)
        };
        let verb = if retract { "retract" } else { "remove" };
        let outcome = match &got {
            Ok(outcomes) => {
                outcomes.first().map_or("no outcome".into(), |o| if o.ok { "Ok".into() } else { o.reason.clone() })
            }
            Err(status) => format!("{:?}", status.code()),
        };
        self.note_outcome(format!("u{by} {verb} m{m}"), outcome);
        agree(verb, &Ok::<(), Code>(()), &got)?;
        let outcomes = got.map_err(|e| e.to_string())?;
        ensure!(outcomes.len() == 1, "one outcome per id: {outcomes:?}");
        let expected = if retract && rule == Err(Code::PermissionDenied) && self.model.readable(m, by).is_ok() {
            "NOT_SENDER"
        } else {
            reason(&rule)
        };
        ensure!(
            outcomes[0].ok == rule.is_ok() && outcomes[0].reason == expected,
            "{verb}: the model expects {expected:?}, the service answered {:?}",
            outcomes[0]
        );
        if rule.is_ok() {
            let chat = &mut self.model.chats[m];
            if retract {
                chat.retracted = true
            } else {
                chat.removed_for.insert(by);
            }
        }
        Ok(())
    }

    pub(crate) async fn ack(&mut self, m: usize, by: usize) -> Checked {
        let (c, id) = (self.model.chats[m].channel, self.model.chats[m].id);
        let rule = self.model.access(c, by);
        let request = pb::AckChatsRequest {
            channel_id: self.model.channels[c].id.clone(),
            chat_id: id.to_string(),
            created_at: None,
        };
        let got = self.chats.ack_chats(authed(&self.token(by), request)).await;
        self.note(format!("u{by} ack ch{c} m{m}"), &got);
        agree("ack", &rule, &got)?;
        if let Ok(response) = got {
            let pointer = self.model.pointers.entry((c, by)).or_default();
            // why: the pointer only moves forward.
            *pointer = (*pointer).max(id);
            let answered = response.into_inner().read_pointer.ok_or("no read pointer in the answer")?;
            ensure!(answered.last_read_chat_id == pointer.to_string(), "the read pointer: {answered:?} vs {pointer}");
        }
        Ok(())
    }

    pub(crate) async fn get_chat(&mut self, m: usize, by: usize) -> Checked {
        let rule = self.model.readable(m, by);
        let request = pb::GetChatRequest { chat_id: self.model.chats[m].id.to_string() };
        let got = self.chats.get_chat(authed(&self.token(by), request)).await;
        self.note(format!("u{by} get m{m}"), &got);
        agree("get chat", &rule, &got)?;
        if let Ok(response) = got {
            let chat = response.into_inner().chat.ok_or("no chat in the answer")?;
            let model = &self.model.chats[m];
            ensure!(
                chat.text == model.shown_text() && chat.retracted == model.retracted,
                "the chat as it is now: {chat:?} vs {model:?}"
            );
        }
        Ok(())
    }
}
