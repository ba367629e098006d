//! The one table of every RPC: its gRPC path, its request message and the check the service
//! runs first (decode the bytes as tonic would, then the validator of this crate). The fuzz
//! target `requests` and the descriptor-generated contract test both go through it, so what
//! they test is what runs.

use chatmesh_api::{
    channel::v1 as channel, chat::v1 as chat, dispatcher::v1 as dispatcher, feed::v1 as feed, user::v1 as user,
};
use prost::Message;
use tonic::Status;

/// One RPC of the contracts.
#[derive(Debug, Clone, Copy)]
pub struct Rpc {
    /// The gRPC path, `/chatmesh.user.v1.UserService/CreateUser`.
    pub path: &'static str,
    /// The request message's full name, `chatmesh.user.v1.CreateUserRequest`.
    pub request: &'static str,
    /// Decodes the bytes as the request message and validates it: `None` when they do not
    /// decode, else the validator's verdict.
    pub check: fn(&[u8]) -> Option<Result<(), Status>>,
}

impl Rpc {
    /// The RPC at a gRPC path.
    pub fn by_path(path: &str) -> Option<&'static Rpc> {
        RPCS.iter().find(|rpc| rpc.path == path)
    }

    /// The first RPC taking this request message (a request message belongs to one RPC).
    pub fn by_request(full_name: &str) -> Option<&'static Rpc> {
        RPCS.iter().find(|rpc| rpc.request == full_name)
    }
}

macro_rules! rpcs {
    ($($path:literal => $module:ident :: $check:ident ( $request:ident )),* $(,)?) => {
        /// Every RPC of the contracts, in the order of their services.
        pub const RPCS: &[Rpc] = &[$(
            Rpc {
                path: $path,
                request: concat!("chatmesh.", stringify!($module), ".v1.", stringify!($request)),
                check: |bytes| {
                    let request = $module::$request::decode(bytes).ok()?;
                    Some(crate::$module::$check(&request).map(drop))
                },
            },
        )*];
    };
}

