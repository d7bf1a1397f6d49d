# Shared by the benchmark scripts: sourced, not run.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/enclave-target}"
DURATION="${DURATION:-10s}"
THREADS="${THREADS:-1}"

# wrk, installed with apt-get when missing (as root).
need_wrk() {
  command -v wrk >/dev/null && return
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
  else
    echo "wrk is needed: sudo apt-get install wrk" >&2; exit 1
  fi
}

# wrk's latency figures, normalised to milliseconds.
ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}'; }

# run NAME PATH [auth|HEADER] [JSON]: drives $url$PATH with wrk (as $token when `auth`, or
# with the header given; a POST of JSON when given), prints `name|req/s|p50 ms|p99 ms`; any
# non-2xx answer stops the benchmark.
run() {
  local args=(-t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency)
  if [ "${3:-}" = auth ]; then args+=(-H "Authorization: Bearer $token")
  elif [ -n "${3:-}" ]; then args+=(-H "$3"); fi
  if [ -n "${4:-}" ]; then
    local script; script="$(mktemp --suffix=.lua)"
    printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[%s]==]\n' "$4" >"$script"
    args+=(-s "$script")
  fi
  local report; report="$(wrk "${args[@]}" "$url$2")"
  local rps p50 p99 errors
  rps="$(printf '%s\n' "$report" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')"
  p50="$(printf '%s\n' "$report" | awk '$1=="50%" {print $2}' | ms)"
  p99="$(printf '%s\n' "$report" | awk '$1=="99%" {print $2}' | ms)"
  errors="$(printf '%s\n' "$report" | awk '/Non-2xx/ {print $NF}')"
  [ -n "$errors" ] && { echo "$1: $errors non-2xx responses" >&2; exit 1; }
  printf '%s|%s|%s|%s\n' "$1" "$rps" "$p50" "$p99"
}

# start_server [VAR=value…]: builds the release binary and starts it on a random port with a
# fresh data directory and the bench@example.com owner, on SQLite in that directory or on
# $BENCH_DATABASE_URL (that PostgreSQL database is dropped and created afresh); sets $url,
# $password, $data, $db_url.
start_server() {
  # ENCLAVE_BIN runs another build (e.g. an earlier commit's, as a baseline) instead.
  local bin="${ENCLAVE_BIN:-$CARGO_TARGET_DIR/release/enclave}"
  [ -n "${ENCLAVE_BIN:-}" ] || cargo build --release -q -p enclave
  data="$(mktemp -d)"
  password="load-test-passphrase-$RANDOM"
  db_url="${BENCH_DATABASE_URL:-sqlite://$data/enclave.db}"
  if [[ "$db_url" == postgres* ]]; then
    psql -q "${db_url%/*}/postgres" -c "DROP DATABASE IF EXISTS ${db_url##*/}" \
      -c "CREATE DATABASE ${db_url##*/}" >/dev/null
  fi
  env ENCLAVE_DATA_DIR="$data" ENCLAVE_HTTP_ADDR=127.0.0.1:0 DATABASE_URL="$db_url" \
    ENCLAVE_BOOTSTRAP_EMAIL=bench@example.com ENCLAVE_BOOTSTRAP_PASSWORD="$password" \
    ENCLAVE_LOG=warn ENCLAVE_LOG_FORMAT=json "$@" \
    "$bin" serve >"$data/stdout" 2>"$data/stderr" &
  server=$!
  trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
  for _ in $(seq 100); do grep -q "listening on" "$data/stdout" 2>/dev/null && break; sleep 0.1; done
  url="$(sed -n 's/^Enclave control plane listening on //p' "$data/stdout")"
  [ -n "$url" ] || { echo "server did not start:"; cat "$data/stderr"; exit 1; }
}

# json EXPR: reads JSON on stdin, prints json.load(stdin)EXPR.
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# login: sets $token for the bench owner.
login() {
  token="$(curl -sf "$url/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"bench@example.com\",\"password\":\"$password\"}" | json '["token"]')"
}

need_pgbench() {
  command -v pgbench >/dev/null || { echo "pgbench is needed (PostgreSQL's client tools)" >&2; exit 1; }
}

# start_gateway_server: a server without rate limits with its gateway on a free port (and, with
# ENGINE_PG_URL, the managed PostgreSQL engine on that server); sets
# $gw_port, $token (login) and $org besides what start_server sets.
start_gateway_server() {
  start_server ENCLAVE_DEFAULT_TIER=enterprise ENCLAVE_RATE_LIMITS="enterprise=1000000000/100000000" \
    ENCLAVE_GATEWAY_ADDR=127.0.0.1:0 ${ENGINE_PG_URL:+ENCLAVE_ENGINE_POSTGRES_URL=$ENGINE_PG_URL} \
    ENCLAVE_DEFAULT_ENGINE=duckdb
  local gateway
  gateway="$(sed -n 's/^Enclave gateway (Postgres wire) listening on //p' "$data/stdout")"
  gw_port="${gateway##*:}"
  login
  org="$(curl -sf "$url/v1/auth/me" -H "authorization: Bearer $token" | json '["org"]["org_id"]')"
}

# need_package COMMAND [PACKAGE]: installs Debian's package with apt-get when COMMAND is missing
# (as root).
need_package() {
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq "${2:-$1}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${2:-$1}" >/dev/null; }
  else
    echo "$1 is needed: sudo apt-get install ${2:-$1}" >&2; exit 1
  fi
}

# free_port: a TCP port nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
