#!/usr/bin/env bash
# Instructions per gateway statement: 200 sequential point queries (`POST /v1/query`, one
# keep-alive connection) in a production environment, counted by callgrind (instruction counts
# do not depend on what else the machine is doing, so two builds compare where wall-clock runs
# of bench/billing.sh cannot tell them apart).
#
#   bench/query-instructions.sh                                          # the release build
#   BASELINE_BIN=/tmp/enclave-pre-billing bench/query-instructions.sh    # next to another build
#
# SQLite store, embedded engine, a ROWS-row table, result cache off; caches and statistics warmed
# by 20 queries first; startup is not counted (instrumentation is on around the counted queries
# only, every thread included: the query audit's and the meter's background work too).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/enclave-target}"
QUERIES="${QUERIES:-200}"
ROWS="${ROWS:-10000}"
. bench/callgrind.sh
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }

count() {
  callgrind_total "$1" "$QUERIES" "$ROWS" <<'PY'
import http.client, json, subprocess, sys, urllib.parse
url, password, pid, queries, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
def call(method, path, body=None, token=None, key=None, ok=True):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    if key:
        headers["x-api-key"] = key
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    assert not ok or r.status < 300, (r.status, data[:200])
    return json.loads(data) if data else None
token = call("POST", "/v1/auth/login", {"email": "bench@example.com", "password": password})["token"]
org = call("GET", "/v1/auth/me", token=token)["org"]["org_id"]
env = call("GET", f"/v1/organizations/{org}/environments/production", token=token)["env_id"]
call("PATCH", f"/v1/environments/{env}", {"settings": {"cache_enabled": False, "query_timeout_ms": 600000}}, token)
# A limit, so that every statement is checked against it (a build without billing answers 404).
call("PATCH", f"/v1/organizations/{org}/billing/quotas", {"monthly_credit_limit": 1000000000000}, token, ok=False)
key = call("POST", f"/v1/environments/{env}/api-keys",
           {"name": "bench", "scopes": ["developer"], "role": "developer"}, token)["key"]
call("POST", "/v1/query", {"sql": f"CREATE TABLE t AS SELECT range AS id, range % 100 AS g FROM range({rows})"}, key=key)
point = {"sql": "SELECT id, g FROM t WHERE id = 4242"}
for _ in range(20):
    call("POST", "/v1/query", point, key=key)
subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
for _ in range(queries):
    call("POST", "/v1/query", point, key=key)
subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
PY
}

bin="${ENCLAVE_BIN:-$CARGO_TARGET_DIR/release/enclave}"
[ -n "${ENCLAVE_BIN:-}" ] || cargo build --release -q -p enclave
echo "| build | instructions for $QUERIES point queries | per query |"
echo "|---|---:|---:|"
for pair in ${BASELINE_BIN:+"baseline=$BASELINE_BIN"} "this=$bin"; do
  total="$(count "${pair#*=}")"
  printf '| %s | %s | %s |\n' "${pair%%=*}" "$total" "$((total / QUERIES))"
done
