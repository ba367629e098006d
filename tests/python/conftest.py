"""Starts the real chatmesh binary and generates Python gRPC stubs from proto/ at test time."""

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The running server's addresses, filled by the `server` fixture.
ADDRS: dict = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary() -> pathlib.Path:
    if os.environ.get("CHATMESH_BIN"):
        return pathlib.Path(os.environ["CHATMESH_BIN"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "chatmesh"


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
def server():
    """A `chatmesh up` on free ports and a temporary data dir; yields its gRPC address (and
    `server_addrs` gives all three)."""
    binary = _binary()
    assert binary.exists(), f"build the binary first (cargo build): {binary}"
    data = tempfile.mkdtemp(prefix="chatmesh-data-")
    grpc_addr = f"127.0.0.1:{_free_port()}"
    rest_addr = f"127.0.0.1:{_free_port()}"
    ADDRS.update(grpc=grpc_addr, rest=rest_addr)
    args = [
        str(binary), "--data-dir", data, "up",
        "--grpc-listen", grpc_addr,
        "--rest-listen", rest_addr,
        "--ws-listen", f"127.0.0.1:{_free_port()}",
        "--metrics-listen", "127.0.0.1:0",
    ]
    # why: fuzzing creates many accounts (the OWASP hashing defaults have their own unit test),
    # and the contract test sends thousands of calls and logins from one account (the limits have
    # their own tests). The largest upload is a setting, not a contract rule: at the int64
    # maximum it binds nothing, leaving the annotated rules alone.
    env = dict(
        os.environ,
        CHATMESH_PASSWORD__MEMORY_KIB="4096",
        CHATMESH_PASSWORD__ITERATIONS="1",
        CHATMESH_LIMITS__USER_CALLS_PER_SEC="100000",
        CHATMESH_LIMITS__USER_CALLS_BURST="100000",
        CHATMESH_LIMITS__LOGIN_PER_MINUTE_PER_ACCOUNT="100000",
        CHATMESH_MEDIA__MAX_BYTES=str(2**63 - 1),
    )
    # why: a file, not a pipe: an unread pipe fills up and the server blocks writing its log.
    log = open(pathlib.Path(data) / "server.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    channel = grpc.insecure_channel(grpc_addr)
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
    except grpc.FutureTimeoutError:
        proc.kill()
        raise RuntimeError((pathlib.Path(data) / "server.log").read_text())
    yield grpc_addr
    proc.terminate()
    assert proc.wait(timeout=15) == 0, "chatmesh drains and exits cleanly on SIGTERM"
    log.close()
    channel.close()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def rest_url(server):
    """The REST gateway's base URL of the running server."""
    return f"http://{ADDRS['rest']}"
