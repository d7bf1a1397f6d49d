//! SQL compatibility (docs/sql.md): the public Snowflake corpus answers as Snowflake does on
//! both engines, what cannot be translated is refused with 0A000, and the PostgreSQL
//! behaviours tools rely on.

use serde_json::{json, Value};

use crate::common::{Db, Org};
use crate::engines;
use crate::gateway::{development, python, sqlstate, test_client, Engine};

engines!(
    snowflake_corpus,
    snowflake_forms_over_tables,
    transaction_control_as_postgres_answers,
    dbt_project_end_to_end,
);

/// The corpus (`{category, sql, rows}` a line), a copy of the workplace's public sample.
const CORPUS: &str = include_str!("../corpus/snowflake.jsonl");

async fn snowflake_corpus(db: Db, engine: Engine) {
    let o = Org::start(&db).await;
    let Some((env, _pg)) = development(&o, engine).await else {
        return;
    };
    let key = o.query_key(&env, &["developer"], "developer").await;
    let mut failures = Vec::new();
    let mut cases = 0;
    for line in CORPUS.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        let sql = case["sql"].as_str().unwrap();
        cases += 1;
        let r = o.sql(&key, sql, json!([])).await;
        if r.status != 200 {
            failures.push(format!(
                "{sql}\n    → {} {}",
                r.status, r.body["error"]["message"]
            ));
            continue;
        }
        if !same_rows(&case["rows"], &r.body["rows"]) {
            failures.push(format!(
                "{sql}\n    expected {}\n    answered {}",
                case["rows"], r.body["rows"]
            ));
        }
    }
    assert!(cases >= 80, "the corpus holds {cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} corpus cases differ on {engine:?}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Rows compared as the corpus says: values, not spellings.
fn same_rows(expected: &Value, actual: &Value) -> bool {
    match (expected.as_array(), actual.as_array()) {
        (Some(e), Some(a)) => {
            e.len() == a.len()
                && e.iter()
                    .zip(a)
                    .all(|(er, ar)| match (er.as_array(), ar.as_array()) {
                        (Some(ev), Some(av)) => {
                            ev.len() == av.len() && ev.iter().zip(av).all(|(x, y)| same_value(x, y))
                        }
                        _ => false,
                    })
        }
        _ => false,
    }
}

fn same_value(expected: &Value, actual: &Value) -> bool {
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match expected {
        Value::Null => actual.is_null(),
        Value::Bool(b) => match actual {
            Value::Bool(a) => a == b,
            Value::String(s) => s.eq_ignore_ascii_case(&b.to_string()),
            _ => false,
        },
        Value::Number(_) => match (number(expected), number(actual)) {
            (Some(e), Some(a)) => (e - a).abs() <= 1e-9 * e.abs().max(1.0),
            _ => false,
        },
        Value::String(e) => {
            if let Value::String(a) = actual {
                if a == e || timestamp(a) == timestamp(e) {
                    return true;
                }
                // JSON values compare as parsed JSON (objects and arrays only: a string is
                // its text, never its quoted JSON).
                if let (Ok(ej @ (Value::Object(_) | Value::Array(_))), Ok(aj)) = (
                    serde_json::from_str::<Value>(e),
                    serde_json::from_str::<Value>(a),
                ) {
                    return ej == aj;
                }
            }
            // A decimal may be answered as a number.
            matches!((e.parse::<f64>(), number(actual)), (Ok(x), Some(y)) if (x - y).abs() <= 1e-9 * x.abs().max(1.0))
        }
        other => other == actual,
    }
}

/// A timestamp's text with or without the `T`, trailing zero fractions and a UTC offset.
fn timestamp(s: &str) -> String {
    let s = s.replacen('T', " ", 1);
    let s = s
        .strip_suffix("+00")
        .or(s.strip_suffix("+00:00"))
        .unwrap_or(&s)
        .to_string();
    match s.split_once('.') {
        Some((whole, fraction)) if fraction.chars().all(|c| c == '0') => whole.to_string(),
        _ => s,
    }
}

/// Snowflake forms over real tables, and what cannot be translated.
async fn snowflake_forms_over_tables(db: Db, engine: Engine) {
    let o = Org::start(&db).await;
    let Some((env, _pg)) = development(&o, engine).await else {
        return;
    };
    let dev = o.query_key(&env, &["developer"], "developer").await;
    // A column named `key` (an agent SDK's memory table), Snowflake's types.
    o.sql(
        &dev,
        "CREATE TABLE memories (key VARCHAR, value VARIANT, amount NUMBER(10, 2), seen_at TIMESTAMP_NTZ, day DATE)",
        json!([]),
    )
    .await
    .expect(200);
    o.sql(
        &dev,
        "INSERT INTO memories SELECT 'a', PARSE_JSON('{\"tags\": [\"x\", \"y\"], \"n\": 2}'), 1.5, '2024-05-17 10:00:00', '2024-01-31'",
        json!([]),
    )
    .await
    .expect(200);
    o.sql(
        &dev,
        "INSERT INTO memories SELECT 'b', PARSE_JSON('{\"tags\": [], \"n\": 5}'), NULL, '2024-05-18 11:30:00', '2024-02-29'",
        json!([]),
    )
    .await
    .expect(200);
    let r = o
        .sql(
            &dev,
            "SELECT key, value:tags[0]::STRING AS tag, value:n::INT * 2 AS twice, NVL(amount, 0) AS amount, \
                    DATEADD(month, 1, day) AS next_month, DATEDIFF(day, day, seen_at) AS days \
             FROM memories ORDER BY key",
            json!([]),
        )
        .await;
    r.expect(200);
    let rows = &r.body["rows"];
    assert_eq!(rows[0][0], "a");
    assert_eq!(rows[0][1], "x");
    assert!(same_value(&json!(4), &rows[0][2]), "{rows}");
    assert!(same_value(&json!("1.5"), &rows[0][3]), "{rows}");
    assert!(rows[1][1].is_null(), "{rows}");
    assert!(same_value(&json!("0"), &rows[1][3]), "{rows}");
    // The statement does not show `day` is a date: the engines' timestamp at midnight.
    assert!(
        rows[0][4].as_str().unwrap().starts_with("2024-02-29"),
        "{rows}"
    );
    assert!(same_value(&json!(107), &rows[0][5]), "{rows}");

    let r = o
        .sql(
            &dev,
            "SELECT m.key, f.value::STRING AS tag FROM memories AS m, LATERAL FLATTEN(input => m.value:tags) AS f ORDER BY 1, 2",
            json!([]),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["rows"], json!([["a", "x"], ["a", "y"]]));

    let r = o
        .sql(
            &dev,
            "SELECT key FROM memories QUALIFY ROW_NUMBER() OVER (ORDER BY seen_at DESC) = 1",
            json!([]),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["rows"], json!([["b"]]));

    // The clock, on both engines (the embedded one has no time zones: UTC).
    let r = o
        .sql(
            &dev,
            "SELECT DATEDIFF(day, CURRENT_DATE, DATEADD(day, 1, CURRENT_DATE)), \
                    CURRENT_TIMESTAMP IS NOT NULL, SYSDATE() IS NOT NULL, GETDATE() IS NOT NULL, \
                    DATEDIFF(minute, SYSDATE(), CURRENT_TIMESTAMP) BETWEEN -1 AND 1",
            json!([]),
        )
        .await;
    r.expect(200);
    assert!(
        same_rows(&json!([[1, true, true, true, true]]), &r.body["rows"]),
        "{}",
        r.body
    );

    // Refused, naming the construct, with nothing run.
    let r = o
        .sql(
            &dev,
            "SELECT * FROM memories, LATERAL FLATTEN(input => value, recursive => TRUE)",
            json!([]),
        )
        .await;
    r.expect(400);
    assert_eq!(sqlstate(&r), "0A000");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recursive"),
        "{}",
        r.body
    );
}

