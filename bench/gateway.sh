#!/usr/bin/env bash
# Benchmark: the SQL gateway. (1) Embedded engine: a point query and an aggregate over ROWS rows,
# one client at a time, through the wire (pgbench, simple protocol) and through HTTP
# (POST /v1/query, wrk), next to DuckDB's own in-process time for the same queries on the same
# table (crates/enclave-gateway/examples/duckdb_inprocess.rs, the same DuckDB build) and a
# loopback TCP round trip, all in this run, with the result cache off (what the gateway adds to
# a statement that runs); then the aggregate again with the cache on, repeated (a hit). Targets:
# point query ≤ 1.5 × (engine + loopback round trip); aggregate ≤ 1.1 × the engine; a cached
# repeat of the aggregate ≤ 0.2 × its uncached time. (2) The managed PostgreSQL engine: pgbench's
# select-only workload (scale SCALE) through the gateway next to the same pgbench against the
# environment's database directly, as its own role, and through two proxies that do no work of
# their own, for what any hop in between costs these cores: a plain TCP relay (socat) and
# PgBouncer (session pooling, as lean as a PostgreSQL proxy gets). Target: ≥ 0.8 × direct.
#
#   bench/gateway.sh
#   ROWS=1000000 ITERATIONS=300 SCALE=10 CLIENTS=4 DURATION=10s bench/gateway.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432 bench/gateway.sh   # the managed engine's server
#
# PG_URL's server must let the environment's role in from 127.0.0.1 (trust, as on the project's
# machines): the direct run connects as that role, to the same database the gateway uses.
#
# It measures; it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${ROWS:-1000000}"
ITERATIONS="${ITERATIONS:-300}"
SCALE="${SCALE:-10}"
CLIENTS="${CLIENTS:-4}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
CONNECTIONS=1
. bench/lib.sh
ENGINE_PG_URL="$PG_URL/postgres"

need_wrk
need_pgbench
need_package socat
need_package /usr/sbin/pgbouncer pgbouncer
cargo build --release -q -p enclave-gateway --example duckdb_inprocess
start_gateway_server
env_of() { curl -sf "$url/v1/organizations/$org/environments/$1" -H "authorization: Bearer $token" | json '["env_id"]'; }
key_of() {
  curl -sf "$url/v1/environments/$1/api-keys" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"name":"bench","scopes":["developer"],"role":"developer"}' | json '["key"]'
}
sql() { # KEY SQL: runs it over HTTP
  python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1]}))' "$2" |
    curl -sf "$url/v1/query" -H "x-api-key: $1" -H 'content-type: application/json' --data-binary @- >/dev/null
}
dev="$(env_of development)"
dev_key="$(key_of "$dev")"
# Statements run one at a time per client; allow the benchmark's clients and their queues.
curl -sf -X PATCH "$url/v1/environments/$dev" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"settings":{"query_timeout_ms":600000,"cache_enabled":false}}' >/dev/null

echo "loading $ROWS rows..." >&2
sql "$dev_key" "CREATE TABLE t AS SELECT range AS id, range % 100 AS g, (range * 7 % 1000) / 10.0 AS v FROM range($ROWS)"

point="SELECT id, g, v FROM t WHERE id = 4242"
aggregate="SELECT g, sum(v) AS total, count(*) AS n FROM t GROUP BY g ORDER BY g"

inprocess="$("$CARGO_TARGET_DIR/release/examples/duckdb_inprocess" "$ROWS" "$ITERATIONS" "$data")"
engine_ms() { printf '%s\n' "$inprocess" | awk -F'|' -v q="$1" '$1==q {print $2}'; }

# A loopback TCP round trip (one byte each way), mean over 20 000.
rtt="$(python3 - <<'EOF'
import socket, threading, time
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
def echo():
    c, _ = server.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (b := c.recv(1)): c.sendall(b)
threading.Thread(target=echo, daemon=True).start()
s = socket.create_connection(server.getsockname()); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(2000): s.sendall(b"x"); s.recv(1)
n = 20000; t = time.perf_counter()
for _ in range(n): s.sendall(b"x"); s.recv(1)
print(f"{(time.perf_counter() - t) / n * 1000:.3f}")
EOF
)"

wire_ms() { # SQL → mean latency (ms) over ITERATIONS through the wire, one client
  printf '%s;\n' "$1" >"$data/query.sql"
  PGPASSWORD="$dev_key" pgbench -n -M simple -c 1 -t "$ITERATIONS" -f "$data/query.sql" \
    -h 127.0.0.1 -p "$gw_port" -U bench development 2>/dev/null |
    awk -F'= ' '/latency average/ {split($2, a, " "); print a[1]}'
}
http_ms() { # SQL → mean latency (ms) through HTTP, one client
  local body; body="$(python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1]}))' "$1")"
  local script; script="$(mktemp --suffix=.lua)"
  printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-API-Key"] = "%s"\nwrk.body = [==[%s]==]\n' "$dev_key" "$body" >"$script"
  wrk -t1 -c1 -d"$DURATION" --latency -s "$script" "$url/v1/query" |
    awk '$1=="Latency" && $2 ~ /^[0-9]/ {print $2; exit}' | ms
}

