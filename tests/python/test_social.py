"""The social graph through stubs generated from proto/ and through REST: the seed's friend flow
(seed 003: POST /me/friend/request, GET /me/friends/request, POST /me/friend/add), follows and
their counters, a block's refusal with its reason, user search, and deleting then restoring an
account."""

import urllib.parse
import uuid

import grpc
import pytest
from conftest import rest_call
from google.protobuf import timestamp_pb2
from rpc_status import RPC

PASSWORD = "correct horse"

def _error_info(err: grpc.RpcError):
    """The ErrorInfo of a refusal (its `reason`, `domain` and `metadata`), or None."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in RPC["Status"].FromString(value).details:
                if detail.type_url.endswith("/google.rpc.ErrorInfo"):
                    return RPC["ErrorInfo"].FromString(detail.value)
    return None


def _refused(call, code, reason):
    """Runs `call`, which must be refused with `code` and the ErrorInfo `reason`; returns the
    ErrorInfo."""
    with pytest.raises(grpc.RpcError) as err:
        call()
    info = _error_info(err.value)
    assert (err.value.code(), info and info.reason) == (code, reason), err.value.details()
    return info


def _rest(url, method="GET", body=None, token=None):
    """(status, JSON answer) of one REST call."""
    return rest_call(url, body, token, method)


def _users(server):
    from chatmesh.user.v1 import user_service_pb2_grpc

    return user_service_pb2_grpc.UserServiceStub(grpc.insecure_channel(server))


def _auth(token):
    return [("authorization", f"Bearer {token}")]


class Person:
    """A new account, signed in over gRPC: `id`, `email`, `username`, `token`."""

    def __init__(self, users, username="", name="Py"):
        from chatmesh.user.v1 import user_service_pb2 as pb

        self.email = f"social-{uuid.uuid4().hex[:10]}@example.com"
        self.username = username
        request = pb.CreateUserRequest(email=self.email, password=PASSWORD, name=name, username=username)
        self.id = users.CreateUser(request).user.user_id
        self.token = users.Login(pb.LoginRequest(email=self.email, password=PASSWORD)).tokens.access_token


class RestPerson:
    """A new account, signed up and in over REST: `id`, `token`."""

    def __init__(self, rest_url):
        email = f"social-{uuid.uuid4().hex[:10]}@example.com"
        sign_up = {"email": email, "password": PASSWORD, "name": "Py"}
        status, created = _rest(f"{rest_url}/api/v1/users", "POST", sign_up)
        assert status == 200, created
        self.id = created["user"]["userId"]
        status, login = _rest(f"{rest_url}/api/v1/auth/login", "POST", {"email": email, "password": PASSWORD})
        assert status == 200, login
        self.token = login["tokens"]["accessToken"]


def test_the_seed_friend_flow_over_rest_makes_friends_with_a_direct_channel(stubs, rest_url):
    ada, bob = RestPerson(rest_url), RestPerson(rest_url)
    status, sent = _rest(f"{rest_url}/api/v1/me/friend/request", "POST", {"userId": bob.id}, ada.token)
    assert status == 200, sent
    assert sent["relation"]["friendRequestSent"] is True, sent

    status, pending = _rest(f"{rest_url}/api/v1/me/friends/request", token=bob.token)
    assert status == 200, pending
    assert [(r["user"]["userId"], r["direction"]) for r in pending["requests"]] == [
        (ada.id, "FRIEND_REQUEST_DIRECTION_INCOMING")
    ], pending

    status, added = _rest(f"{rest_url}/api/v1/me/friend/add", "POST", {"userId": ada.id}, bob.token)
    assert status == 200, added
    assert added["friend"]["user"]["userId"] == ada.id, added
    direct = added["friend"]["directChannelId"]
    assert direct, added

    for me, other in [(ada, bob), (bob, ada)]:
        status, friends = _rest(f"{rest_url}/api/v1/me/friends", token=me.token)
        assert status == 200, friends
        assert [(f["user"]["userId"], f["directChannelId"]) for f in friends["friends"]] == [(other.id, direct)]
        status, pending = _rest(f"{rest_url}/api/v1/me/friends/request", token=me.token)
        assert not pending.get("requests"), f"the request is gone: {pending}"
    status, channel = _rest(f"{rest_url}/api/v1/channels/{direct}", token=ada.token)
    assert (status, channel["channel"]["kind"]) == (200, "CHANNEL_KIND_DIRECT"), channel

    # accepting again: the request is gone
    status, again = _rest(f"{rest_url}/api/v1/me/friend/add", "POST", {"userId": ada.id}, bob.token)
    assert (status, again["details"][0]["reason"]) == (404, "FRIEND_REQUEST_NOT_FOUND"), again


def test_follow_and_unfollow_move_both_counters_and_a_repeat_changes_nothing(stubs, server):
    from chatmesh.user.v1 import user_service_pb2 as pb

    users = _users(server)
    ada, bob = Person(users), Person(users)

    def counts():
        following = users.GetMe(pb.GetMeRequest(), metadata=_auth(ada.token)).user.total_following
        seen = users.GetUser(pb.GetUserRequest(user_id=bob.id), metadata=_auth(ada.token))
        listed = users.ListFollowers(pb.ListFollowersRequest(user_id=bob.id), metadata=_auth(ada.token))
        return following, seen.user.total_followers, listed.total_size, seen.relation.following

    assert counts() == (0, 0, 0, False)
    for _ in range(2):
        followed = users.FollowUser(pb.FollowUserRequest(user_id=bob.id), metadata=_auth(ada.token))
        assert followed.relation.following
        assert counts() == (1, 1, 1, True)
    listed = users.ListFollowers(pb.ListFollowersRequest(user_id=bob.id), metadata=_auth(bob.token))
    assert [u.user_id for u in listed.users] == [ada.id]
    for _ in range(2):
        unfollowed = users.UnfollowUser(pb.UnfollowUserRequest(user_id=bob.id), metadata=_auth(ada.token))
        assert not unfollowed.relation.following
        assert counts() == (0, 0, 0, False)


def test_a_follow_of_someone_who_blocked_you_is_permission_denied_user_blocked(stubs, server):
    from chatmesh.user.v1 import user_service_pb2 as pb

    users = _users(server)
    ada, bob = Person(users), Person(users)
    users.BlockUser(pb.BlockUserRequest(user_id=ada.id), metadata=_auth(bob.token))
    follow = pb.FollowUserRequest(user_id=bob.id)
    info = _refused(
        lambda: users.FollowUser(follow, metadata=_auth(ada.token)), grpc.StatusCode.PERMISSION_DENIED, "USER_BLOCKED"
    )
    assert (info.domain, info.metadata["user_id"]) == ("chatmesh", bob.id)
    seen = users.GetUser(pb.GetUserRequest(user_id=bob.id), metadata=_auth(bob.token))
    assert seen.user.total_followers == 0, "nothing changed"


def test_user_search_over_rest_ranks_exact_username_then_username_prefix_then_name(stubs, server, rest_url):
    users = _users(server)
    base = f"py{uuid.uuid4().hex[:8]}"
    # created in the reverse of their rank, so neither age nor key order explains the answer
    exact = Person(users, username=base, name="Someone")
    longer = Person(users, username=f"{base}x", name="Someone Else")
    by_name = Person(users, name=f"Ann {base.capitalize()}")
    viewer = Person(users)

    def search(query):
        url = f"{rest_url}/api/v1/search/users?{urllib.parse.urlencode({'query': query})}"
        status, found = _rest(url, token=viewer.token)
        assert status == 200, found
        return [u["userId"] for u in found.get("users", [])]

    assert search(base) == [exact.id, longer.id, by_name.id]
    assert search(f"@{base.upper()}") == [exact.id, longer.id, by_name.id], "with @, in any case"
    assert search(f"{base}X") == [longer.id]
    assert search(f"ann {base}") == [by_name.id], "a whole name"
    assert search(f"{base}nobody") == []


def test_a_deleted_account_signs_in_again_only_with_restore(stubs, server):
    from chatmesh.user.v1 import user_pb2
    from chatmesh.user.v1 import user_service_pb2 as pb

    users = _users(server)
    ada = Person(users)
    deleted = users.DeleteMe(pb.DeleteMeRequest(current_password=PASSWORD), metadata=_auth(ada.token))
    assert deleted.purge_at.seconds > 0

    login = pb.LoginRequest(email=ada.email, password=PASSWORD)
    info = _refused(lambda: users.Login(login), grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_DELETED")
    purge_at = timestamp_pb2.Timestamp()
    purge_at.FromJsonString(info.metadata["purge_at"])
    assert purge_at.ToMilliseconds() == deleted.purge_at.ToMilliseconds(), "the refusal says when it will be erased"

    restored = users.Login(pb.LoginRequest(email=ada.email, password=PASSWORD, restore=True))
    assert restored.user.user_id == ada.id
    me = users.GetMe(pb.GetMeRequest(), metadata=_auth(restored.tokens.access_token))
    assert (me.user.user_id, me.user.state) == (ada.id, user_pb2.USER_STATE_ACTIVE)
    users.Login(login)  # and a plain login works again
