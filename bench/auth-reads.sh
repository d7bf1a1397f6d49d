#!/usr/bin/env bash
# Benchmark: JWT-authenticated reads next to /health, on one server, in one run.
#
#   bench/auth-reads.sh                      # SQLite (the embedded default)
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/enclave_bench bench/auth-reads.sh
#
# Builds the release binary, starts it on a random port with a fresh data directory, logs
# in, and drives each endpoint with wrk (DURATION, CONNECTIONS, THREADS). Prints a table:
# requests/second, p50 and p99 latency, and throughput relative to /health. It measures;
# it asserts nothing. Target (issue #2): authenticated reads at >= 50 % of /health.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-32}"
. bench/lib.sh

need_wrk
start_server ENCLAVE_DEFAULT_TIER=enterprise ENCLAVE_RATE_LIMITS="enterprise=1000000000/100000000"
login
org="$(curl -sf "$url/v1/auth/me" -H "authorization: Bearer $token" | json '["org"]["org_id"]')"

results=()
results+=("$(run 'GET /health' /health)")
results+=("$(run 'GET /v1/auth/me (JWT)' /v1/auth/me auth)")
results+=("$(run 'GET /v1/organizations/{id} (JWT)' "/v1/organizations/$org" auth)")

storage="$(curl -sf "$url/ready" | json '["storage"]')"
echo
echo "storage: $storage · wrk -t$THREADS -c$CONNECTIONS -d$DURATION · $(nproc) cores · release build"
echo
printf '| %-34s | %10s | %8s | %8s | %9s |\n' endpoint 'req/s' 'p50 ms' 'p99 ms' 'vs health'
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..11})"
base="$(printf '%s' "${results[0]}" | cut -d'|' -f2)"
for r in "${results[@]}"; do
  IFS='|' read -r name rps p50 p99 <<<"$r"
  printf '| %-34s | %10s | %8s | %8s | %8s%% |\n' "$name" "$rps" "$p50" "$p99" "$(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.0f", 100*a/b}')"
done
