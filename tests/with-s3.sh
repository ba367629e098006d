#!/usr/bin/env bash
# Runs a command with an S3 server on loopback (moto, from the test venv) for the S3 media
# tests: exports CHATMESH_TEST_S3_ENDPOINT and dummy AWS credentials, stops the server after.
# moto listens on a port it picks itself and prints it once it is bound.
set -euo pipefail
venv="${CHATMESH_CACHE:-$HOME/.cache/chatmesh}/venv"
log=$(mktemp)
launcher='
import threading
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
threading.Event().wait()
'
exec {moto_out}< <(exec "$venv/bin/python" -c "$launcher" 2>"$log")
moto=$!
trap 'kill $moto 2>/dev/null || true; rm -f "$log"' EXIT
# why: the timeout only guards against a launcher that hangs before it is bound
read -r -t 60 port <&"$moto_out" || { echo "with-s3: moto did not start"; cat "$log"; exit 1; }
export CHATMESH_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
"$@"
