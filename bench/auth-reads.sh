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
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/enclave-target}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
  else
    echo "wrk is needed: sudo apt-get install wrk" >&2; exit 1
  fi
fi

cargo build --release -q -p enclave
bin="$CARGO_TARGET_DIR/release/enclave"
data="$(mktemp -d)"
out="$data/stdout"
password="load-test-passphrase-$RANDOM"
ENCLAVE_DATA_DIR="$data" ENCLAVE_HTTP_ADDR=127.0.0.1:0 \
  DATABASE_URL="${BENCH_DATABASE_URL:-sqlite://$data/enclave.db}" \
  ENCLAVE_BOOTSTRAP_EMAIL=bench@example.com ENCLAVE_BOOTSTRAP_PASSWORD="$password" \
  ENCLAVE_RATE_LIMITS="free=1000000000/100000000" ENCLAVE_LOG=warn ENCLAVE_LOG_FORMAT=json \
  "$bin" serve >"$out" 2>"$data/stderr" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$out" 2>/dev/null && break; sleep 0.1; done
url="$(sed -n 's/^Enclave control plane listening on //p' "$out")"
[ -n "$url" ] || { echo "server did not start:"; cat "$data/stderr"; exit 1; }

login="$(curl -sf "$url/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"bench@example.com\",\"password\":\"$password\"}")"
token="$(printf '%s' "$login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
org="$(printf '%s' "$login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["org"]["org_id"])')"

# wrk's latency figures, normalised to milliseconds.
ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}'; }
run() { # name path [auth]
  local args=(-t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency)
  [ "${3:-}" = auth ] && args+=(-H "Authorization: Bearer $token")
  local report; report="$(wrk "${args[@]}" "$url$2")"
  local rps p50 p99 errors
  rps="$(printf '%s\n' "$report" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')"
  p50="$(printf '%s\n' "$report" | awk '$1=="50%" {print $2}' | ms)"
  p99="$(printf '%s\n' "$report" | awk '$1=="99%" {print $2}' | ms)"
  errors="$(printf '%s\n' "$report" | awk '/Non-2xx/ {print $NF}')"
  [ -n "$errors" ] && { echo "$1: $errors non-2xx responses" >&2; exit 1; }
  printf '%s|%s|%s|%s\n' "$1" "$rps" "$p50" "$p99"
}

results=()
results+=("$(run 'GET /health' /health)")
results+=("$(run 'GET /v1/auth/me (JWT)' /v1/auth/me auth)")
results+=("$(run 'GET /v1/organizations/{id} (JWT)' "/v1/organizations/$org" auth)")

storage="$(curl -sf "$url/ready" | python3 -c 'import json,sys; print(json.load(sys.stdin)["storage"])')"
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
