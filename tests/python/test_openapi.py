"""The REST gateway's OpenAPI 3.1 document: valid, as strict as the server, and honoured by it.
schemathesis generates requests from it (every check, every phase, the stateful one included)
against a server of its own, and checks every answer against it."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from conftest import UNTHROTTLED
from conftest import rest_call as _call
from openapi_spec_validator import validate

HERE = pathlib.Path(__file__).resolve().parent
# Warnings that mean schemathesis could not exercise an operation: the document promised data
# the server refuses, or no id the run created ever reached it.
FATAL_WARNINGS = ("missing_test_data", "validation_mismatch", "Schema validation mismatch", "Missing test data")




def _sign_up(url):
    """A new account's (email, password, login answer)."""
    email, password = f"st-{uuid.uuid4().hex[:8]}@example.com", "correct horse"
    status, _ = _call(f"{url}/api/v1/users", {"email": email, "password": password, "name": "Fuzz"})
    assert status == 200
    status, login = _call(f"{url}/api/v1/auth/login", {"email": email, "password": password})
    assert status == 200, login
    return email, password, login


def _put(url, content_type, data):
    request = urllib.request.Request(url, data=data, method="PUT", headers={"content-type": content_type})
    with urllib.request.urlopen(request) as response:
        return response.status


def _seed(url, token):
    """Ids no generated request can make, as schemathesis dictionaries: a finished upload (its
    bytes go to a presigned URL, outside the API), a member other than the caller in the
    caller's channel (a create gives the channel, another the user; no one answer gives both),
    one kept for the role changes and many for the removals, users who asked the caller to
    be friends or are its friends (only they can ask), users the caller asked (to cancel), and
    another user's statuses to like, repost and read."""
    _, _, other = _sign_up(url)
    # why: each phase removes members again; enough of them that every phase removes some
    removable = [_sign_up(url)[2]["user"]["userId"] for _ in range(24)]
    status, created = _call(
        f"{url}/api/v1/channels",
        {"kind": "CHANNEL_KIND_GROUP", "name": "seeded", "memberIds": [other["user"]["userId"], *removable]},
        token,
    )
    assert status == 200, created
    channel = created["channel"]["channelId"]
    upload = {"channelId": channel, "fileName": "seed.txt", "contentType": "text/plain", "sizeBytes": 4}
    status, upload = _call(f"{url}/api/v1/uploads", upload, token)
    assert status == 200, upload
    assert _put(upload["uploadUrl"], "text/plain", b"seed") == 200
    status, chat = _call(f"{url}/api/v1/chats", {"channelId": channel, "attachmentUploadIds": [upload["uploadId"]]}, token)
    assert status == 200, chat
    # why: only another user can ask the caller to be friends; some of them are accepted now
    requesters, friends = [], []
    for i in range(48):
        _, _, asker = _sign_up(url)
        asker_id = asker["user"]["userId"]
        status, _ = _call(f"{url}/api/v1/me/friend/request", {"userId": _me(url, token)}, asker["tokens"]["accessToken"])
        assert status == 200
        if i % 2:
            assert _call(f"{url}/api/v1/me/friend/add", {"userId": asker_id}, token)[0] == 200
            friends.append(asker_id)
        else:
            requesters.append(asker_id)
    # why: the caller's own pending requests, for the route that cancels one
    requested = []
    for _ in range(24):
        asked = _sign_up(url)[2]["user"]["userId"]
        assert _call(f"{url}/api/v1/me/friend/request", {"userId": asked}, token)[0] == 200
        requested.append(asked)
    # why: statuses are another user's, so the caller can like and repost them but not delete them
    other_token = other["tokens"]["accessToken"]
    statuses = []
    for i in range(24):
        status, created = _call(f"{url}/api/v1/statuses", {"text": f"seeded #{i}"}, other_token)
        assert status == 200, created
        statuses.append(created["status"]["statusId"])
    return {
        "seeded-statuses": statuses,
        "requested-users": requested,
        "finished-uploads": [upload["uploadId"]],
        "seeded-channels": [channel],
        "seeded-members": [other["user"]["userId"]],
        "removable-members": removable,
        "friend-requesters": requesters,
        "seeded-friends": friends,
    }


def _me(url, token):
    status, me = _call(f"{url}/api/v1/users/me", token=token)
    assert status == 200, me
    return me["user"]["userId"]


