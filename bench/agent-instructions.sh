#!/usr/bin/env bash
# What an agent id and a capability grant cost a statement: 200 sequential point queries
# (`POST /v1/query`, one keep-alive connection) with the same key, once without agent headers
# and once as an agent holding a grant that checks every rule (allowed and denied tables — the
# latter read through the policy catalog — rows, rate, daily credits, expiry), counted by
# callgrind in the same run (instruction counts do not depend on what else the machine does).
#
#   bench/agent-instructions.sh                   # the release build
#   ENCLAVE_BIN=/path/to/enclave bench/agent-instructions.sh
#
# SQLite store, embedded engine, a ROWS-row table, result cache off; caches warmed by 20 queries
# first; every thread's instructions while the counted queries run (the query audit's and the
# registry's background work included).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/enclave-target}"
QUERIES="${QUERIES:-200}"
ROWS="${ROWS:-10000}"
. bench/callgrind.sh
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }

count() {
  callgrind_total "$1" "$QUERIES" "$ROWS" "$2" <<'PY'
import http.client, json, subprocess, sys, urllib.parse
url, password, pid = sys.argv[1], sys.argv[2], sys.argv[3]
queries, rows, mode = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
def call(method, path, body=None, token=None, key=None, agent=False):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    if key:
        headers["x-api-key"] = key
    if agent:
        headers["x-agent-id"] = "bench-agent"
        headers["x-agent-framework"] = "bench"
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    assert r.status < 300, (r.status, data[:300])
    return json.loads(data) if data else None
token = call("POST", "/v1/auth/login", {"email": "bench@example.com", "password": password})["token"]
org = call("GET", "/v1/auth/me", token=token)["org"]["org_id"]
env = call("GET", f"/v1/organizations/{org}/environments/development", token=token)["env_id"]
call("PATCH", f"/v1/environments/{env}", {"settings": {"cache_enabled": False, "query_timeout_ms": 600000}}, token)
key = call("POST", f"/v1/environments/{env}/api-keys",
           {"name": "bench", "scopes": ["developer"], "role": "developer"}, token)["key"]
call("POST", "/v1/query", {"sql": f"CREATE TABLE t AS SELECT range AS id, range % 100 AS g FROM range({rows})"}, key=key)
call("POST", "/v1/query", {"sql": "CREATE TABLE salaries (id INTEGER, amount INTEGER)"}, key=key)
agent = mode == "agent"
if agent:
    call("POST", f"/v1/environments/{env}/agents/bench-agent/capabilities",
         {"allowed_actions": ["query"], "allowed_tables": ["t"], "denied_tables": ["salaries"],
          "max_rows_per_query": 1000, "max_queries_per_minute": 1000000,
          "max_credits_per_day": 1000000000, "expires_at": "2999-01-01T00:00:00Z"}, token)
point = {"sql": "SELECT id, g FROM t WHERE id = 4242"}
for _ in range(20):
    call("POST", "/v1/query", point, key=key, agent=agent)
subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
for _ in range(queries):
    call("POST", "/v1/query", point, key=key, agent=agent)
subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
PY
}

bin="${ENCLAVE_BIN:-$CARGO_TARGET_DIR/release/enclave}"
[ -n "${ENCLAVE_BIN:-}" ] || cargo build --release -q -p enclave
plain="$(count "$bin" plain)"
agent="$(count "$bin" agent)"
echo "| statement | instructions for $QUERIES point queries | per query |"
echo "|---|---:|---:|"
printf '| without an agent id | %s | %s |\n' "$plain" "$((plain / QUERIES))"
printf '| as an agent with a capability grant | %s | %s |\n' "$agent" "$((agent / QUERIES))"
python3 -c "import sys; print(f'\nratio: {int(sys.argv[2]) / int(sys.argv[1]):.3f} x (target <= 1.05 x)')" "$plain" "$agent"
