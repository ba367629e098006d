//! Blocks in the chat core, over a real (embedded) store and fake channel and user services
//! reached through the platform layer in process: who may write where, which chats a reader
//! sees marked, and moderators' retractions.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use async_trait::async_trait;
use chatmesh_api::{
    channel::v1::{
        CheckMembershipRequest, CheckMembershipResponse, channel_internal_service_server::ChannelInternalService,
        channel_internal_service_server::ChannelInternalServiceServer,
    },
    chat::v1::{ChannelEvent, EventType},
    user::v1::{
        CheckBlockRequest, CheckBlockResponse, ListBlockedUserIdsRequest, ListBlockedUserIdsResponse,
        user_internal_service_server::UserInternalService, user_internal_service_server::UserInternalServiceServer,
    },
};
use chatmesh_platform::{
    auth::Authenticator,
    blocks::BlockClient,
    config::Config,
    grpc::{PlatformLayer, Policy, ServiceAuth, in_process_channel, internal_channel},
    membership::{EpochBoard, MembershipClient},
};
use chatmesh_wire::chat as wire;
use tonic::{Request, Response, Status};

use super::*;
use crate::store::{ChangeFeed, Chats, EventLog, FjallChatStore, Range};

/// Users 1 and 2 share the direct channel DIRECT; users 1, 2 and 3 the group GROUP.
const DIRECT: u64 = 10;
const GROUP: u64 = 20;

/// The channel service: DIRECT and GROUP with their members.
#[derive(Clone)]
struct Channels;

#[async_trait]
impl ChannelInternalService for Channels {
    async fn check_membership(
        &self,
        request: Request<CheckMembershipRequest>,
    ) -> Result<Response<CheckMembershipResponse>, Status> {
        let request = request.into_inner();
        let (channel, user) = (request.channel_id.parse::<u64>().unwrap(), request.user_id.parse::<u64>().unwrap());
        let (kind, members, direct) = match channel {
            DIRECT => (ChannelKind::Direct, vec![1, 2], vec!["1".to_owned(), "2".to_owned()]),
            GROUP => (ChannelKind::Group, vec![1, 2, 3], Vec::new()),
            _ => return Ok(Response::new(CheckMembershipResponse::default())),
        };
        Ok(Response::new(CheckMembershipResponse {
            channel_exists: true,
            is_member: members.contains(&user),
            role: MemberRole::Member as i32,
            kind: kind as i32,
            membership_epoch: 1,
            member_count: members.len() as i32,
            direct_member_ids: direct,
            ..Default::default()
        }))
    }
}

/// The user service's blocks: (blocker, blocked) pairs, each user's epoch, and how many
/// blocked lists it was asked for.
#[derive(Clone, Default)]
struct Users {
    blocks: Arc<Mutex<HashSet<(u64, u64)>>>,
    epochs: Arc<Mutex<HashMap<u64, u64>>>,
    lists_asked: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Users {
    /// `blocker` blocks `blocked`; both epochs rise. Returns the blocker's new epoch.
    fn block(&self, blocker: u64, blocked: u64) -> u64 {
        self.blocks.lock().unwrap().insert((blocker, blocked));
        let mut epochs = self.epochs.lock().unwrap();
        *epochs.entry(blocked).or_default() += 1;
        let epoch = epochs.entry(blocker).or_default();
        *epoch += 1;
        *epoch
    }

    fn epoch(&self, user: u64) -> i64 {
        self.epochs.lock().unwrap().get(&user).copied().unwrap_or(0) as i64
    }
}

#[async_trait]
impl UserInternalService for Users {
    async fn check_block(&self, request: Request<CheckBlockRequest>) -> Result<Response<CheckBlockResponse>, Status> {
        let request = request.into_inner();
        let (a, b) = (request.user_id.parse::<u64>().unwrap(), request.other_user_id.parse::<u64>().unwrap());
        let blocks = self.blocks.lock().unwrap().clone();
        Ok(Response::new(CheckBlockResponse {
            blocking: blocks.contains(&(a, b)),
            blocked_by: blocks.contains(&(b, a)),
            user_epoch: self.epoch(a),
            other_user_epoch: self.epoch(b),
        }))
    }