def _config_with(dictionaries, into):
    """schemathesis.toml, plus the seeded ids as dictionaries the operations taking them draw
    from half the time."""
    bindings = {
        "ChatService_GetAttachmentUrl": {"path.upload_id": "finished-uploads"},
        "ChannelService_CreateMember": {"body.channelId": "seeded-channels"},
        "ChannelService_DeleteMember": {"path.channel_id": "seeded-channels", "path.user_id": "removable-members"},
        "ChannelService_UpdateMember": {"path.channel_id": "seeded-channels", "path.user_id": "seeded-members"},
        "UserService_AcceptFriendRequest": {"body.userId": "friend-requesters"},
        "UserService_DeclineFriendRequest": {"body.userId": "friend-requesters"},
        "UserService_RemoveFriend": {"body.userId": "seeded-friends"},
        "UserService_CancelFriendRequest": {"body.userId": "requested-users"},
        "UserService_CreateReport": {"body.userId": "seeded-members"},
        **{
            f"FeedService_{name}": {"path.status_id": "seeded-statuses"}
            for name in [
                "GetStatus", "LikeStatus", "UnlikeStatus", "RepostStatus", "UndoRepost",
                "ListStatusLikes", "ListStatusReposts", "ListStatusReplies",
            ]
        },
    }
    text = (HERE / "schemathesis.toml").read_text()
    for name, values in dictionaries.items():
        text += f"\n[dictionaries.{name}]\nvalues = {json.dumps(values)}\n"
    for operation, parameters in bindings.items():
        bound = ", ".join(f'"{p}" = {{ dictionary = "{d}", probability = 0.5 }}' for p, d in parameters.items())
        text += f'\n[[operations]]\ninclude-operation-id = "{operation}"\nparameters = {{ {bound} }}\n'
    config = into / "schemathesis.toml"
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def fuzz_url(chatmesh_up):
    """A `chatmesh up` for schemathesis alone: its access tokens last a day and its per-user
    limits are out of reach, so thousands of calls under one token are neither expired nor
    throttled (throttling has its own tests)."""
    settings = dict(UNTHROTTLED, CHATMESH_AUTH__ACCESS_TTL_SECS="86400")
    chatmesh = chatmesh_up("chatmesh-fuzz-", settings)
    yield f"http://{chatmesh.addrs['rest']}"
    chatmesh.stop()


def test_the_document_is_valid_openapi_3_1(rest_url):
    with urllib.request.urlopen(f"{rest_url}/openapi.json") as response:
        spec = json.load(response)
    assert spec["openapi"] == "3.1.0"
    validate(spec)
    assert "/api/v1/chats/remove-multiple" in spec["paths"]
    assert "requestBody" in spec["paths"]["/api/v1/chats/remove-multiple"]["delete"]


def test_the_document_states_what_the_server_requires(rest_url):
    _, spec = _call(f"{rest_url}/openapi.json")
    create = spec["paths"]["/api/v1/users"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create["required"] == ["email", "password", "name"]
    status, refused = _call(f"{rest_url}/api/v1/users", {})
    assert status == 400 and refused["message"].startswith("email"), refused
    for operation in ("get", "patch", "delete"):
        path = spec["paths"]["/api/v1/channels/{channel_id}"][operation]
        assert path["parameters"][0]["schema"]["pattern"] == "^[1-9][0-9]{0,18}$"
    links = spec["paths"]["/api/v1/channels"]["post"]["responses"]["200"]["links"]
    assert {"GetChannel", "UpdateChannel", "DeleteChannel", "CreateMember", "ListMembers", "CreateChat"} <= set(links)


def test_swagger_ui_is_served_without_network(rest_url):
    with urllib.request.urlopen(f"{rest_url}/docs/") as response:
        page = response.read().decode()
    assert "swagger" in page.lower()


def test_logging_out_ends_the_session_for_its_access_and_refresh_tokens(fuzz_url):
    _, _, login = _sign_up(fuzz_url)
    tokens = login["tokens"]
    assert _call(f"{fuzz_url}/api/v1/users/me", token=tokens["accessToken"])[0] == 200
    assert _call(f"{fuzz_url}/api/v1/auth/logout", {}, token=tokens["accessToken"])[0] == 200
    assert _call(f"{fuzz_url}/api/v1/users/me", token=tokens["accessToken"])[0] == 401
    assert _call(f"{fuzz_url}/api/v1/auth/refresh", {"refreshToken": tokens["refreshToken"]})[0] == 401


def test_logging_out_everywhere_ends_every_session(fuzz_url):
    email, password, first = _sign_up(fuzz_url)
    _, second = _call(f"{fuzz_url}/api/v1/auth/login", {"email": email, "password": password})
    status, ended = _call(f"{fuzz_url}/api/v1/auth/logout-all", {}, token=first["tokens"]["accessToken"])
    assert status == 200 and ended["endedSessions"] == 2, ended
    for login in (first, second):
        assert _call(f"{fuzz_url}/api/v1/users/me", token=login["tokens"]["accessToken"])[0] == 401
        assert _call(f"{fuzz_url}/api/v1/auth/refresh", {"refreshToken": login["tokens"]["refreshToken"]})[0] == 401


def test_schemathesis_finds_nothing_with_every_check_and_phase(fuzz_url, tmp_path):
    _, _, login = _sign_up(fuzz_url)
    token = login["tokens"]["accessToken"]
    config = _config_with(_seed(fuzz_url, token), tmp_path)
    binary = shutil.which("schemathesis") or str(pathlib.Path(sys.executable).parent / "schemathesis")
    started = time.monotonic()
    result = subprocess.run(
        [
            binary, "--config-file", str(config), "run", f"{fuzz_url}/openapi.json",
            "-H", f"Authorization: Bearer {token}",
            "--checks", "all",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", "100",
            # why: logging out would end the session the run authenticates with (tested above);
            # the timeline stream never ends on its own (tests/tests/timeline_stream.rs drives it)
            "--exclude-path-regex", "^/api/v1/(auth/logout|timeline/stream)",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=tmp_path,
        env=dict(os.environ, SCHEMATHESIS_HOOKS=str(HERE / "schemathesis_hooks.py")),
    )
    print(result.stdout)
    print(result.stderr[-4000:])
    print(f"schemathesis took {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, "schemathesis found failures (see output above)"
    warned = [w for w in FATAL_WARNINGS if w in result.stdout]
    assert not warned, f"schemathesis could not exercise some operations: {warned}"