rpcs! {
    "/chatmesh.user.v1.UserService/CreateUser" => user::create_user(CreateUserRequest),
    "/chatmesh.user.v1.UserService/Login" => user::login(LoginRequest),
    "/chatmesh.user.v1.UserService/RefreshToken" => user::refresh_token(RefreshTokenRequest),
    "/chatmesh.user.v1.UserService/Logout" => user::logout(LogoutRequest),
    "/chatmesh.user.v1.UserService/LogoutAll" => user::logout_all(LogoutAllRequest),
    "/chatmesh.user.v1.UserService/GetMe" => user::get_me(GetMeRequest),
    "/chatmesh.user.v1.UserService/GetUser" => user::get_user(GetUserRequest),
    "/chatmesh.user.v1.UserService/UpdateMe" => user::update_me(UpdateMeRequest),
    "/chatmesh.user.v1.UserService/FollowUser" => user::follow_user(FollowUserRequest),
    "/chatmesh.user.v1.UserService/UnfollowUser" => user::unfollow_user(UnfollowUserRequest),
    "/chatmesh.user.v1.UserService/ListFollowers" => user::list_followers(ListFollowersRequest),
    "/chatmesh.user.v1.UserService/ListFollowing" => user::list_following(ListFollowingRequest),
    "/chatmesh.user.v1.UserService/BlockUser" => user::block_user(BlockUserRequest),
    "/chatmesh.user.v1.UserService/UnblockUser" => user::unblock_user(UnblockUserRequest),
    "/chatmesh.user.v1.UserService/ListBlockedUsers" => user::list_blocked_users(ListBlockedUsersRequest),
    "/chatmesh.user.v1.UserService/ListRecommendations" => user::list_recommendations(ListRecommendationsRequest),
    "/chatmesh.user.v1.UserService/SendFriendRequest" => user::send_friend_request(SendFriendRequestRequest),
    "/chatmesh.user.v1.UserService/ListFriendRequests" => user::list_friend_requests(ListFriendRequestsRequest),
    "/chatmesh.user.v1.UserService/AcceptFriendRequest" => user::accept_friend_request(AcceptFriendRequestRequest),
    "/chatmesh.user.v1.UserService/DeclineFriendRequest" => user::decline_friend_request(DeclineFriendRequestRequest),
    "/chatmesh.user.v1.UserService/CancelFriendRequest" => user::cancel_friend_request(CancelFriendRequestRequest),
    "/chatmesh.user.v1.UserService/RemoveFriend" => user::remove_friend(RemoveFriendRequest),
    "/chatmesh.user.v1.UserService/ListFriends" => user::list_friends(ListFriendsRequest),
    "/chatmesh.user.v1.UserService/SearchUsers" => user::search_users(SearchUsersRequest),
    "/chatmesh.user.v1.UserService/CreateReport" => user::create_report(CreateReportRequest),
    "/chatmesh.user.v1.UserService/ChangeEmail" => user::change_email(ChangeEmailRequest),
    "/chatmesh.user.v1.UserService/ChangePassword" => user::change_password(ChangePasswordRequest),
    "/chatmesh.user.v1.UserService/DeleteMe" => user::delete_me(DeleteMeRequest),
    "/chatmesh.user.v1.UserService/ListReports" => user::list_reports(ListReportsRequest),
    "/chatmesh.user.v1.UserService/ResolveReport" => user::resolve_report(ResolveReportRequest),
    "/chatmesh.user.v1.UserService/ListAccounts" => user::list_accounts(ListAccountsRequest),
    "/chatmesh.user.v1.UserService/GetAccount" => user::get_account(GetAccountRequest),
    "/chatmesh.user.v1.UserService/SuspendAccount" => user::suspend_account(SuspendAccountRequest),
    "/chatmesh.user.v1.UserService/UnsuspendAccount" => user::unsuspend_account(UnsuspendAccountRequest),
    "/chatmesh.user.v1.UserService/DeleteAccount" => user::delete_account(DeleteAccountRequest),
    "/chatmesh.user.v1.UserInternalService/BatchGetUsers" => user::batch_get_users(BatchGetUsersRequest),
    "/chatmesh.user.v1.UserInternalService/ResolveUsernames" => user::resolve_usernames(ResolveUsernamesRequest),
    "/chatmesh.user.v1.UserInternalService/CheckBlock" => user::check_block(CheckBlockRequest),
    "/chatmesh.user.v1.UserInternalService/ListBlockedUserIds" => user::list_blocked_user_ids(ListBlockedUserIdsRequest),
    "/chatmesh.user.v1.UserInternalService/SetRole" => user::set_role(SetRoleRequest),
    "/chatmesh.user.v1.UserInternalService/ListFollowerIds" => user::list_follower_ids(ListFollowerIdsRequest),
    "/chatmesh.user.v1.UserInternalService/ListFollowingIds" => user::list_following_ids(ListFollowingIdsRequest),
    "/chatmesh.user.v1.UserInternalService/RecordInteractions" => user::record_interactions(RecordInteractionsRequest),
    "/chatmesh.channel.v1.ChannelService/CreateChannel" => channel::create_channel(CreateChannelRequest),
    "/chatmesh.channel.v1.ChannelService/GetChannel" => channel::get_channel(GetChannelRequest),
    "/chatmesh.channel.v1.ChannelService/ListMyChannels" => channel::list_my_channels(ListMyChannelsRequest),
    "/chatmesh.channel.v1.ChannelService/UpdateChannel" => channel::update_channel(UpdateChannelRequest),
    "/chatmesh.channel.v1.ChannelService/DeleteChannel" => channel::delete_channel(DeleteChannelRequest),
    "/chatmesh.channel.v1.ChannelService/CreateMember" => channel::create_member(CreateMemberRequest),
    "/chatmesh.channel.v1.ChannelService/DeleteMember" => channel::delete_member(DeleteMemberRequest),
    "/chatmesh.channel.v1.ChannelService/ListMembers" => channel::list_members(ListMembersRequest),
    "/chatmesh.channel.v1.ChannelService/UpdateMember" => channel::update_member(UpdateMemberRequest),
    "/chatmesh.channel.v1.ChannelService/CloseChannel" => channel::close_channel(CloseChannelRequest),
    "/chatmesh.channel.v1.ChannelService/ReopenChannel" => channel::reopen_channel(ReopenChannelRequest),
    "/chatmesh.channel.v1.ChannelInternalService/GetOrCreateDirectChannel" => channel::get_or_create_direct_channel(GetOrCreateDirectChannelRequest),
    "/chatmesh.channel.v1.ChannelInternalService/CheckMembership" => channel::check_membership(CheckMembershipRequest),
    "/chatmesh.channel.v1.ChannelInternalService/ListUserChannelIds" => channel::list_user_channel_ids(ListUserChannelIdsRequest),
    "/chatmesh.channel.v1.ChannelInternalService/RecordActivity" => channel::record_activity(RecordActivityRequest),
    "/chatmesh.chat.v1.ChatService/CreateChat" => chat::create_chat(CreateChatRequest),
    "/chatmesh.chat.v1.ChatService/GetChat" => chat::get_chat(GetChatRequest),
    "/chatmesh.chat.v1.ChatService/ListChats" => chat::list_chats(ListChatsRequest),
    "/chatmesh.chat.v1.ChatService/EditChat" => chat::edit_chat(EditChatRequest),
    "/chatmesh.chat.v1.ChatService/RemoveChats" => chat::remove_chats(RemoveChatsRequest),
    "/chatmesh.chat.v1.ChatService/RetractChats" => chat::retract_chats(RetractChatsRequest),
    "/chatmesh.chat.v1.ChatService/SearchChats" => chat::search_chats(SearchChatsRequest),
    "/chatmesh.chat.v1.ChatService/AckChats" => chat::ack_chats(AckChatsRequest),
    "/chatmesh.chat.v1.ChatService/GetUnreadCounts" => chat::get_unread_counts(GetUnreadCountsRequest),
    "/chatmesh.chat.v1.ChatService/ListEvents" => chat::list_events(ListEventsRequest),
    "/chatmesh.chat.v1.ChatService/CreateUpload" => chat::create_upload(CreateUploadRequest),
    "/chatmesh.chat.v1.ChatService/GetAttachmentUrl" => chat::get_attachment_url(GetAttachmentUrlRequest),
    "/chatmesh.chat.v1.ChatInternalService/AppendChannelEvents" => chat::append_channel_events(AppendChannelEventsRequest),
    "/chatmesh.chat.v1.ChatInternalService/GetSearchStatus" => chat::get_search_status(GetSearchStatusRequest),
    "/chatmesh.chat.v1.ChatInternalService/GetChatStates" => chat::get_chat_states(GetChatStatesRequest),
    "/chatmesh.chat.v1.ChatInternalService/ModerateRetractChat" => chat::moderate_retract_chat(ModerateRetractChatRequest),
    "/chatmesh.feed.v1.FeedService/CreateStatus" => feed::create_status(CreateStatusRequest),
    "/chatmesh.feed.v1.FeedService/GetStatus" => feed::get_status(GetStatusRequest),
    "/chatmesh.feed.v1.FeedService/DeleteStatus" => feed::delete_status(DeleteStatusRequest),
    "/chatmesh.feed.v1.FeedService/ListUserStatuses" => feed::list_user_statuses(ListUserStatusesRequest),
    "/chatmesh.feed.v1.FeedService/ListStatusReplies" => feed::list_status_replies(ListStatusRepliesRequest),
    "/chatmesh.feed.v1.FeedService/ListTagStatuses" => feed::list_tag_statuses(ListTagStatusesRequest),
    "/chatmesh.feed.v1.FeedService/RepostStatus" => feed::repost_status(RepostStatusRequest),
    "/chatmesh.feed.v1.FeedService/UndoRepost" => feed::undo_repost(UndoRepostRequest),
    "/chatmesh.feed.v1.FeedService/ListStatusReposts" => feed::list_status_reposts(ListStatusRepostsRequest),
    "/chatmesh.feed.v1.FeedService/LikeStatus" => feed::like_status(LikeStatusRequest),
    "/chatmesh.feed.v1.FeedService/UnlikeStatus" => feed::unlike_status(UnlikeStatusRequest),
    "/chatmesh.feed.v1.FeedService/ListStatusLikes" => feed::list_status_likes(ListStatusLikesRequest),
    "/chatmesh.feed.v1.FeedService/ListUserLikes" => feed::list_user_likes(ListUserLikesRequest),
    "/chatmesh.feed.v1.FeedService/ListTrends" => feed::list_trends(ListTrendsRequest),
    "/chatmesh.feed.v1.FeedService/ListHomeTimeline" => feed::list_home_timeline(ListHomeTimelineRequest),
    "/chatmesh.feed.v1.FeedService/ListScheduledStatuses" => feed::list_scheduled_statuses(ListScheduledStatusesRequest),
    "/chatmesh.feed.v1.FeedInternalService/GetStatusStates" => feed::get_status_states(GetStatusStatesRequest),
    "/chatmesh.feed.v1.FeedInternalService/ModerateDeleteStatus" => feed::moderate_delete_status(ModerateDeleteStatusRequest),
    "/chatmesh.dispatcher.v1.DispatcherService/GetPresence" => dispatcher::get_presence(GetPresenceRequest),
    "/chatmesh.dispatcher.v1.DispatcherService/SendTyping" => dispatcher::send_typing(SendTypingRequest),
    "/chatmesh.dispatcher.v1.DispatcherService/Subscribe" => dispatcher::subscribe(SubscribeRequest),
    "/chatmesh.dispatcher.v1.DispatcherInternalService/Publish" => dispatcher::publish(PublishRequest),
    "/chatmesh.dispatcher.v1.DispatcherInternalService/Attach" => dispatcher::attach(AttachRequest),
    "/chatmesh.dispatcher.v1.DispatcherInternalService/DisconnectUser" => dispatcher::disconnect_user(DisconnectUserRequest),
    "/chatmesh.dispatcher.v1.DispatcherInternalService/GetPresences" => dispatcher::get_presences(GetPresencesRequest),
    "/chatmesh.dispatcher.v1.DispatcherInternalService/PublishToUsers" => dispatcher::publish_to_users(PublishToUsersRequest),
}

