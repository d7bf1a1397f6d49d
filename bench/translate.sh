#!/usr/bin/env bash
# Benchmark: translating Snowflake-style SQL (pipeline stage 8). Every statement of the public
# corpus (crates/enclave/tests/corpus/snowflake.jsonl), parsed, translated and classified by
# the gateway's code for each engine — uncached (a statement seen for the first time) and
# cached (a repeat: the lookup by text and the copy of the parsed statements) — next to
# sqlglot (PyPI, installed into a virtual environment under ~/.cache) translating the same
# statements from Snowflake to DuckDB, in this run. Target: uncached ≥ 10 × faster than
# sqlglot.
#
#   bench/translate.sh
#   ROUNDS=500 bench/translate.sh
#
# It measures; it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-200}"
CORPUS=crates/enclave/tests/corpus/snowflake.jsonl
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/enclave-target}"

venv="$HOME/.cache/enclave-bench-sqlglot"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sqlglot' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'sqlglot==30.*' >&2
fi

cargo build --release -q -p enclave-core --example translate_corpus
ours="$("$CARGO_TARGET_DIR/release/examples/translate_corpus" "$CORPUS" "$ROUNDS")"

theirs="$("$venv/bin/python" - "$CORPUS" "$ROUNDS" <<'PY'
import json, sys, time
import sqlglot
path, rounds = sys.argv[1], int(sys.argv[2])
corpus = [json.loads(l)["sql"] for l in open(path) if l.strip()]
failed = 0
for sql in corpus:
    try:
        sqlglot.transpile(sql, read="snowflake", write="duckdb")
    except Exception:
        failed += 1
started = time.perf_counter()
for _ in range(rounds):
    for sql in corpus:
        try:
            sqlglot.transpile(sql, read="snowflake", write="duckdb")
        except Exception:
            pass
per = (time.perf_counter() - started) * 1e6 / (rounds * len(corpus))
print(f"{per:.2f} {failed} {sqlglot.__version__}")
PY
)"
read -r sqlglot_us sqlglot_failed sqlglot_version <<<"$theirs"
value() { awk -v t="$1" -v m="$2" '$1 == t && $2 == m {print $3}' <<<"$ours"; }

statements="$(grep -c . "$CORPUS")"
printf 'Translation of the %s corpus statements, %s rounds (microseconds per statement, lower is better)\n\n' "$statements" "$ROUNDS"
printf '| %-44s | %10s | %14s |\n' "what" "us/stmt" "vs sqlglot"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..16})"
row() { printf '| %-44s | %10s | %13s× |\n' "$1" "$2" "$(awk -v a="$sqlglot_us" -v b="$2" 'BEGIN {printf "%.1f", a / b}')"; }
printf '| %-44s | %10s | %14s |\n' "sqlglot $sqlglot_version, Snowflake -> DuckDB" "$sqlglot_us" "1.0×"
row "Enclave -> DuckDB, uncached (parse+translate)" "$(value duckdb uncached)"
row "Enclave -> DuckDB, cached (lookup + copy)" "$(value duckdb cached)"
row "Enclave -> PostgreSQL, uncached" "$(value postgres uncached)"
row "Enclave -> PostgreSQL, cached" "$(value postgres cached)"
echo
echo "sqlglot failed on $sqlglot_failed of $statements statements (timed all the same); Enclave translates all of them."
