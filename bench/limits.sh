#!/usr/bin/env bash
# Benchmark: what the hardening review's attacks cost the server now that they are refused, next
# to ordinary requests in the same run. Each request is sent once over HTTP with a key that may
# not run queries (the limits apply before authorization) or a developer key; for each, the
# server's wall time, CPU time (utime + stime of the process) and peak resident memory above
# its level before the request (VmHWM, reset before each request) are read from /proc.
#
#   bench/limits.sh
#   ENCLAVE_BIN=target/debug/enclave bench/limits.sh    # another build
#
# It measures; it asserts nothing. Linux only (reads /proc; resetting the peak needs root or
# the server's own user).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

start_gateway_server
dev="$(curl -sf "$url/v1/organizations/$org/environments/development" -H "authorization: Bearer $token" | json '["env_id"]')"
key_of() {
  curl -sf "$url/v1/environments/$dev/api-keys" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"name\":\"bench\",\"scopes\":$1,\"role\":\"developer\"}" | json '["key"]'
}
dev_key="$(key_of '["developer"]')"
no_query_key="$(key_of '["secrets:read"]')"

python3 - "$url" "$server" "$dev_key" "$no_query_key" <<'EOF'
import json, sys, time, urllib.request, urllib.error

url, pid, dev_key, no_query_key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ticks = 100  # USER_HZ on Linux

def cpu_ms():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / ticks

def status(name):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(name + ":"):
            return int(line.split()[1]) / 1024  # MiB

def reset_peak():
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")

def send(key, sql):
    body = json.dumps({"sql": sql}).encode()
    req = urllib.request.Request(url + "/v1/query", data=body, method="POST",
                                 headers={"content-type": "application/json", "x-api-key": key})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()
            return str(r.status)
    except urllib.error.HTTPError as e:
        detail = json.loads(e.read())["error"]["details"]
        return f"{e.code} {detail.get('sqlstate', '')} {detail.get('rule', '')}".strip()

cases = [
    ("ordinary: SELECT 1", dev_key, "SELECT 1"),
    ("ordinary: 1 000 statements (the limit)", dev_key, "SELECT 1;" * 1000),
    ("ordinary: 900-term 1+1+…", dev_key, "SELECT 1" + "+1" * 900),
    ("ordinary: IN list of 100 000 items", dev_key, "SELECT 1 IN (" + ",".join(["1"] * 100_000) + ")"),
    ("attack: 2 000-term 1+1+… (no query scope)", no_query_key, "SELECT 1" + "+1" * 2000),
    ("attack: 1 250 UNION ALL", dev_key, "SELECT 1" + " UNION ALL SELECT 1" * 1250),
    ("attack: 100 000 × select 1; (900 KB)", dev_key, "select 1;" * 100_000),
    ("attack: select list of 250 000 items", dev_key, "SELECT 1" + ",1" * 250_000),
    ("attack: 1 MiB chain 1+1+…", dev_key, "SELECT 1" + "+1" * 524_000),
    ("attack: over 1 MiB", dev_key, "SELECT '" + "x" * (1 << 20) + "'"),
]
print()
print(f"| {'request':44} | {'answer':26} | {'wall ms':>8} | {'CPU ms':>7} | {'peak MiB over idle':>18} |")
print(f"|{'-'*46}|{'-'*28}|{'-'*10}|{'-'*9}|{'-'*20}|")
for name, key, sql in cases:
    time.sleep(0.5)
    reset_peak()
    before_rss, before_cpu = status("VmRSS"), cpu_ms()
    t = time.perf_counter()
    answer = send(key, sql)
    wall = (time.perf_counter() - t) * 1000
    time.sleep(0.2)  # let the audit writer and frees settle into the figures
    cpu = cpu_ms() - before_cpu
    peak = status("VmHWM") - before_rss
    print(f"| {name:44} | {answer:26} | {wall:8.1f} | {cpu:7.0f} | {peak:18.1f} |")
print()
print(f"server idle RSS after the run: {status('VmRSS'):.0f} MiB")
import os
print(f"binary: {os.readlink(f'/proc/{pid}/exe')}")
EOF