/// The gRPC paths of the contracts' RPCs that [`RPCS`] does not list, or lists with another
/// request message: empty when the table is complete.
pub fn unlisted_rpcs() -> Vec<String> {
    let pool = chatmesh_api::descriptor_pool();
    let mut missing = Vec::new();
    for service in pool.services().filter(|s| s.full_name().starts_with("chatmesh.")) {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            match Rpc::by_path(&path) {
                Some(rpc) if rpc.request == method.input().full_name() => {}
                Some(rpc) => {
                    missing.push(format!("{path} is listed with {}, not {}", rpc.request, method.input().full_name()))
                }
                None => missing.push(format!("{path} is not listed")),
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_contracts_is_listed_with_its_request() {
        assert_eq!(unlisted_rpcs(), Vec::<String>::new());
        assert_eq!(RPCS.len(), chatmesh_api::descriptor_pool().services().map(|s| s.methods().len()).sum::<usize>());
    }

    #[test]
    fn a_check_decodes_then_validates() {
        let rpc = Rpc::by_path("/chatmesh.user.v1.UserService/GetUser").expect("listed");
        assert!((rpc.check)(&[0xff]).is_none(), "garbage does not decode");
        let valid = user::GetUserRequest { user_id: "42".into() }.encode_to_vec();
        assert!(matches!((rpc.check)(&valid), Some(Ok(()))));
        let refused = (rpc.check)(&[]).expect("an empty message decodes").expect_err("user_id is required");
        assert!(refused.message().starts_with("user_id: "), "{}", refused.message());
    }
}