    async fn list_blocked_user_ids(
        &self,
        request: Request<ListBlockedUserIdsRequest>,
    ) -> Result<Response<ListBlockedUserIdsResponse>, Status> {
        self.lists_asked.fetch_add(1, Ordering::AcqRel);
        if self.down.load(Ordering::Acquire) {
            return Err(Status::unavailable("user service down"));
        }
        let user = request.into_inner().user_id.parse::<u64>().unwrap();
        let blocks = self.blocks.lock().unwrap().clone();
        let user_ids = blocks.iter().filter(|(by, _)| *by == user).map(|(_, them)| them.to_string()).collect();
        Ok(Response::new(ListBlockedUserIdsResponse { user_ids, epoch: self.epoch(user) }))
    }
}

struct NoPublisher;

#[async_trait]
impl Publisher for NoPublisher {
    async fn publish(&self, _: Vec<ChannelEvent>) -> Result<(), Status> {
        Ok(())
    }
}

/// A chat core over a temporary store, its peers `Channels` and `users`, and the block board.
struct Fixture {
    core: ChatCore,
    store: Arc<FjallChatStore>,
    users: Users,
    blocks: Arc<EpochBoard>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn fixture() -> Fixture {
    let keys = tempfile::tempdir().unwrap();
    let config = Config::default();
    let auth = Arc::new(Authenticator::from_data_dir(config.auth.clone(), keys.path()).unwrap());
    let users = Users::default();
    let routes = tonic::service::Routes::new(ChannelInternalServiceServer::new(Channels))
        .add_service(UserInternalServiceServer::new(users.clone()));
    let layer = PlatformLayer::new(Arc::new(Policy::new(auth.clone(), &config)));
    let peers = internal_channel(in_process_channel(routes, layer), ServiceAuth::new(auth, "chat"));
    let blocks = Arc::new(EpochBoard::new());
    let directory = Directory::new(
        MembershipClient::new(peers.clone(), Arc::new(EpochBoard::new())),
        BlockClient::new(peers.clone(), blocks.clone()),
        peers,
    );
    let (dir, store) = FjallChatStore::temp();
    let store = Arc::new(store);
    let (committed, _) = watch::channel(0);
    let core = ChatCore::new(ChatDeps {
        store: store.clone(),
        directory,
        publisher: Arc::new(NoPublisher),
        committed,
        search: None,
        media: None,
        ids: Arc::new(IdGenerator::new(1).unwrap()),
    });
    Fixture { core, store, users, blocks, _dirs: (keys, dir) }
}

fn send(channel_id: u64, text: &str) -> wire::CreateChat {
    wire::CreateChat {
        channel_id,
        text: text.into(),
        client_msg_id: String::new(),
        reply_to: None,
        upload_ids: Vec::new(),
    }
}

fn history(channel_id: u64) -> wire::ListChats {
    wire::ListChats { channel_id, before: None, after: None, page_size: 50, cursor: None }
}

async fn stored(f: &Fixture, channel_id: u64) -> Vec<String> {
    let chats = f.store.list_chats(channel_id, Range::Before(None), 50, 0).await.unwrap();
    chats.into_iter().map(|chat| chat.text).collect()
}

#[tokio::test]
async fn in_a_direct_channel_a_block_either_way_refuses_sending_and_stores_nothing() {
    let f = fixture();
    f.users.block(2, 1);
    let refused = f.core.create_chat(1, send(DIRECT, "hello?")).await.unwrap_err();
    assert!(matches!(refused, ChatError::UserBlocked(2)), "the blocked user: {refused}");
    let refused = f.core.create_chat(2, send(DIRECT, "go away")).await.unwrap_err();
    assert!(matches!(refused, ChatError::UserBlocked(1)), "the blocker too: {refused}");
    assert!(stored(&f, DIRECT).await.is_empty());
    assert_eq!(f.store.feed_head().await.unwrap(), 0, "no event either");
}

#[tokio::test]
async fn a_group_keeps_working_between_members_who_blocked_each_other() {
    let f = fixture();
    f.users.block(2, 1);
    f.core.create_chat(1, send(GROUP, "hi all")).await.unwrap();
    f.core.create_chat(2, send(GROUP, "hi")).await.unwrap();
    assert_eq!(stored(&f, GROUP).await, ["hi", "hi all"]);
}

#[tokio::test]
async fn a_block_takes_hold_on_the_next_send_once_its_epoch_is_raised() {
    let f = fixture();
    f.core.create_chat(1, send(DIRECT, "first")).await.unwrap();
    let epoch = f.users.block(2, 1);
    // why: what the user service does before BlockUser returns; without it the cached
    // "not blocked" would stand for up to BLOCK_TTL
    f.blocks.raise(2, epoch);
    assert!(matches!(f.core.create_chat(1, send(DIRECT, "second")).await, Err(ChatError::UserBlocked(2))));
    assert_eq!(stored(&f, DIRECT).await, ["first"]);
}

#[tokio::test]
async fn editing_in_a_direct_channel_is_refused_once_a_block_stands_but_retracting_is_not() {
    let f = fixture();
    let mine = f.core.create_chat(1, send(DIRECT, "before")).await.unwrap();
    let group = f.core.create_chat(1, send(GROUP, "in the group")).await.unwrap();
    let epoch = f.users.block(1, 2);
    f.blocks.raise(1, epoch);
    let edit = |chat_id| wire::EditChat { chat_id, text: "after".into() };
    assert!(matches!(f.core.edit_chat(1, edit(mine.chat_id)).await, Err(ChatError::UserBlocked(2))));
    assert_eq!(f.core.edit_chat(1, edit(group.chat_id)).await.unwrap().text, "after", "groups are not affected");
    let retract = wire::RetractChats { chat_ids: vec![mine.chat_id] };
    let outcomes = f.core.retract_chats(1, retract).await.unwrap();
    assert!(outcomes[0].1.is_ok(), "taking one's own words back is still allowed");
}

#[tokio::test]
async fn a_reader_sees_the_chats_of_senders_they_blocked_marked_with_one_lookup_per_request() {
    let f = fixture();
    let from_2 = f.core.create_chat(2, send(GROUP, "from two")).await.unwrap();
    f.core.create_chat(3, send(GROUP, "from three")).await.unwrap();
    f.users.block(1, 2);
    f.users.block(2, 3);

    let page = f.core.list_chats(1, history(GROUP)).await.unwrap();
    assert_eq!(f.users.lists_asked.load(Ordering::Acquire), 1, "one lookup for the whole page");
    let marks: Vec<(String, bool)> =
        page.read.items.iter().map(|c| c.to_pb_read_by(1, &page.blocked)).map(|c| (c.text, c.sender_blocked)).collect();
    assert_eq!(marks, [("from three".to_owned(), false), ("from two".to_owned(), true)]);

    let seen_by_3 = f.core.get_chat(3, wire::GetChat { chat_id: from_2.chat_id }).await.unwrap();
    assert!(!seen_by_3.read.to_pb_read_by(3, &seen_by_3.blocked).sender_blocked, "marks are the reader's own");
    let seen_by_1 = f.core.get_chat(1, wire::GetChat { chat_id: from_2.chat_id }).await.unwrap();
    assert!(seen_by_1.read.to_pb_read_by(1, &seen_by_1.blocked).sender_blocked);
    assert!(!from_2.to_pb(Some(1)).sender_blocked, "what is not read through history, get or search is unmarked");
}

#[tokio::test]
async fn reading_only_ones_own_chats_asks_for_no_blocked_list() {
    let f = fixture();
    let mine = f.core.create_chat(1, send(GROUP, "mine")).await.unwrap();
    f.core.get_chat(1, wire::GetChat { chat_id: mine.chat_id }).await.unwrap();
    f.core.list_chats(1, history(GROUP)).await.unwrap();
    assert_eq!(f.users.lists_asked.load(Ordering::Acquire), 0);
}

#[tokio::test]
async fn when_the_user_service_cannot_say_chats_are_answered_unmarked() {
    let f = fixture();
    f.core.create_chat(2, send(GROUP, "from two")).await.unwrap();
    f.users.block(1, 2);
    f.users.down.store(true, Ordering::Release);
    let page = f.core.list_chats(1, history(GROUP)).await.unwrap();
    assert_eq!(page.read.items.len(), 1);
    assert!(page.blocked.is_empty());
}

#[tokio::test]
async fn a_moderator_retracts_a_chat_as_its_sender_would_and_again_changes_nothing() {
    let f = fixture();
    let chat = f.core.create_chat(2, send(GROUP, "reported")).await.unwrap();
    let moderate = wire::ModerateRetractChat { chat_id: chat.chat_id, moderator_id: 9 };
    f.core.moderate_retract(moderate).await.unwrap();
    let retracted = f.store.get_chat(chat.chat_id).await.unwrap().unwrap();
    assert!(retracted.is_retracted() && retracted.text.is_empty(), "a tombstone: {retracted:?}");
    let events = f.store.list_events(GROUP, 0, 10).await.unwrap();
    let retractions: Vec<&ChannelEvent> = events.iter().filter(|e| e.r#type() == EventType::ChatRetracted).collect();
    assert_eq!(retractions.len(), 1);
    assert_eq!(retractions[0].actor_id, "2", "as its sender would");

    f.core.moderate_retract(moderate).await.unwrap();
    let events_after = f.store.list_events(GROUP, 0, 10).await.unwrap();
    assert_eq!(events_after.len(), events.len(), "a second decision records nothing");
    let unknown = wire::ModerateRetractChat { chat_id: 404, moderator_id: 9 };
    assert!(matches!(f.core.moderate_retract(unknown).await, Err(ChatError::ChatNotFound(404))));
}