/// psycopg2 (as dbt drives it) opens a transaction itself, then dbt sends `BEGIN`: PostgreSQL
/// answers a warning and goes on, and so does the gateway on both engines.
const PSYCOPG2_BEGIN: &str = r#"
import sys, psycopg2
host, port, key = sys.argv[1], sys.argv[2], sys.argv[3]
conn = psycopg2.connect(host=host, port=port, user="dbt", password=key, dbname="development")
cur = conn.cursor()
cur.execute("SELECT 1")
cur.execute("BEGIN")
cur.execute("CREATE TABLE model_a (id INTEGER)")
cur.execute("INSERT INTO model_a VALUES (1), (2)")
conn.commit()
cur.execute("COMMIT")
conn.commit()
conn.autocommit = True
cur.execute("ROLLBACK")
cur.execute("SELECT count(*) FROM model_a")
print(cur.fetchone()[0])
print("|".join(n.strip() for n in conn.notices))
"#;

async fn transaction_control_as_postgres_answers(db: Db, engine: Engine) {
    let o = Org::start(&db).await;
    let Some((env, _pg)) = development(&o, engine).await else {
        return;
    };
    let dev = o.query_key(&env, &["developer"], "developer").await;
    // HTTP: each request is its own session.
    let r = o.sql(&dev, "COMMIT", json!([])).await;
    r.expect(200);
    assert_eq!(r.body["command"], "COMMIT");
    assert_eq!(r.body["notices"][0]["sqlstate"], "25P01", "{}", r.body);
    let r = o.sql(&dev, "BEGIN; BEGIN", json!([])).await;
    r.expect(200);
    assert_eq!(r.body["notices"][0]["sqlstate"], "25001", "{}", r.body);

    let (host, port) = o.s.gateway.rsplit_once(':').unwrap();
    let Some((ok, out, err)) = python(PSYCOPG2_BEGIN, &[host, port, &dev]).await else {
        return;
    };
    assert!(ok, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "2", "{out}");
    // What PostgreSQL itself answers this script with (checked against PostgreSQL 15).
    assert_eq!(
        lines[1],
        "WARNING:  there is already a transaction in progress|WARNING:  there is no transaction in progress|WARNING:  there is no transaction in progress",
        "{out}"
    );
}

