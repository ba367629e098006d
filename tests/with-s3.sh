#!/usr/bin/env bash
# Runs a command with an S3 server on loopback (moto, from the test venv) for the S3 media
# tests: exports CHATMESH_TEST_S3_ENDPOINT and dummy AWS credentials, stops the server after.
set -euo pipefail
venv="${CHATMESH_CACHE:-$HOME/.cache/chatmesh}/venv"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "with-s3: moto did not start"; cat "$log"; exit 1; }
export CHATMESH_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
"$@"
