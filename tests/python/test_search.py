"""Search through stubs generated from proto/: an English word and a CJK phrase, with snippets."""

import time
import uuid

import grpc


def _signed_in(channel):
    from chatmesh.user.v1 import user_service_pb2 as pb
    from chatmesh.user.v1 import user_service_pb2_grpc

    users = user_service_pb2_grpc.UserServiceStub(channel)
    email = f"search-{uuid.uuid4().hex[:8]}@example.com"
    users.CreateUser(pb.CreateUserRequest(email=email, password="correct horse", name="Py"))
    login = users.Login(pb.LoginRequest(email=email, password="correct horse"))
    return [("authorization", f"Bearer {login.tokens.access_token}")]


def _search_until_found(chats, request, auth, count):
    """Searches until `count` hits appear (the index trails the store by a commit interval)."""
    deadline = time.monotonic() + 15
    while True:
        found = chats.SearchChats(request, metadata=auth)
        if len(found.hits) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_words_and_cjk_phrases_are_found_with_snippets(stubs, server):
    from chatmesh.channel.v1 import channel_pb2, channel_service_pb2, channel_service_pb2_grpc
    from chatmesh.chat.v1 import chat_service_pb2 as pb
    from chatmesh.chat.v1 import chat_service_pb2_grpc

    channel = grpc.insecure_channel(server)
    auth = _signed_in(channel)
    channels = channel_service_pb2_grpc.ChannelServiceStub(channel)
    created = channels.CreateChannel(
        channel_service_pb2.CreateChannelRequest(kind=channel_pb2.CHANNEL_KIND_GROUP, name="py search"), metadata=auth
    )
    channel_id = created.channel.channel_id
    chats = chat_service_pb2_grpc.ChatServiceStub(channel)
    word = f"pyword{uuid.uuid4().hex[:6]}"
    for text in [f"the {word} meetings", "私は猫が好きです", f"unrelated {uuid.uuid4().hex}"]:
        chats.CreateChat(pb.CreateChatRequest(channel_id=channel_id, text=text), metadata=auth)

    found = _search_until_found(chats, pb.SearchChatsRequest(query=f"{word} meeting"), auth, 1)
    assert [h.chat.text for h in found.hits] == [f"the {word} meetings"]
    assert found.hits[0].snippet == f"the <em>{word}</em> <em>meetings</em>"

    found = _search_until_found(chats, pb.SearchChatsRequest(query="猫が好き", channel_id=channel_id), auth, 1)
    assert [h.snippet for h in found.hits] == ["私は<em>猫が好き</em>です"]


def test_a_search_without_words_names_the_field(stubs, server):
    from chatmesh.chat.v1 import chat_service_pb2 as pb
    from chatmesh.chat.v1 import chat_service_pb2_grpc

    channel = grpc.insecure_channel(server)
    auth = _signed_in(channel)
    chats = chat_service_pb2_grpc.ChatServiceStub(channel)
    try:
        chats.SearchChats(pb.SearchChatsRequest(query="  "), metadata=auth)
        raise AssertionError("an empty query is refused")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith("query")
