#!/usr/bin/env bash
# Benchmark: API-key-authenticated reads next to /health, the first (cold, Argon2id) request
# of a key, and 1 000 junk-key requests — on one server, in one run.
#
#   bench/key-auth.sh                        # SQLite (the embedded default)
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/enclave_bench bench/key-auth.sh
#
# Prints two tables. Throughput: wrk (DURATION, CONNECTIONS, THREADS) on /health and on
# GET /v1/environments/{id} with X-API-Key; target (issue #4) >= 50 % of /health. Latency: the
# first request of a fresh key (verified with Argon2id) and the next one (verified cache), and
# 1 000 sequential requests with keys that cannot be keys, next to 1 000 /health requests over
# the same kind of connection. It measures; it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-32}"
. bench/lib.sh

need_wrk
start_server ENCLAVE_DEFAULT_TIER=enterprise ENCLAVE_RATE_LIMITS="enterprise=1000000000/100000000" ENCLAVE_ANONYMOUS_RATE_LIMIT="1000000000/100000000"
login
org="$(curl -sf "$url/v1/auth/me" -H "authorization: Bearer $token" | json '["org"]["org_id"]')"
env_id="$(curl -sf "$url/v1/organizations/$org/environments" -H "authorization: Bearer $token" | json '["data"][2]["env_id"]')"
new_key() {
  curl -sf "$url/v1/environments/$env_id/api-keys" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d "{\"name\":\"$1\",\"scopes\":[\"read_only\"]}" | json '["key"]'
}
key="$(new_key bench)"
cold_key="$(new_key cold)"

# First use of a key (Argon2id on a blocking thread), then the same key again (cache).
seconds() { curl -s -o /dev/null -w '%{time_total}' -H "x-api-key: $2" "$url$1"; }
cold="$(seconds "/v1/environments/$env_id" "$cold_key")"
warm="$(seconds "/v1/environments/$env_id" "$cold_key")"
health_one="$(curl -s -o /dev/null -w '%{time_total}' "$url/health")"

# 1 000 requests over one keep-alive connection, timed by the client.
thousand() { # path header-value-or-empty
  python3 - "$url" "$1" "$2" <<'PY'
import http.client, sys, time, urllib.parse
url, path, key = sys.argv[1], sys.argv[2], sys.argv[3]
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port)
headers = {"x-api-key": key} if key else {}
start = time.perf_counter()
for i in range(1000):
    c.request("GET", path, headers=headers)
    r = c.getresponse(); r.read()
    if key and r.status != 401: sys.exit(f"junk key answered {r.status}")
print(f"{(time.perf_counter() - start) * 1000:.1f}")
PY
}
junk_ms="$(thousand "/v1/environments/$env_id" "ek_live_not-a-key")"
health_ms="$(thousand /health "")"

# The throughput run measures the verified path: the key has been used once already.
curl -sf -o /dev/null -H "x-api-key: $key" "$url/v1/environments/$env_id"
results=()
results+=("$(run 'GET /health' /health)")
results+=("$(run 'GET /v1/environments/{id} (X-API-Key)' "/v1/environments/$env_id" "X-API-Key: $key")")
results+=("$(run 'GET /v1/environments/{id} (JWT)' "/v1/environments/$env_id" auth)")

storage="$(curl -sf "$url/ready" | json '["storage"]')"
echo
echo "storage: $storage · wrk -t$THREADS -c$CONNECTIONS -d$DURATION · $(nproc) cores · release build"
echo
printf '| %-38s | %10s | %8s | %8s | %9s |\n' endpoint 'req/s' 'p50 ms' 'p99 ms' 'vs health'
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..40})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..11})"
base="$(printf '%s' "${results[0]}" | cut -d'|' -f2)"
for r in "${results[@]}"; do
  IFS='|' read -r name rps p50 p99 <<<"$r"
  printf '| %-38s | %10s | %8s | %8s | %8s%% |\n' "$name" "$rps" "$p50" "$p99" "$(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.0f", 100*a/b}')"
done
echo
printf '| %-52s | %10s |\n' measurement 'ms'
printf '|%s|%s|\n' "$(printf -- '-%.0s' {1..54})" "$(printf -- '-%.0s' {1..12})"
printf '| %-52s | %10.2f |\n' 'first request of a new key (Argon2id, cold)' "$(awk -v s="$cold" 'BEGIN {print s*1000}')"
printf '| %-52s | %10.2f |\n' 'its second request (verified cache)' "$(awk -v s="$warm" 'BEGIN {print s*1000}')"
printf '| %-52s | %10.2f |\n' 'one GET /health (baseline)' "$(awk -v s="$health_one" 'BEGIN {print s*1000}')"
printf '| %-52s | %10s |\n' '1 000 junk-key requests, total' "$junk_ms"
printf '| %-52s | %10s |\n' '1 000 GET /health, total (baseline)' "$health_ms"
