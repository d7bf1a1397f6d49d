#!/usr/bin/env bash
# Benchmark: policy enforcement (stage 7). The same analytic query over ROWS rows, run through
# the wire (pgbench, one client) by an admin — exempt, so the statement runs as written — and
# by an analyst with a row filter and two masks on the table (the statement rewritten); both in
# this run, on the embedded engine. The filter keeps every row (all rows are in the analyst's
# region), so both runs aggregate the same rows and the difference is what enforcement costs.
# Also the CPU cost of parsing + rewriting per statement
# (crates/enclave-core/examples/rewrite_cost.rs). Target: analyst / admin ≤ 1.1.
#
#   bench/enforcement.sh
#   ROWS=1000000 ITERATIONS=200 bench/enforcement.sh
#
# It measures; it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${ROWS:-1000000}"
ITERATIONS="${ITERATIONS:-200}"
. bench/lib.sh

need_pgbench
cargo build --release -q -p enclave-core --example rewrite_cost
start_gateway_server
env="$(curl -sf "$url/v1/organizations/$org/environments/development" -H "authorization: Bearer $token" | json '["env_id"]')"
post() { curl -sf "$url$1" -H "authorization: Bearer $token" -H 'content-type: application/json' -d "$2"; }
key_of() { post "/v1/environments/$env/api-keys" "{\"name\":\"$1\",\"role\":\"$1\",\"scopes\":[\"developer\"],\"attributes\":{\"region\":\"eu\"}}" | json '["key"]'; }
admin="$(key_of admin)"
analyst="$(key_of analyst)"
curl -sf -X PATCH "$url/v1/environments/$env" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"settings":{"query_timeout_ms":600000}}' >/dev/null

echo "loading $ROWS rows..." >&2
python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1]}))' \
  "CREATE TABLE t AS SELECT range AS id, range % 100 AS g, (range * 7 % 1000) / 10.0 AS v, 'eu' AS region,
   'user' || range || '@example.com' AS email, 'Name ' || range AS name FROM range($ROWS)" |
  curl -sf "$url/v1/query" -H "x-api-key: $admin" -H 'content-type: application/json' --data-binary @- >/dev/null
post "/v1/environments/$env/policies" '{"name":"masks","type":"column_masking","rules":[
  {"table":"t","column":"email","function":"hash","exempt_roles":["owner","admin"]},
  {"table":"t","column":"name","function":"partial","visible_chars":4,"exempt_roles":["owner","admin"]}]}' >/dev/null
post "/v1/environments/$env/policies" '{"name":"region","type":"row_level_security","rules":[
  {"table":"t","filter":"region = {region}","exempt_roles":["owner","admin"]}]}' >/dev/null

aggregate="SELECT g, sum(v) AS total, count(*) AS n FROM t GROUP BY g ORDER BY g"
masked="SELECT g, count(DISTINCT email) AS people, max(name) AS last FROM t GROUP BY g ORDER BY g"

wire_ms() { # KEY SQL → mean latency (ms) over ITERATIONS through the wire, one client
  printf '%s;\n' "$2" >"$data/query.sql"
  PGPASSWORD="$1" pgbench -n -M simple -c 1 -t "$ITERATIONS" -f "$data/query.sql" \
    -h 127.0.0.1 -p "$gw_port" -U bench development 2>/dev/null |
    awk -F'= ' '/latency average/ {split($2, a, " "); print a[1]}'
}

rows=()
for q in aggregate masked; do
  text="${!q}"
  rows+=("$q|$(wire_ms "$admin" "$text")|$(wire_ms "$analyst" "$text")")
done
cost="$("$CARGO_TARGET_DIR/release/examples/rewrite_cost" 2>/dev/null)"

echo
echo "embedded engine: $ROWS rows, $ITERATIONS runs per query and caller, one client, wire · $(nproc) cores · release build"
echo "analyst: row filter region = {region} (keeps every row) + masks hash(email), partial(name); admin: exempt"
echo
printf '| %-9s | %12s | %14s | %16s |\n' query 'admin ms' 'analyst ms' 'analyst / admin'
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..16})" "$(printf -- '-%.0s' {1..18})"
for r in "${rows[@]}"; do
  IFS='|' read -r name admin_ms analyst_ms <<<"$r"
  printf '| %-9s | %12.3f | %14.3f | %15.2fx |\n' "$name" "$admin_ms" "$analyst_ms" \
    "$(awk -v a="$analyst_ms" -v b="$admin_ms" 'BEGIN {print a/b}')"
done
echo
echo "aggregate: $aggregate"
echo "masked:    $masked"
echo
echo "CPU per statement (the aggregate), in-process:"
echo
printf '| %-36s | %10s |\n' step 'µs'
printf '|%s|%s|\n' "$(printf -- '-%.0s' {1..38})" "$(printf -- '-%.0s' {1..12})"
printf '%s\n' "$cost" | while IFS='|' read -r step us; do printf '| %-36s | %10s |\n' "$step" "$us"; done
