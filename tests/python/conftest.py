"""Starts the real chatmesh binary and generates Python gRPC stubs from proto/ at test time."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The running server's addresses, filled by the `server` fixture.
ADDRS: dict = {}
# How long a start or a stop may take before it is declared hung (a guard, not a limit tested).
HUNG_SECS = 60

# Settings for a server that takes thousands of calls, logins and sign-ups from one client: the
# per-user, login and sign-up limits out of reach, and cheap password hashing (the limits and
# the OWASP hashing defaults have tests of their own).
UNTHROTTLED = dict(
    CHATMESH_PASSWORD__MEMORY_KIB="4096",
    CHATMESH_PASSWORD__ITERATIONS="1",
    CHATMESH_LIMITS__USER_CALLS_PER_SEC="100000",
    CHATMESH_LIMITS__USER_CALLS_BURST="100000",
    CHATMESH_LIMITS__LOGIN_PER_MINUTE_PER_ACCOUNT="100000",
    CHATMESH_LIMITS__LOGIN_PER_MINUTE_PER_SOURCE="100000",
    CHATMESH_LIMITS__SIGNUPS_PER_HOUR_PER_SOURCE="100000",
    CHATMESH_LIMITS__FOLLOWS_PER_HOUR_PER_USER="100000",
    CHATMESH_LIMITS__FRIEND_REQUESTS_PER_HOUR_PER_USER="100000",
    CHATMESH_LIMITS__REPORTS_PER_HOUR_PER_USER="100000",
)


def _binary() -> pathlib.Path:
    if os.environ.get("CHATMESH_BIN"):
        return pathlib.Path(os.environ["CHATMESH_BIN"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "chatmesh"


class Chatmesh:
    """A `chatmesh up` on a temporary data dir, every listener on a port it picks itself: its
    addresses (`grpc`, `rest`, `ws`, `metrics`, as "host:port") come from its ready file."""

    def __init__(self, prefix: str, settings: dict):
        binary = _binary()
        assert binary.exists(), f"build the binary first (cargo build -p chatmesh-cli): {binary}"
        self.data = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
        ready = self.data / "ready.json"
        args = [str(binary), "--data-dir", str(self.data), "up", "--ready-file", str(ready)]
        for listener in ("grpc", "rest", "ws", "metrics"):
            args += [f"--{listener}-listen", "127.0.0.1:0"]
        # why: a file, not a pipe: an unread pipe fills up and the server blocks writing its log.
        self.log = open(self.data / "server.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ, **settings))
        # the file appears, complete (written aside, then renamed), once every listener is bound
        deadline = time.monotonic() + HUNG_SECS
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.log.close()
                raise RuntimeError((self.data / "server.log").read_text())
            time.sleep(0.05)
        self.addrs = json.loads(ready.read_text())

    def stop(self):
        """SIGTERM; the server must drain and exit cleanly."""
        self.proc.terminate()
        assert self.proc.wait(timeout=HUNG_SECS) == 0, "chatmesh drains and exits cleanly on SIGTERM"
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(scope="session")
def stubs():
    """Generates chatmesh's Python stubs from proto/ into a temporary package root."""
    from grpc_tools import protoc
    import grpc_tools

    out = pathlib.Path(tempfile.mkdtemp(prefix="chatmesh-py-"))
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main(
        ["protoc", f"-I{ROOT / 'proto'}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    )
    assert code == 0, "protoc failed"
    sys.path.insert(0, str(out))
    yield out
    sys.path.remove(str(out))
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session")
def chatmesh_up():
    """`Chatmesh`, for a module that needs a server of its own."""
    return Chatmesh


@pytest.fixture(scope="session")
def server():
    """A `chatmesh up` (see `Chatmesh`); yields its gRPC address (`rest_url` gives the REST one)."""
    # why: fuzzing creates many accounts and the contract test sends thousands of calls and
    # logins from one account. The largest upload is a setting, not a contract rule: at the
    # int64 maximum it binds nothing, leaving the annotated rules alone.
    settings = dict(
        UNTHROTTLED,
        CHATMESH_MEDIA__MAX_BYTES=str(2**63 - 1),
        # why: so are the accepted media types; these take every sample of the contract's shape
        CHATMESH_MEDIA__CONTENT_TYPES=json.dumps(
            ["image/png", "image/svg+xml", "image/vnd.microsoft.icon", "video/mp4", "audio/mpeg"]
            + ["application/pdf", "text/plain", "image/" + "a" * 127]
        ),
    )
    chatmesh = Chatmesh("chatmesh-data-", settings)
    ADDRS.update(grpc=chatmesh.addrs["grpc"], rest=chatmesh.addrs["rest"])
    yield chatmesh.addrs["grpc"]
    chatmesh.stop()


@pytest.fixture(scope="session")
def rest_url(server):
    """The REST gateway's base URL of the running server."""
    return f"http://{ADDRS['rest']}"


def rest_call(url, body=None, token=None, method=None):
    """(status, JSON answer) of one REST call: a POST when there is a body, else a GET, unless
    `method` says otherwise."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method or ("GET" if body is None else "POST"))
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
