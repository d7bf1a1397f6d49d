#!/usr/bin/env bash
# Instructions per audited write: 200 sequential `PATCH /v1/environments/{id}` on one keep-alive
# connection, counted by callgrind (instruction counts do not depend on what else the machine
# is doing, so two builds compare where wrk's req/s cannot tell them apart).
#
#   bench/write-instructions.sh                                   # the release build
#   BASELINE_BIN=/tmp/prev-enclave-release bench/write-instructions.sh   # next to another build
#
# SQLite store; caches warmed by 20 writes first; startup is not counted (instrumentation is
# switched on around the 200 writes only).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/enclave-target}"
WRITES="${WRITES:-200}"
. bench/callgrind.sh
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }

count() {
  callgrind_total "$1" "$WRITES" <<'PY'
import http.client, json, subprocess, sys, urllib.parse
url, password, pid, writes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
def call(method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    assert r.status < 300, (r.status, data[:200])
    return json.loads(data) if data else None
token = call("POST", "/v1/auth/login", {"email": "bench@example.com", "password": password})["token"]
org = call("GET", "/v1/auth/me", token=token)["org"]["org_id"]
env = call("GET", f"/v1/organizations/{org}/environments", token=token)["data"][0]["env_id"]
for i in range(20):
    call("PATCH", f"/v1/environments/{env}", {"description": f"warm-up {i}"}, token)
subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
for i in range(writes):
    call("PATCH", f"/v1/environments/{env}", {"description": f"revision {i}"}, token)
subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
PY
}

bin="${ENCLAVE_BIN:-$CARGO_TARGET_DIR/release/enclave}"
[ -n "${ENCLAVE_BIN:-}" ] || cargo build --release -q -p enclave
echo "| build | instructions for $WRITES audited PATCHes | per PATCH |"
echo "|---|---:|---:|"
for pair in ${BASELINE_BIN:+"baseline=$BASELINE_BIN"} "this=$bin"; do
  total="$(count "${pair#*=}")"
  printf '| %s | %s | %s |\n' "${pair%%=*}" "$total" "$((total / WRITES))"
done
