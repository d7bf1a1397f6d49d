#!/usr/bin/env bash
# Benchmark: evaluating an environment's policies (`POST …/policies/evaluate`: load every
# policy, compile — row filters parsed with sqlparser — and evaluate) next to listing the
# same policies (`GET …/policies`, the same rows read and serialised) in the same run.
#
#   bench/policies.sh                        # SQLite (the embedded default)
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/enclave_bench bench/policies.sh
#   POLICIES=100 bench/policies.sh           # policies per kind (default 20)
#
# Seeds POLICIES masking, POLICIES row-level security and POLICIES ABAC policies through the
# API, then drives each endpoint with wrk (DURATION, CONNECTIONS, THREADS). Prints a table:
# requests/second, p50 and p99, and p50 relative to the list. It measures; it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-16}"
POLICIES="${POLICIES:-20}"
. bench/lib.sh

need_wrk
start_server ENCLAVE_DEFAULT_TIER=enterprise ENCLAVE_RATE_LIMITS="enterprise=1000000000/100000000"
login
org="$(curl -sf "$url/v1/auth/me" -H "authorization: Bearer $token" | json '["org"]["org_id"]')"
env="$(curl -sf "$url/v1/organizations/$org/environments/staging" -H "authorization: Bearer $token" | json '["env_id"]')"
post() { curl -sf "$url/v1/environments/$env/$1" -H "authorization: Bearer $token" -H 'content-type: application/json' -d "$2" >/dev/null; }
echo "seeding $((3 * POLICIES)) policies..." >&2
for i in $(seq "$POLICIES"); do
  post policies "{\"name\":\"mask-$i\",\"type\":\"column_masking\",\"rules\":[{\"table\":\"t$((i % 5))\",\"column\":\"c$i\",\"function\":\"partial\",\"visible_chars\":4,\"exempt_roles\":[\"admin\"]}]}"
  post policies "{\"name\":\"rls-$i\",\"type\":\"row_level_security\",\"rules\":[{\"table\":\"t$((i % 5))\",\"filter\":\"(department = {department} OR owner = {user_id}) AND region IN ('eu', 'us') AND lower(status) <> 'archived'\"}]}"
  post abac-policies "{\"name\":\"abac-$i\",\"effect\":\"deny\",\"actions\":[\"export\"],\"resources\":[\"table:t$((i % 5))\"],\"conditions\":{\"principal.role\":{\"not_in\":[\"owner\"]},\"request.ip\":{\"in\":[\"203.0.113.0/24\"]},\"time\":{\"days\":[\"sat\",\"sun\"],\"start\":\"00:00\",\"end\":\"24:00\",\"timezone\":\"Europe/Berlin\"}}}"
done
body='{"principal":{"role":"analyst","attributes":{"department":"sales"}},"action":"query","resource":{"tables":["t0","t1","t2"]},"context":{"ip":"10.1.2.3"}}'

results=()
results+=("$(run "GET policies (list, limit 100)" "/v1/environments/$env/policies?limit=100" auth)")
results+=("$(run "POST evaluate, 3 tables" "/v1/environments/$env/policies/evaluate" auth "$body")")

storage="$(curl -sf "$url/ready" | json '["storage"]')"
echo
echo "storage: $storage · $((3 * POLICIES)) policies · wrk -t$THREADS -c$CONNECTIONS -d$DURATION · $(nproc) cores · release build"
echo
printf '| %-32s | %8s | %8s | %8s | %12s |\n' request 'req/s' 'p50 ms' 'p99 ms' 'p50 vs list'
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..34})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..14})"
base="$(printf '%s' "${results[0]}" | cut -d'|' -f3)"
for r in "${results[@]}"; do
  IFS='|' read -r name rps p50 p99 <<<"$r"
  printf '| %-32s | %8s | %8s | %8s | %11sx |\n' "$name" "$rps" "$p50" "$p99" "$(awk -v a="$p50" -v b="$base" 'BEGIN {printf "%.2f", a/b}')"
done
