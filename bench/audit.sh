#!/usr/bin/env bash
# Benchmark: the audit trail's cost and reach. Audited writes (PATCH of an environment: the change,
# its hash-chained audit entry and the webhook fan-out query in one transaction) next to reads of
# the same environment; then, with the trail those writes left, verify and export of the whole
# chain, and a list page at its far end next to the first page.
#
#   bench/audit.sh                                                   # SQLite (the embedded default)
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/enclave_bench bench/audit.sh
#
# Release build, fresh data directory (or PostgreSQL database), wrk (DURATION, CONNECTIONS,
# THREADS). Prints tables; asserts nothing. The audit append cannot be switched off (no change
# may go unaudited), so a write's baselines are a read of the same resource in the same run and,
# with BASELINE_BIN=<an enclave binary built before the audit trail existed>, the same write on
# that build, measured first in the same run:
#
#   git worktree add /tmp/pre-audit 19dd7f4 && (cd /tmp/pre-audit &&
#     CARGO_TARGET_DIR=/tmp/pre-target cargo build --release -p enclave)
#   BASELINE_BIN=/tmp/pre-target/release/enclave bench/audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-16}"
. bench/lib.sh

need_wrk
LIMITS=(ENCLAVE_DEFAULT_TIER=enterprise ENCLAVE_RATE_LIMITS="enterprise=1000000000/100000000")
first_env() {
  org="$(curl -sf "$url/v1/auth/me" -H "authorization: Bearer $token" | json '["org"]["org_id"]')"
  env_id="$(curl -sf "$url/v1/organizations/$org/environments" -H "authorization: Bearer $token" | json '["data"][0]["env_id"]')"
}
patch_script() {
lua="$(mktemp)"
cat >"$lua" <<LUA
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"description":"revision ' .. n .. '"}')
end
LUA
}
patch() {
  local report; report="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$lua" "$url/v1/environments/$env_id")"
  local errors; errors="$(printf '%s\n' "$report" | awk '/Non-2xx/ {print $NF}')"
  [ -n "$errors" ] && { echo "PATCH: $errors non-2xx responses" >&2; exit 1; }
  printf '%s|%s|%s|%s\n' "$1" \
    "$(printf '%s\n' "$report" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')" \
    "$(printf '%s\n' "$report" | awk '$1=="50%" {print $2}' | ms)" \
    "$(printf '%s\n' "$report" | awk '$1=="99%" {print $2}' | ms)"
}

results=()
if [ -n "${BASELINE_BIN:-}" ]; then
  ENCLAVE_BIN="$BASELINE_BIN" start_server "${LIMITS[@]}"
  login; first_env; patch_script
  results+=("$(patch "PATCH /v1/environments/{id}, build without audit (baseline)")")
  kill "$server"; wait "$server" 2>/dev/null || true; rm -rf "$data" "$lua"
fi
start_server "${LIMITS[@]}"
login; first_env; patch_script
results+=("$(run "GET /v1/environments/{id} (read)" "/v1/environments/$env_id" auth)")
results+=("$(patch "PATCH /v1/environments/{id} (audited write)")")
rm -f "$lua"

echo
echo "| request | req/s | p50 ms | p99 ms | req/s vs first row |"
echo "|---|---:|---:|---:|---:|"
base=""
for r in "${results[@]}"; do
  IFS='|' read -r name rps p50 p99 <<<"$r"
  [ -z "$base" ] && base="$rps"
  printf '| %s | %s | %s | %s | %s %% |\n' "$name" "$rps" "$p50" "$p99" "$(( rps * 100 / base ))"
done

audit="$url/v1/organizations/$org/audit/iam"
entries="$(curl -sf "$audit?limit=1" -H "authorization: Bearer $token" | json '["pagination"]["total"]')"
timed() { curl -sf -o "$2" -w '%{time_total}' "$1" -H "authorization: Bearer $token"; }
out="$(mktemp)"
first="$(timed "$audit?limit=50" "$out")"
oldest="$(python3 -c "import base64; print(base64.urlsafe_b64encode(b'51').decode().rstrip('='))")"
deep="$(timed "$audit?limit=50&cursor=$oldest" "$out")"
verify="$(timed "$audit/verify" "$out")"
valid="$(json '["chain_valid"]' <"$out")"
export_s="$(timed "$audit/export" "$out")"
lines="$(wc -l <"$out")"; bytes="$(wc -c <"$out")"
offline="$( { /usr/bin/time -f '%e' "$CARGO_TARGET_DIR/release/enclave" audit verify "$out" >/dev/null; } 2>&1 | tail -1)"
rm -f "$out"

echo
echo "| over the $entries-entry trail those writes left | seconds | entries/s |"
echo "|---|---:|---:|"
rate() { python3 -c "import sys; t=float(sys.argv[2]); print(f'{int(sys.argv[1])/t:,.0f}' if t > 0 else '-')" "$1" "$2"; }
printf '| list, first page (50, newest) | %s | |\n' "$first"
printf '| list, page at the oldest end (50) | %s | |\n' "$deep"
printf '| GET …/audit/iam/verify (chain_valid: %s) | %s | %s |\n' "$valid" "$verify" "$(rate "$entries" "$verify")"
printf '| GET …/audit/iam/export (%s lines, %s bytes) | %s | %s |\n' "$lines" "$bytes" "$export_s" "$(rate "$lines" "$export_s")"
printf '| enclave audit verify FILE (offline) | %s | %s |\n' "$offline" "$(rate "$lines" "$offline")"
