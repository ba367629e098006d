"""The REST gateway's OpenAPI 3.1 document: valid, and honoured by the running server
(schemathesis generates requests from it and checks every answer against it)."""

import json
import shutil
import subprocess
import sys
import urllib.request
import uuid

from openapi_spec_validator import validate


def _post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def test_the_document_is_valid_openapi_3_1(rest_url):
    with urllib.request.urlopen(f"{rest_url}/openapi.json") as response:
        spec = json.load(response)
    assert spec["openapi"] == "3.1.0"
    validate(spec)
    assert "/api/v1/chats/remove-multiple" in spec["paths"]
    assert "requestBody" in spec["paths"]["/api/v1/chats/remove-multiple"]["delete"]


def test_swagger_ui_is_served_without_network(rest_url):
    with urllib.request.urlopen(f"{rest_url}/docs/") as response:
        page = response.read().decode()
    assert "swagger" in page.lower()


def test_schemathesis_finds_no_server_errors_or_undocumented_answers(rest_url):
    email = f"st-{uuid.uuid4().hex[:8]}@example.com"
    _post(f"{rest_url}/api/v1/users", {"email": email, "password": "correct horse", "name": "Fuzz"})
    token = _post(f"{rest_url}/api/v1/auth/login", {"email": email, "password": "correct horse"})["tokens"]["accessToken"]
    _post_with_token = urllib.request.Request(
        f"{rest_url}/api/v1/channels",
        data=json.dumps({"kind": "CHANNEL_KIND_GROUP", "name": "fuzz"}).encode(),
        method="POST",
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    urllib.request.urlopen(_post_with_token).read()
    binary = shutil.which("schemathesis") or str(__import__("pathlib").Path(sys.executable).parent / "schemathesis")
    result = subprocess.run(
        [
            binary, "run", f"{rest_url}/openapi.json",
            "-H", f"Authorization: Bearer {token}",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases", "fuzzing",
            "--max-examples", "12",
            "--seed", "7",
            "--workers", "1",
            "--suppress-health-check", "all",
            # why: logging out would end the session the run authenticates with
            "--exclude-path-regex", "^/api/v1/auth/logout",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(result.stdout[-6000:])
    print(result.stderr[-2000:])
    assert result.returncode == 0, "schemathesis found failures (see output above)"
