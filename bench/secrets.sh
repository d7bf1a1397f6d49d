#!/usr/bin/env bash
# Benchmark: secrets. (1) Reading 1 000 secrets with their values: a revealed page (decrypt
# 200 values) next to the same page without values, and the export of all 1 000 (one request)
# — wrk, requests/second and latency. (2) Bulk import of 10 000 keys in one request (parse,
# seal each value, one transaction with an audit entry per secret), next to the same import
# as a dry run (parse and plan, no writes) in the same run; then the same file again
# (everything unchanged: open 10 000 values and compare) and with overwrite (10 000 updates).
#
#   bench/secrets.sh                        # SQLite (the embedded default)
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/enclave_bench bench/secrets.sh
#   SECRETS=1000 IMPORT=10000 bench/secrets.sh
#
# It measures; it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-16}"
SECRETS="${SECRETS:-1000}"
IMPORT="${IMPORT:-10000}"
. bench/lib.sh

need_wrk
start_server ENCLAVE_DEFAULT_TIER=enterprise ENCLAVE_RATE_LIMITS="enterprise=1000000000/100000000"
login
org="$(curl -sf "$url/v1/auth/me" -H "authorization: Bearer $token" | json '["org"]["org_id"]')"
env_of() { curl -sf "$url/v1/organizations/$org/environments/$1" -H "authorization: Bearer $token" | json '["env_id"]'; }
staging="$(env_of staging)"
production="$(env_of production)"
dotenv() { # N PREFIX: N lines KEY_i="value" with 40-character values
  python3 -c "import sys,secrets; n,p=int(sys.argv[1]),sys.argv[2]; print(''.join(f'KEY_{i:05d}={p}{secrets.token_hex(16)}\n' for i in range(n)), end='')" "$1" "$2"
}
import() { # ENV QUERY FILE → seconds
  curl -sf -o /dev/null -w '%{time_total}' "$url/v1/environments/$1/secrets/import$2" \
    -H "authorization: Bearer $token" -H 'content-type: text/plain' --data-binary "@$3"
}
echo "seeding $SECRETS secrets..." >&2
dotenv "$SECRETS" seed >"$data/seed.env"
import "$staging" "" "$data/seed.env" >/dev/null

results=()
results+=("$(run "GET page of 200, values hidden" "/v1/environments/$staging/secrets?limit=200" auth)")
results+=("$(run "GET page of 200, reveal=true" "/v1/environments/$staging/secrets?limit=200&reveal=true" auth)")
results+=("$(run "GET export json ($SECRETS values)" "/v1/environments/$staging/secrets/export?format=json" auth)")

dotenv "$IMPORT" bulk >"$data/bulk.env"
dotenv "$IMPORT" next >"$data/next.env"
echo "importing $IMPORT keys..." >&2
dry="$(import "$production" "?dry_run=true" "$data/bulk.env")"
real="$(import "$production" "" "$data/bulk.env")"
same="$(import "$production" "" "$data/bulk.env")"
over="$(import "$production" "?overwrite=true" "$data/next.env")"
count="$(curl -sf "$url/v1/environments/$production/secrets?limit=1" -H "authorization: Bearer $token" | json '["pagination"]["total"]')"
[ "$count" = "$IMPORT" ] || { echo "expected $IMPORT secrets, found $count" >&2; exit 1; }

storage="$(curl -sf "$url/ready" | json '["storage"]')"
echo
echo "storage: $storage · $SECRETS secrets read · $IMPORT keys imported · wrk -t$THREADS -c$CONNECTIONS -d$DURATION · $(nproc) cores · release build"
echo
printf '| %-34s | %8s | %8s | %8s | %14s |\n' request 'req/s' 'p50 ms' 'p99 ms' 'p50 vs hidden'
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..16})"
base="$(printf '%s' "${results[0]}" | cut -d'|' -f3)"
for r in "${results[@]}"; do
  IFS='|' read -r name rps p50 p99 <<<"$r"
  printf '| %-34s | %8s | %8s | %8s | %13sx |\n' "$name" "$rps" "$p50" "$p99" "$(awk -v a="$p50" -v b="$base" 'BEGIN {printf "%.2f", a/b}')"
done
echo
printf '| %-44s | %9s | %9s | %12s |\n' "import of $IMPORT keys (one request)" seconds 'keys/s' 'vs dry run'
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..14})"
for row in "dry run (parse and plan, no writes)|$dry" "new keys (seal, insert, audit)|$real" "same file again (open and compare, no writes)|$same" "overwrite every value (10 000 updates)|$over"; do
  IFS='|' read -r name secs <<<"$row"
  printf '| %-44s | %9.3f | %9.0f | %11.2fx |\n' "$name" "$secs" "$(awk -v n="$IMPORT" -v s="$secs" 'BEGIN {print n/s}')" "$(awk -v a="$secs" -v b="$dry" 'BEGIN {print a/b}')"
done
