#!/usr/bin/env bash
# Benchmark: the MCP door. The `query` tool's point query over streamable HTTP (`POST /mcp`,
# a `tools/call` in an initialized MCP session) next to the same statement through
# `POST /v1/query`, with the same API key, one client at a time, in this run: /v1/query is
# measured before and after the tool and the tool's latency is compared with the mean of
# both. Target: the tool ≤ 1.2 × /v1/query (p50).
#
#   bench/mcp.sh
#   ROWS=1000000 DURATION=10s bench/mcp.sh
#
# It measures; it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${ROWS:-100000}"
CONNECTIONS=1
. bench/lib.sh

need_wrk
start_gateway_server
dev="$(curl -sf "$url/v1/organizations/$org/environments/development" -H "authorization: Bearer $token" | json '["env_id"]')"
key="$(curl -sf "$url/v1/environments/$dev/api-keys" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name":"bench","scopes":["developer"],"role":"developer"}' | json '["key"]')"
curl -sf -X PATCH "$url/v1/environments/$dev" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"settings":{"cache_enabled":false}}' >/dev/null
echo "loading $ROWS rows..." >&2
curl -sf "$url/v1/query" -H "x-api-key: $key" -H 'content-type: application/json' \
  -d "{\"sql\":\"CREATE TABLE t AS SELECT range AS id, range % 100 AS g, (range * 7 % 1000) / 10.0 AS v FROM range($ROWS)\"}" >/dev/null

point="SELECT id, g, v FROM t WHERE id = 4242"

# An MCP session, as an agent host opens one: initialize, then `initialized`.
init='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}'
session="$(curl -sf -D - -o /dev/null "$url/mcp" -H "x-api-key: $key" -H 'content-type: application/json' \
  -H 'accept: application/json, text/event-stream' -d "$init" | awk -F': ' 'tolower($1)=="mcp-session-id" {print $2}' | tr -d '\r')"
[ -n "$session" ] || { echo "no MCP session" >&2; exit 1; }
curl -sf -o /dev/null "$url/mcp" -H "x-api-key: $key" -H 'content-type: application/json' \
  -H 'accept: application/json, text/event-stream' -H "mcp-session-id: $session" -H 'mcp-protocol-version: 2025-06-18' \
  -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
call="$(python3 -c 'import json,sys; print(json.dumps({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query","arguments":{"sql":sys.argv[1]}}}))' "$point")"
# One call checked before measuring: the tool answers with the row.
curl -sf "$url/mcp" -H "x-api-key: $key" -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
  -H "mcp-session-id: $session" -H 'mcp-protocol-version: 2025-06-18' -d "$call" | grep -q '"row_count":1' ||
  { echo "the query tool did not answer with one row" >&2; exit 1; }

query_run() { run "$1" /v1/query "X-API-Key: $key" "$(python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1]}))' "$point")"; }
mcp_run() {
  local script; script="$(mktemp --suffix=.lua)"
  printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Accept"] = "application/json, text/event-stream"\nwrk.headers["X-API-Key"] = "%s"\nwrk.headers["Mcp-Session-Id"] = "%s"\nwrk.headers["Mcp-Protocol-Version"] = "2025-06-18"\nwrk.body = [==[%s]==]\n' "$key" "$session" "$call" >"$script"
  local report; report="$(wrk -t1 -c1 -d"$DURATION" --latency -s "$script" "$url/mcp")"
  local errors; errors="$(printf '%s\n' "$report" | awk '/Non-2xx/ {print $NF}')"
  [ -n "$errors" ] && { echo "mcp: $errors non-2xx responses" >&2; exit 1; }
  printf '%s|%s|%s|%s\n' "$1" "$(printf '%s\n' "$report" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')" \
    "$(printf '%s\n' "$report" | awk '$1=="50%" {print $2}' | ms)" "$(printf '%s\n' "$report" | awk '$1=="99%" {print $2}' | ms)"
}

# A short warm-up of both paths, then the measured runs.
DURATION=2s query_run warmup >/dev/null
DURATION=2s mcp_run warmup >/dev/null
before="$(query_run 'POST /v1/query')"
tool="$(mcp_run 'POST /mcp tools/call query')"
after="$(query_run 'POST /v1/query, again')"

p50() { printf '%s' "$1" | cut -d'|' -f3; }
base="$(awk -v a="$(p50 "$before")" -v b="$(p50 "$after")" 'BEGIN {printf "%.4f", (a + b) / 2}')"
printf '\nMCP query tool vs POST /v1/query: point query on %s rows, 1 client, %s each (target ≤ 1.2 ×)\n\n' "$ROWS" "$DURATION"
printf '| path | req/s | p50 ms | p99 ms | p50 vs /v1/query |\n|---|---:|---:|---:|---:|\n'
for line in "$before" "$tool" "$after"; do
  IFS='|' read -r name rps p50v p99v <<<"$line"
  printf '| %s | %s | %s | %s | %s × |\n' "$name" "$rps" "$p50v" "$p99v" "$(awk -v v="$p50v" -v b="$base" 'BEGIN {printf "%.2f", v / b}')"
done
