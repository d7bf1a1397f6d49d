# Sourced by the *-instructions.sh benchmarks: a server under callgrind, driven by a Python
# script, and the instructions counted while the script had instrumentation on.

# callgrind_total BIN ARGS… <<'PY' … PY: starts BIN (SQLite store, random ports, a bootstrap
# owner bench@example.com) under callgrind with instrumentation off, runs the Python script on
# stdin with argv [url, password, server pid, ARGS…] (it switches instrumentation on and off
# with callgrind_control around what it measures), stops the server and prints the total
# (KEEP_PROFILE=dir: and keeps the profile there).
callgrind_total() {
  local bin=$1 data password server url out
  shift
  data="$(mktemp -d)"; password="callgrind-passphrase-$RANDOM"; out="$data/callgrind.out"
  env ENCLAVE_DATA_DIR="$data" ENCLAVE_HTTP_ADDR=127.0.0.1:0 ENCLAVE_GATEWAY_ADDR=127.0.0.1:0 \
    DATABASE_URL="sqlite://$data/enclave.db" \
    ENCLAVE_BOOTSTRAP_EMAIL=bench@example.com ENCLAVE_BOOTSTRAP_PASSWORD="$password" \
    ENCLAVE_LOG=warn ENCLAVE_DEFAULT_TIER=enterprise ENCLAVE_RATE_LIMITS="enterprise=1000000000/100000000" \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$bin" serve \
    >"$data/stdout" 2>"$data/stderr" &
  server=$!
  for _ in $(seq 600); do grep -q "listening on" "$data/stdout" 2>/dev/null && break; sleep 0.5; done
  url="$(sed -n 's/^Enclave control plane listening on //p' "$data/stdout")"
  [ -n "$url" ] || { echo "server did not start:" >&2; cat "$data/stderr" >&2; kill "$server"; exit 1; }
  python3 - "$url" "$password" "$server" "$@"
  kill -TERM "$server"; wait "$server" 2>/dev/null || true
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
  # KEEP_PROFILE=dir keeps the profile (callgrind_annotate --inclusive=yes reads it).
  if [ -n "${KEEP_PROFILE:-}" ]; then mkdir -p "$KEEP_PROFILE"; cp "$out" "$KEEP_PROFILE/callgrind.out.$(basename "$bin").$$"; fi
  rm -rf "$data"
}
