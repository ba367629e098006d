//! Any bytes as the request of any RPC: decoded as its protobuf message (as tonic would) and
//! validated by the function the service runs first. The first byte picks the RPC; every RPC
//! of the contracts is listed (checked at the first run).
#![no_main]

use chatmesh_api::{channel::v1 as channel, chat::v1 as chat, dispatcher::v1 as dispatcher, user::v1 as user};
use chatmesh_wire as wire;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// `(gRPC path, decode-and-validate)` for every RPC.
macro_rules! rpcs {
    ($($path:literal => $module:ident :: $check:ident ( $request:ty )),* $(,)?) => {
        const RPCS: &[(&str, fn(&[u8]))] = &[$(
            ($path, |bytes| {
                if let Ok(request) = <$request>::decode(bytes) {
                    // a refusal must name what it refuses
                    if let Err(status) = wire::$module::$check(&request) {
                        assert!(!status.message().is_empty(), "{}: an empty refusal", $path);
                    }
                }
            }),
        )*];
    };
}

rpcs! {
    "/chatmesh.user.v1.UserService/CreateUser" => user::create_user(user::CreateUserRequest),
    "/chatmesh.user.v1.UserService/Login" => user::login(user::LoginRequest),
    "/chatmesh.user.v1.UserService/RefreshToken" => user::refresh_token(user::RefreshTokenRequest),
    "/chatmesh.user.v1.UserService/Logout" => user::logout(user::LogoutRequest),
    "/chatmesh.user.v1.UserService/LogoutAll" => user::logout_all(user::LogoutAllRequest),
    "/chatmesh.user.v1.UserService/GetMe" => user::get_me(user::GetMeRequest),
    "/chatmesh.user.v1.UserService/GetUser" => user::get_user(user::GetUserRequest),
    "/chatmesh.user.v1.UserService/UpdateMe" => user::update_me(user::UpdateMeRequest),
    "/chatmesh.user.v1.UserInternalService/BatchGetUsers" => user::batch_get_users(user::BatchGetUsersRequest),
    "/chatmesh.user.v1.UserInternalService/ResolveUsernames" => user::resolve_usernames(user::ResolveUsernamesRequest),
    "/chatmesh.channel.v1.ChannelService/CreateChannel" => channel::create_channel(channel::CreateChannelRequest),
    "/chatmesh.channel.v1.ChannelService/GetChannel" => channel::get_channel(channel::GetChannelRequest),
    "/chatmesh.channel.v1.ChannelService/ListMyChannels" => channel::list_my_channels(channel::ListMyChannelsRequest),
    "/chatmesh.channel.v1.ChannelService/UpdateChannel" => channel::update_channel(channel::UpdateChannelRequest),
    "/chatmesh.channel.v1.ChannelService/DeleteChannel" => channel::delete_channel(channel::DeleteChannelRequest),
    "/chatmesh.channel.v1.ChannelService/CreateMember" => channel::create_member(channel::CreateMemberRequest),
    "/chatmesh.channel.v1.ChannelService/DeleteMember" => channel::delete_member(channel::DeleteMemberRequest),
    "/chatmesh.channel.v1.ChannelService/ListMembers" => channel::list_members(channel::ListMembersRequest),
    "/chatmesh.channel.v1.ChannelService/UpdateMember" => channel::update_member(channel::UpdateMemberRequest),
    "/chatmesh.channel.v1.ChannelService/CloseChannel" => channel::close_channel(channel::CloseChannelRequest),
    "/chatmesh.channel.v1.ChannelService/ReopenChannel" => channel::reopen_channel(channel::ReopenChannelRequest),
    "/chatmesh.channel.v1.ChannelInternalService/CheckMembership" => channel::check_membership(channel::CheckMembershipRequest),
    "/chatmesh.channel.v1.ChannelInternalService/ListUserChannelIds" => channel::list_user_channel_ids(channel::ListUserChannelIdsRequest),
    "/chatmesh.channel.v1.ChannelInternalService/RecordActivity" => channel::record_activity(channel::RecordActivityRequest),
    "/chatmesh.chat.v1.ChatService/CreateChat" => chat::create_chat(chat::CreateChatRequest),
    "/chatmesh.chat.v1.ChatService/GetChat" => chat::get_chat(chat::GetChatRequest),
    "/chatmesh.chat.v1.ChatService/ListChats" => chat::list_chats(chat::ListChatsRequest),
    "/chatmesh.chat.v1.ChatService/EditChat" => chat::edit_chat(chat::EditChatRequest),
    "/chatmesh.chat.v1.ChatService/RemoveChats" => chat::remove_chats(chat::RemoveChatsRequest),
    "/chatmesh.chat.v1.ChatService/RetractChats" => chat::retract_chats(chat::RetractChatsRequest),
    "/chatmesh.chat.v1.ChatService/SearchChats" => chat::search_chats(chat::SearchChatsRequest),
    "/chatmesh.chat.v1.ChatService/AckChats" => chat::ack_chats(chat::AckChatsRequest),
    "/chatmesh.chat.v1.ChatService/GetUnreadCounts" => chat::get_unread_counts(chat::GetUnreadCountsRequest),
    "/chatmesh.chat.v1.ChatService/ListEvents" => chat::list_events(chat::ListEventsRequest),
    "/chatmesh.chat.v1.ChatService/CreateUpload" => chat::create_upload(chat::CreateUploadRequest),
    "/chatmesh.chat.v1.ChatService/GetAttachmentUrl" => chat::get_attachment_url(chat::GetAttachmentUrlRequest),
    "/chatmesh.chat.v1.ChatInternalService/AppendChannelEvents" => chat::append_channel_events(chat::AppendChannelEventsRequest),
    "/chatmesh.chat.v1.ChatInternalService/GetSearchStatus" => chat::get_search_status(chat::GetSearchStatusRequest),
    "/chatmesh.chat.v1.ChatInternalService/GetChatStates" => chat::get_chat_states(chat::GetChatStatesRequest),
    "/chatmesh.dispatcher.v1.DispatcherService/GetPresence" => dispatcher::get_presence(dispatcher::GetPresenceRequest),
    "/chatmesh.dispatcher.v1.DispatcherService/SendTyping" => dispatcher::send_typing(dispatcher::SendTypingRequest),
    "/chatmesh.dispatcher.v1.DispatcherService/Subscribe" => dispatcher::subscribe(dispatcher::SubscribeRequest),
    "/chatmesh.dispatcher.v1.DispatcherInternalService/Publish" => dispatcher::publish(dispatcher::PublishRequest),
    "/chatmesh.dispatcher.v1.DispatcherInternalService/Attach" => dispatcher::attach(dispatcher::AttachRequest),
    "/chatmesh.dispatcher.v1.DispatcherInternalService/DisconnectUser" => dispatcher::disconnect_user(dispatcher::DisconnectUserRequest),
}

/// Every RPC of the contracts has its entry above (a new RPC without a validator fails here).
fn every_rpc_is_listed() {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        let pool = chatmesh_api::descriptor_pool();
        for service in pool.services().filter(|s| s.full_name().starts_with("chatmesh.")) {
            for method in service.methods() {
                let path = format!("/{}/{}", service.full_name(), method.name());
                assert!(RPCS.iter().any(|(listed, _)| *listed == path), "{path} has no validator in the fuzz target");
            }
        }
    });
}

fuzz_target!(|data: &[u8]| {
    every_rpc_is_listed();
    let Some((&selector, bytes)) = data.split_first() else { return };
    let (_, check) = RPCS[usize::from(selector) % RPCS.len()];
    check(bytes);
});
