#!/usr/bin/env bash
# Benchmark: what credits and quotas cost a statement. The gateway's point query and an
# aggregate over ROWS rows in a production environment (every statement estimated from the
# cached table statistics, checked against the organization's monthly credits, metered into the
# usage ledger), one client at a time through the wire (pgbench, simple protocol) and HTTP
# (POST /v1/query, wrk), with the result cache off. The baseline is the same statements on a
# build from before metering existed (BASELINE_BIN), measured first in the same run. Target: ≤
# 1.03× the baseline.
#
#   git worktree add /tmp/pre-billing d5ba25d && (cd /tmp/pre-billing &&
#     cargo build --release -q -p enclave && cp "$CARGO_TARGET_DIR/release/enclave" /tmp/enclave-pre-billing)
#   BASELINE_BIN=/tmp/enclave-pre-billing bench/billing.sh
#   ROWS=1000000 ITERATIONS=2000 DURATION=10s bench/billing.sh
#
# (Building the baseline in the same CARGO_TARGET_DIR reuses the compiled DuckDB; copy its binary
# out, then touch this checkout's sources: cargo judges a workspace crate fresh by modification
# times against its last build from either checkout.) Without BASELINE_BIN only this build is
# measured. It measures; it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${ROWS:-1000000}"
ITERATIONS="${ITERATIONS:-2000}"
CONNECTIONS=1
. bench/lib.sh

need_wrk
need_pgbench

point="SELECT id, g, v FROM t WHERE id = 4242"
aggregate="SELECT g, sum(v) AS total, count(*) AS n FROM t GROUP BY g ORDER BY g"

# measure LABEL: starts the server ($ENCLAVE_BIN, or this checkout's), loads the table into
# production, prints `label|point wire|point http|aggregate wire|aggregate http` (ms).
measure() {
  start_gateway_server
  local prod key
  prod="$(curl -sf "$url/v1/organizations/$org/environments/production" -H "authorization: Bearer $token" | json '["env_id"]')"
  key="$(curl -sf "$url/v1/environments/$prod/api-keys" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"name":"bench","scopes":["developer"],"role":"developer"}' | json '["key"]')"
  curl -sf -X PATCH "$url/v1/environments/$prod" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"settings":{"query_timeout_ms":600000,"cache_enabled":false}}' >/dev/null
  # A limit, so that every statement is checked against it (a build without billing answers 404).
  curl -s -o /dev/null -X PATCH "$url/v1/organizations/$org/billing/quotas" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"monthly_credit_limit":1000000000000}'
  python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1]}))' \
    "CREATE TABLE t AS SELECT range AS id, range % 100 AS g, (range * 7 % 1000) / 10.0 AS v FROM range($ROWS)" |
    curl -sf "$url/v1/query" -H "x-api-key: $key" -H 'content-type: application/json' --data-binary @- >/dev/null
  wire_ms() {
    printf '%s;\n' "$1" >"$data/query.sql"
    PGPASSWORD="$key" pgbench -n -M simple -c 1 -t "$ITERATIONS" -f "$data/query.sql" \
      -h 127.0.0.1 -p "$gw_port" -U bench production 2>/dev/null |
      awk -F'= ' '/latency average/ {split($2, a, " "); print a[1]}'
  }
  http_ms() {
    local body script
    body="$(python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1]}))' "$1")"
    script="$(mktemp --suffix=.lua)"
    printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-API-Key"] = "%s"\nwrk.body = [==[%s]==]\n' "$key" "$body" >"$script"
    wrk -t1 -c1 -d"$DURATION" --latency -s "$script" "$url/v1/query" |
      awk '$1=="Latency" && $2 ~ /^[0-9]/ {print $2; exit}' | ms
    rm -f "$script"
  }
  printf '%s|%s|%s|%s|%s\n' "$1" "$(wire_ms "$point")" "$(http_ms "$point")" "$(wire_ms "$aggregate")" "$(http_ms "$aggregate")"
  kill "$server"; wait "$server" 2>/dev/null || true; rm -rf "$data"; trap - EXIT
}

rows=()
if [ -n "${BASELINE_BIN:-}" ]; then
  rows+=("$(ENCLAVE_BIN="$BASELINE_BIN" measure "before metering (baseline)")")
fi
rows+=("$(measure "metering and quotas on")")

echo
echo "production environment, $ROWS rows, one client, result cache off · $(nproc) cores · release builds"
echo
echo "| build | point wire ms | point HTTP ms | aggregate wire ms | aggregate HTTP ms |"
echo "|---|---:|---:|---:|---:|"
for r in "${rows[@]}"; do
  IFS='|' read -r name pw ph aw ah <<<"$r"
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$pw" "$ph" "$aw" "$ah"
done
if [ "${#rows[@]}" = 2 ]; then
  IFS='|' read -r _ bpw bph baw bah <<<"${rows[0]}"
  IFS='|' read -r _ pw ph aw ah <<<"${rows[1]}"
  ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.3f}×')" "$1" "$2"; }
  printf '| **ratio** | %s | %s | %s | %s |\n' "$(ratio "$pw" "$bpw")" "$(ratio "$ph" "$bph")" "$(ratio "$aw" "$baw")" "$(ratio "$ah" "$bah")"
fi
