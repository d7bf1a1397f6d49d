#!/usr/bin/env bash
# Benchmark: listing environments, first page and a page deep in the list, in an organization
# with 100 and one with 100 000 environments — keyset pagination means a deep page costs
# what a first page costs.
#
#   bench/env-list.sh                        # SQLite (the embedded default)
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/enclave_bench bench/env-list.sh
#
# Builds the release binary, starts it on a random port with a fresh data directory (or a
# fresh PostgreSQL database), seeds the two organizations straight into the database
# (bench/seed_environments.py), and drives each page with wrk (DURATION, CONNECTIONS,
# THREADS). Prints a table: requests/second, p50 and p99 latency, and p50 relative to the
# first page at 100 environments. /health is the baseline of the same run. It measures; it
# asserts nothing. Target (issue #3): deep page at 100 000 within 1.5x of first page at 100.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-16}"
LARGE="${LARGE:-100000}"
. bench/lib.sh

need_wrk
start_server ENCLAVE_DEFAULT_TIER=enterprise ENCLAVE_RATE_LIMITS="enterprise=1000000000/100000000"
login
new_org() {
  curl -sf "$url/v1/organizations" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"name\":\"$1\",\"slug\":\"$1\",\"billing_email\":\"b@example.com\",\"default_environments\":false}" | json '["org_id"]'
}
cursor() { python3 -c "import base64,sys; print(base64.urlsafe_b64encode(f'{sys.argv[1]}:{sys.argv[2]}'.encode()).decode().rstrip('='))" "$1" "$2"; }

small="$(new_org small)"; large="$(new_org large)"
deep_small=49; deep_large=$((LARGE - 101))
echo "seeding 100 and $LARGE environments..." >&2
id_small="$(PRINT_POSITIONS=$deep_small python3 bench/seed_environments.py "$db_url" "$small" 100 | cut -d' ' -f2)"
id_large="$(PRINT_POSITIONS=$deep_large python3 bench/seed_environments.py "$db_url" "$large" "$LARGE" | cut -d' ' -f2)"
total="$(curl -sf "$url/v1/organizations/$large/environments?limit=1" -H "authorization: Bearer $token" | json '["pagination"]["total"]')"
[ "$total" = "$LARGE" ] || { echo "seeding failed: total $total"; exit 1; }

list="/v1/organizations"
results=()
results+=("$(run 'GET /health (baseline)' /health)")
results+=("$(run '100 envs: first page' "$list/$small/environments?limit=50" auth)")
results+=("$(run '100 envs: page after #49' "$list/$small/environments?limit=50&cursor=$(cursor $deep_small "$id_small")" auth)")
results+=("$(run "$LARGE envs: first page" "$list/$large/environments?limit=50" auth)")
results+=("$(run "$LARGE envs: page after #$deep_large" "$list/$large/environments?limit=50&cursor=$(cursor $deep_large "$id_large")" auth)")

storage="$(curl -sf "$url/ready" | json '["storage"]')"
echo
echo "storage: $storage · limit=50 · wrk -t$THREADS -c$CONNECTIONS -d$DURATION · $(nproc) cores · release build"
echo
printf '| %-34s | %8s | %8s | %8s | %16s |\n' page 'req/s' 'p50 ms' 'p99 ms' 'p50 vs 100/first'
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..18})"
base="$(printf '%s' "${results[1]}" | cut -d'|' -f3)"
for r in "${results[@]}"; do
  IFS='|' read -r name rps p50 p99 <<<"$r"
  printf '| %-34s | %8s | %8s | %8s | %15sx |\n' "$name" "$rps" "$p50" "$p99" "$(awk -v a="$p50" -v b="$base" 'BEGIN {printf "%.2f", a/b}')"
done