rows=()
for q in point aggregate; do
  text="${!q}"
  rows+=("$q|$(engine_ms "$q")|$(wire_ms "$text")|$(http_ms "$text")")
done

# The same aggregate answered from the result cache (every run after the first is a hit).
curl -sf -X PATCH "$url/v1/environments/$dev" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"settings":{"cache_enabled":true}}' >/dev/null
cached_wire="$(wire_ms "$aggregate")"
cached_http="$(http_ms "$aggregate")"

# The managed PostgreSQL engine: pgbench's select-only workload, directly and through the gateway.
warehouse="$(curl -sf "$url/v1/organizations/$org/environments" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' \
  -d '{"name":"Warehouse","settings":{"engine":"postgres","query_timeout_ms":600000,"cache_enabled":false}}' | json '["env_id"]')"
pgdb="enclave_$(printf '%s' "$warehouse" | tr '[:upper:]' '[:lower:]')"
# The tables belong to the environment's own role, as if it had created them.
pgbench -q -i -s "$SCALE" -h 127.0.0.1 -U "$pgdb" "$pgdb" >/dev/null 2>&1
warehouse_key="$(key_of "$warehouse")"
tps() { awk -F'= ' '/^tps/ {split($2, a, " "); printf "%.0f", a[1]}'; }
# The machine's busy CPU time (user, nice, system, irq, softirq), and one process's, in clock ticks.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
process_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# measured COMMAND…: runs a pgbench, adding to its report the ticks the machine and the server
# were busy meanwhile.
measured() {
  local m0 s0 out
  m0="$(machine_ticks)"; s0="$(process_ticks "$server")"
  out="$("$@" 2>/dev/null)"
  printf '%s\nmachine_ticks = %s\nserver_ticks = %s\n' "$out" "$(($(machine_ticks) - m0))" \
    "$(($(process_ticks "$server") - s0))"
}
# cpu_us WHICH: busy CPU microseconds per transaction (the machine's, or the server's).
cpu_us() {
  awk -v which="$1" -v hz="$(getconf CLK_TCK)" \
    '/^number of transactions actually processed/ {n = $NF; sub(/\/.*/, "", n)}
     $1 == which "_ticks" {t = $3}
     END {if (n > 0) printf "%.0f", t * 1000000 / hz / n; else print "-"}'
}
lat() { awk -F'= ' '/latency average/ {split($2, a, " "); print a[1]}'; }
# A warm-up first (the database was just written and vacuumed), so that the first path measured
# is not the one that pays for it; PostgreSQL directly is measured again at the end, and the
# ratios are to the mean of both runs.
pgbench -n -S -M simple -c "$CLIENTS" -j "$CLIENTS" -T 2 -h 127.0.0.1 -U "$pgdb" "$pgdb" >/dev/null 2>&1
direct="$(measured pgbench -n -S -M simple -c "$CLIENTS" -j "$CLIENTS" -T "${DURATION%s}" -h 127.0.0.1 -U "$pgdb" "$pgdb" 2>/dev/null)"
pg_port="$(printf '%s' "$PG_URL" | sed -n 's/.*:\([0-9][0-9]*\)$/\1/p')"
relay_port="$(free_port)"
socat "TCP-LISTEN:$relay_port,bind=127.0.0.1,fork,reuseaddr" "TCP:127.0.0.1:${pg_port:-5432},nodelay" &
relay_pid=$!
sleep 0.5
relayed="$(measured pgbench -n -S -M simple -c "$CLIENTS" -j "$CLIENTS" -T "${DURATION%s}" -h 127.0.0.1 -p "$relay_port" -U "$pgdb" "$pgdb" 2>/dev/null)"
kill "$relay_pid" 2>/dev/null; wait "$relay_pid" 2>/dev/null || true
# PgBouncer refuses to run as root: then it runs as nobody, owner of its own directory.
bouncer_dir="$(mktemp -d)"; bouncer_port="$(free_port)"
printf '%s\n' '[databases]' "* = host=127.0.0.1 port=${pg_port:-5432}" '[pgbouncer]' \
  'listen_addr = 127.0.0.1' "listen_port = $bouncer_port" 'unix_socket_dir =' 'auth_type = trust' \
  "auth_file = $bouncer_dir/users.txt" 'pool_mode = session' "logfile = $bouncer_dir/log" \
  "pidfile = $bouncer_dir/pid" >"$bouncer_dir/pgbouncer.ini"
