#!/usr/bin/env python3
"""Seeds COUNT environments into one organization, straight into the database (creating
100 000 through the API would measure the API's create path, not its list path).

    seed_environments.py DATABASE_URL ORG_ID COUNT

Writes rows exactly as the server does (dense positions, valid ids, default settings), then
updates the organization's environment counter. Prints the env_id at each position asked
for in $PRINT_POSITIONS (comma-separated), one `position env_id` per line.
"""
import csv
import io
import os
import sqlite3
import subprocess
import sys
import time

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def env_id(org: str, i: int) -> str:
    # A valid ULID: a fixed start, seven characters of the organization's id (so two seeded
    # organizations never collide), then the row number in base32.
    suffix = ""
    n = i
    for _ in range(16):
        suffix = ALPHABET[n % 32] + suffix
        n //= 32
    return "env_01b" + org[-7:] + suffix  # 3 + 7 + 16 = 26 characters


def rows(org: str, count: int, now: int):
    settings = '{"query_timeout_ms":30000,"max_concurrent_queries":100,"cache_enabled":true}'
    for i in range(count):
        yield (env_id(org, i), org, f"Bench {i}", f"bench-{i}", "custom", i, "#64748b", None, "",
               "active", False, settings, now, now, 1)


COLUMNS = ("id, org_id, name, slug, env_type, position, color, parent_env_id, description, "
           "status, locked, settings, created_at, updated_at, version")


def main() -> None:
    url, org, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    now = int(time.time() * 1000)
    bump = ("UPDATE organizations SET env_count = env_count + {n}, "
            "env_order_version = env_order_version + 1 WHERE id = '{org}'").format(n=count, org=org)
    if url.startswith("sqlite:"):
        path = url.split("://", 1)[1].split("?", 1)[0]
        db = sqlite3.connect(path, timeout=30)
        db.execute("PRAGMA busy_timeout = 30000")
        with db:
            db.executemany(f"INSERT INTO environments ({COLUMNS}) VALUES ({', '.join('?' * 15)})",
                           rows(org, count, now))
            db.execute(bump)
        db.close()
    else:
        buf = io.StringIO()
        # Strings quoted, so "" is an empty string and an unquoted empty field is NULL.
        writer = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        for r in rows(org, count, now):
            # parent_env_id (NULL) is left to its default.
            writer.writerow(["f" if v is False else v for j, v in enumerate(r) if j != 7])
        columns = COLUMNS.replace(" parent_env_id,", "")
        script = (f"BEGIN;\nCOPY environments ({columns}) FROM STDIN WITH (FORMAT csv);\n"
                  f"{buf.getvalue()}\\.\n{bump};\nCOMMIT;\nANALYZE environments;\n")
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url], input=script, text=True,
                       check=True, stdout=subprocess.DEVNULL)
    for pos in filter(None, os.environ.get("PRINT_POSITIONS", "").split(",")):
        print(pos, env_id(org, int(pos)))


if __name__ == "__main__":
    main()