/// Copies the project of `tests/dbt` into `to`.
fn copy_project(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_project(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// dbt's Postgres adapter runs a project through the gateway: seed, view, table and
/// incremental models (merge and delete+insert) with Snowflake-flavoured SQL, tests, a
/// snapshot, the docs catalog, and a second (incremental) run.
async fn dbt_project_end_to_end(db: Db, engine: Engine) {
    let Some(python) = test_client("ENCLAVE_TEST_PYTHON") else {
        return;
    };
    let dbt = std::path::Path::new(&python).with_file_name("dbt");
    let o = Org::start(&db).await;
    let Some((env, _pg)) = development(&o, engine).await else {
        return;
    };
    let key = o.query_key(&env, &["developer"], "developer").await;
    let project = std::env::temp_dir().join(format!("enclave-dbt-{}", ulid::Ulid::new()));
    copy_project(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dbt"),
        &project,
    );
    let (host, port) = o.s.gateway.rsplit_once(':').unwrap();
    let schema = match engine {
        Engine::Embedded => "main",
        Engine::Postgres => "public",
    };
    std::fs::write(
        project.join("profiles.yml"),
        format!(
            "enclave:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: {host}\n      port: {port}\n      user: dbt\n      password: \"{key}\"\n      dbname: development\n      schema: {schema}\n      threads: 1\n"
        ),
    )
    .unwrap();
    for command in [
        &["seed"][..],
        &["run"],
        &["test"],
        &["snapshot"],
        &["docs", "generate"],
        &["run"],
    ] {
        let out = tokio::process::Command::new(&dbt)
            .args(command)
            .arg("--project-dir")
            .arg(&project)
            .arg("--profiles-dir")
            .arg(&project)
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .env("DO_NOT_TRACK", "1")
            .output()
            .await
            .expect("dbt is installed with the test clients");
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "dbt {command:?} on {engine:?}:\n{shown}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows = |sql: &'static str| {
        let o = &o;
        let key = key.clone();
        async move {
            let r = o.sql(&key, sql, json!([])).await;
            r.expect(200);
            r.body["rows"].clone()
        }
    };
    let totals = rows("SELECT region, customers, names FROM region_totals ORDER BY 1").await;
    assert!(
        same_rows(&json!([["eu", 2, "Ada,Cy"], ["na", 1, "Bo"]]), &totals),
        "{totals}"
    );
    let renewals = rows("SELECT id, renewal_date, active_flag FROM stg_customers ORDER BY 1").await;
    assert!(
        same_rows(
            &json!([
                [1, "2024-02-29", "yes"],
                [2, "2024-03-29", "no"],
                [3, "2024-04-15", "yes"]
            ]),
            &renewals
        ),
        "{renewals}"
    );
    let merged = rows("SELECT count(*) FROM customers_merge").await;
    assert!(same_rows(&json!([[3]]), &merged), "{merged}");
    let current = rows("SELECT count(*) FROM customers_snapshot WHERE dbt_valid_to IS NULL").await;
    assert!(same_rows(&json!([[3]]), &current), "{current}");
    let catalog: Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("target/catalog.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(catalog["nodes"].as_object().unwrap().len(), 6, "{catalog}");
    let _ = std::fs::remove_dir_all(&project);
}