printf '"%s" ""\n' "$pgdb" >"$bouncer_dir/users.txt"
as_user=()
if [ "$(id -u)" = 0 ]; then chown -R nobody "$bouncer_dir"; as_user=(runuser -u nobody --); fi
"${as_user[@]}" /usr/sbin/pgbouncer -d "$bouncer_dir/pgbouncer.ini"
sleep 0.5
bounced="$(measured pgbench -n -S -M simple -c "$CLIENTS" -j "$CLIENTS" -T "${DURATION%s}" -h 127.0.0.1 -p "$bouncer_port" -U "$pgdb" "$pgdb" 2>/dev/null)"
kill "$(cat "$bouncer_dir/pid")" 2>/dev/null || true
rm -rf "$bouncer_dir"
through="$(PGPASSWORD="$warehouse_key" measured pgbench -n -S -M simple -c "$CLIENTS" -j "$CLIENTS" -T "${DURATION%s}" \
  -h 127.0.0.1 -p "$gw_port" -U bench warehouse 2>/dev/null)"
direct_again="$(measured pgbench -n -S -M simple -c "$CLIENTS" -j "$CLIENTS" -T "${DURATION%s}" -h 127.0.0.1 -U "$pgdb" "$pgdb" 2>/dev/null)"
curl -sf -X DELETE "$url/v1/environments/$warehouse" -H "authorization: Bearer $token" >/dev/null

echo
echo "embedded engine: $ROWS rows, $ITERATIONS runs per query, one client · loopback round trip $rtt ms · $(nproc) cores · release build"
echo
printf '| %-9s | %10s | %10s | %10s | %24s | %14s |\n' query 'DuckDB ms' 'wire ms' 'HTTP ms' 'wire / (DuckDB + RTT)' 'HTTP / DuckDB'
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..26})" "$(printf -- '-%.0s' {1..16})"
for r in "${rows[@]}"; do
  IFS='|' read -r name engine wire http <<<"$r"
  printf '| %-9s | %10.3f | %10.3f | %10.3f | %23.2fx | %13.2fx |\n' "$name" "$engine" "$wire" "$http" \
    "$(awk -v w="$wire" -v e="$engine" -v r="$rtt" 'BEGIN {print w/(e+r)}')" \
    "$(awk -v h="$http" -v e="$engine" 'BEGIN {print h/e}')"
done
IFS='|' read -r _ _ agg_wire agg_http <<<"${rows[1]}"
echo
echo "the aggregate again, answered from the result cache (target ≤ 0.2 × uncached)"
echo
printf '| %-9s | %12s | %10s | %12s |\n' door 'uncached ms' 'cached ms' 'cached / un'
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..14})"
printf '| %-9s | %12.3f | %10.3f | %11.2fx |\n' wire "$agg_wire" "$cached_wire" "$(awk -v c="$cached_wire" -v u="$agg_wire" 'BEGIN {print c/u}')"
printf '| %-9s | %12.3f | %10.3f | %11.2fx |\n' HTTP "$agg_http" "$cached_http" "$(awk -v c="$cached_http" -v u="$agg_http" 'BEGIN {print c/u}')"
echo
echo "managed PostgreSQL engine: pgbench -S (select-only), scale $SCALE, $CLIENTS clients, ${DURATION}, result cache off (target ≥ 0.8 × direct)"
echo
echo "(vs direct: to the mean of both direct runs; CPU: busy microseconds per transaction, of the whole machine and of the Enclave server)"
echo
printf '| %-27s | %10s | %12s | %10s | %12s | %11s |\n' path tps 'latency ms' 'vs direct' 'machine CPU' 'server CPU'
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..29})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..13})"
d_tps="$(awk -v a="$(printf '%s\n' "$direct" | tps)" -v b="$(printf '%s\n' "$direct_again" | tps)" 'BEGIN {print (a + b) / 2}')"
for which in direct relayed bounced through direct_again; do
  report="${!which}"
  case "$which" in
    direct) name="PostgreSQL directly" ;;
    direct_again) name="PostgreSQL directly, again" ;;
    relayed) name="through a TCP relay (socat)" ;;
    bounced) name="through PgBouncer" ;;
    through) name="through the gateway (wire)" ;;
  esac
  t="$(printf '%s\n' "$report" | tps)"
  server_cpu="$(printf '%s\n' "$report" | cpu_us server)"
  [ "$which" = through ] || server_cpu="-"
  printf '| %-27s | %10s | %12s | %9.2fx | %12s | %11s |\n' "$name" "$t" "$(printf '%s\n' "$report" | lat)" \
    "$(awk -v a="$t" -v b="$d_tps" 'BEGIN {print a/b}')" "$(printf '%s\n' "$report" | cpu_us machine)" "$server_cpu"
done
