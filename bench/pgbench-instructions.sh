#!/usr/bin/env bash
# Instructions per pgbench select-only transaction through the gateway, on the managed
# PostgreSQL engine: TRANSACTIONS of `pgbench -S -M simple` (one client) counted by callgrind in
# the server process (PostgreSQL and pgbench are other processes and are not counted). Noise does
# not move the count, so two builds compare where bench/gateway.sh's wall-clock figures cannot
# tell them apart; KEEP_PROFILE=dir keeps the callgrind output for callgrind_annotate.
#
#   bench/pgbench-instructions.sh
#   BASELINE_BIN=/tmp/enclave-before bench/pgbench-instructions.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432 bench/pgbench-instructions.sh
#
# SQLite store; an environment on the managed engine (PG_URL's server, whose roles must be let in
# from 127.0.0.1 without a password, as on the project's machines), pgbench's tables at scale 1
# owned by its role, result cache off; 200 transactions first warm the caches.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/enclave-target}"
TRANSACTIONS="${TRANSACTIONS:-2000}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
export ENCLAVE_ENGINE_POSTGRES_URL="$PG_URL/postgres"
. bench/callgrind.sh
. bench/lib.sh
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
need_pgbench

count() {
  callgrind_total "$1" "$TRANSACTIONS" <<'PY'
import http.client, json, subprocess, sys, urllib.parse
url, password, pid, transactions = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
def call(method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    assert r.status < 300, (r.status, data[:300])
    return json.loads(data) if data else None
token = call("POST", "/v1/auth/login", {"email": "bench@example.com", "password": password})["token"]
org = call("GET", "/v1/auth/me", token=token)["org"]["org_id"]
env = call("POST", f"/v1/organizations/{org}/environments",
           {"name": "Warehouse", "settings": {"engine": "postgres", "cache_enabled": False,
                                              "query_timeout_ms": 600000}}, token)
env_id, conn = env["env_id"], env["connection"]
role = "enclave_" + env_id.lower()
try:
    subprocess.run(["pgbench", "-q", "-i", "-s", "1", "-h", "127.0.0.1", "-U", role, role],
                   check=True, capture_output=True)
    key = call("POST", f"/v1/environments/{env_id}/api-keys",
               {"name": "bench", "scopes": ["developer"], "role": "developer"}, token)["key"]
    def pgbench(n):
        subprocess.run(["pgbench", "-n", "-S", "-M", "simple", "-c", "1", "-t", str(n),
                        "-h", conn["host"], "-p", str(conn["port"]), "-U", "bench", conn["database"]],
                       check=True, capture_output=True, env={"PGPASSWORD": key, "PATH": "/usr/bin:/bin"})
    pgbench(200)
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    pgbench(transactions)
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
finally:
    call("DELETE", f"/v1/environments/{env_id}", token=token)
PY
}

bin="${ENCLAVE_BIN:-$CARGO_TARGET_DIR/release/enclave}"
[ -n "${ENCLAVE_BIN:-}" ] || cargo build --release -q -p enclave
echo "| build | instructions for $TRANSACTIONS pgbench -S transactions | per transaction |"
echo "|---|---:|---:|"
for pair in ${BASELINE_BIN:+"baseline=$BASELINE_BIN"} "this=$bin"; do
  total="$(count "${pair#*=}")"
  printf '| %s | %s | %s |\n' "${pair%%=*}" "$total" "$((total / TRANSACTIONS))"
done
