//! The gateway (docs/gateway.md) through both doors, with real clients: HTTP JSON and Arrow,
//! `psql`, psycopg 3 and psycopg2 on the wire. The sandbox, authorization by statement kind,
//! suspension, timeouts and the query audit are checked through the same doors.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{Db, Org};
use crate::{both, engines};
use enclave_store::testing::TempPostgres;

both!(sandbox_and_authorization, query_audit_trail);

engines!(
    http_queries_and_errors,
    arrow_results,
    timeouts_cancel_the_statement,
    wire_clients,
    tables_import_and_copy,
);

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Engine {
    Embedded,
    Postgres,
}

/// The development environment of a new organization, on `engine`: for PostgreSQL, a fresh
/// database whose URL is kept in the environment's `DATABASE_URL` secret (returned so that it
/// lives as long as the test). `None`: PostgreSQL is unreachable outside CI.
pub(crate) async fn development(o: &Org, engine: Engine) -> Option<(String, Option<TempPostgres>)> {
    on_engine(o, "development", engine).await
}

/// The environment `slug` of a new organization on `engine`, as [`development`] sets it up.
pub(crate) async fn on_engine(
    o: &Org,
    slug: &str,
    engine: Engine,
) -> Option<(String, Option<TempPostgres>)> {
    let env = o.env(slug).await;
    if engine == Engine::Embedded {
        return Some((env, None));
    }
    let pg = TempPostgres::create().await?;
    o.s.post(
        &format!("/v1/environments/{env}/secrets"),
        Some(&o.token),
        json!({"key": "DATABASE_URL", "value": pg.url}),
    )
    .await
    .expect(201);
    o.s.patch(
        &format!("/v1/environments/{env}"),
        &o.token,
        json!({"settings": {"engine": "postgres", "engine_secret": "DATABASE_URL"}}),
    )
    .await
    .expect(200);
    Some((env, Some(pg)))
}

impl Org {
    /// A new key of the development environment with `scopes` and `role`.
    pub(crate) async fn query_key(&self, env: &str, scopes: &[&str], role: &str) -> String {
        self.attributed_key(env, scopes, role, Value::Null).await
    }

    /// A new key of `env` with `scopes`, `role` and (unless null) `attributes`.
    pub(crate) async fn attributed_key(
        &self,
        env: &str,
        scopes: &[&str],
        role: &str,
        attributes: Value,
    ) -> String {
        let mut body = json!({"name": role, "scopes": scopes, "role": role});
        if !attributes.is_null() {
            body["attributes"] = attributes;
        }
        let r = self
            .s
            .post(
                &format!("/v1/environments/{env}/api-keys"),
                Some(&self.token),
                body,
            )
            .await;
        r.expect(201);
        r.body["key"].as_str().unwrap().to_string()
    }

    pub(crate) async fn sql(&self, key: &str, sql: &str, params: Value) -> crate::common::Resp {
        self.s
            .keyed(
                Method::POST,
                "/v1/query",
                key,
                Some(json!({"sql": sql, "params": params})),
            )
            .await
    }
}

impl Org {
    /// `POST …/tables/{table}/import` with `body` as `content_type`, options in `query`.
    pub(crate) async fn import_file(
        &self,
        key: &str,
        env: &str,
        table: &str,
        query: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> crate::common::Resp {
        let path = format!("/v1/environments/{env}/tables/{table}/import{query}");
        let mut req = self
            .s
            .request(Method::POST, &path, None)
            .header("x-api-key", key);
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        self.s.raw(req.body(body)).await
    }

    pub(crate) async fn count(&self, key: &str, table: &str) -> i64 {
        let r = self
            .sql(key, &format!("SELECT count(*) FROM {table}"), json!([]))
            .await;
        r.expect(200);
        r.body["rows"][0][0].as_i64().unwrap()
    }
}

pub(crate) fn sqlstate(r: &crate::common::Resp) -> &str {
    r.body["error"]["details"]["sqlstate"]
        .as_str()
        .unwrap_or_default()
}

async fn http_queries_and_errors(db: Db, engine: Engine) {
    let o = Org::start(&db).await;
    let Some((env, _pg)) = development(&o, engine).await else {
        return;
    };
    let dev = o.query_key(&env, &["developer"], "developer").await;

    o.sql(
        &dev,
        "CREATE TABLE users (id INTEGER, email VARCHAR, score DOUBLE PRECISION, joined DATE)",
        json!([]),
    )
    .await
    .expect(200);
    let r = o
        .sql(
            &dev,
            "INSERT INTO users VALUES (1, 'a@x.io', 1.5, '2026-01-02'), (2, 'b@x.io', NULL, '2026-03-04')",
            json!([]),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["command"], "INSERT 0 2");
    assert_eq!(r.body["row_count"], 2);

    let r = o
        .sql(
            &dev,
            "SELECT id, email, score, joined FROM users WHERE id >= $1 ORDER BY id",
            json!([1]),
        )
        .await;
    r.expect(200);
    assert_eq!(
        r.body["columns"],
        json!([{"name": "id", "type": "int4"}, {"name": "email", "type": "varchar"},
               {"name": "score", "type": "float8"}, {"name": "joined", "type": "date"}])
    );
    assert_eq!(
        r.body["rows"],
        json!([
            [1, "a@x.io", 1.5, "2026-01-02"],
            [2, "b@x.io", null, "2026-03-04"]
        ])
    );
    assert_eq!(r.body["row_count"], 2);
    assert_eq!(r.body["truncated"], false);
    assert!(r.body["query_id"].as_str().unwrap().starts_with("qry_"));
    // PostgreSQL's faces on both engines: columns named as PostgreSQL names them, and the
    // session functions answering with the caller (here the key), not the engine's account.
    let key_id = o.s.keyed(Method::GET, "/v1/auth/me", &dev, None).await.body["key"]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = o
        .sql(
            &dev,
            "SELECT count(*), sum(score), current_user, session_user AS who FROM users",
            json!([]),
        )
        .await;
    r.expect(200);
    let names: Vec<&str> = r.body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["count", "sum", "current_user", "who"]);
    assert_eq!(r.body["rows"][0][2], key_id.as_str());
    assert_eq!(r.body["rows"][0][3], key_id.as_str());
    let again = o
        .sql(&dev, "CREATE TABLE users (id INTEGER)", json!([]))
        .await;
    assert_eq!(sqlstate(&again), "42P07", "{}", again.body);
    // A string parameter compared with an integer column is cast by the engine.
    let r = o
        .sql(&dev, "SELECT email FROM users WHERE id = $1", json!(["2"]))
        .await;
    assert_eq!(r.body["rows"], json!([["b@x.io"]]));
    // Several statements: each runs, the last one answers.
    let r = o
        .sql(
            &dev,
            "UPDATE users SET score = 2 WHERE id = 2; SELECT score FROM users WHERE id = 2",
            json!([]),
        )
        .await;
    assert_eq!(r.body["rows"], json!([[2.0]]));

    // Errors: the SQLSTATE and (for syntax) the position, nothing changed.
    let r = o.sql(&dev, "SELECT * FROM users WHERE", json!([])).await;
    r.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(sqlstate(&r), "42601");
    assert!(
        r.body["error"]["details"]["position"].as_u64().is_some(),
        "{}",
        r.body
    );
    let r = o.sql(&dev, "SELECT * FROM nowhere", json!([])).await;
    r.expect(400);
    assert_eq!(sqlstate(&r), "42P01");
    let r = o.sql(&dev, "SELECT nope FROM users", json!([])).await;
    assert_eq!(sqlstate(&r), "42703");
    // Bad requests name the field.
    let r =
        o.s.keyed(Method::POST, "/v1/query", &dev, Some(json!({"sql": ""})))
            .await;
    r.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["error"]["details"]["field"], "sql");
    let r =
        o.s.keyed(
            Method::POST,
            "/v1/query",
            &dev,
            Some(json!({"sql": "SELECT $1", "params": [[1]]})),
        )
        .await;
    assert_eq!(r.body["error"]["details"]["field"], "params[0]");
    let r =
        o.s.keyed(
            Method::POST,
            "/v1/query",
            &dev,
            Some(json!({"sql": "SELECT 1", "timeout_ms": 0})),
        )
        .await;
    assert_eq!(r.body["error"]["details"]["field"], "timeout_ms");
    let r =
        o.s.keyed(
            Method::POST,
            "/v1/query",
            &dev,
            Some(json!({"sql": "SELECT 1", "nope": 1})),
        )
        .await;
    r.expect(400);

    // A user's token names the environment; another organization's user learns nothing.
    let r =
        o.s.post(
            "/v1/query",
            Some(&o.token),
            json!({"sql": "SELECT count(*) AS n FROM users", "env_id": env}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["rows"], json!([[2]]));
    let r =
        o.s.post("/v1/query", Some(&o.token), json!({"sql": "SELECT 1"}))
            .await;
    assert_eq!(r.body["error"]["details"]["field"], "env_id");
    let stranger =
        o.s.signup("someone@example.net", "a-long-password-42")
            .await;
    o.s.post(
        "/v1/query",
        Some(&stranger),
        json!({"sql": "SELECT 1", "env_id": env}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    // Each environment has its own data.
    let staging = o.env("staging").await;
    let other = o.query_key(&staging, &["developer"], "developer").await;
    let r = o.sql(&other, "SELECT * FROM users", json!([])).await;
    assert_eq!(sqlstate(&r), "42P01");
    // A key names no other environment.
    let r =
        o.s.keyed(
            Method::POST,
            "/v1/query",
            &dev,
            Some(json!({"sql": "SELECT 1", "env_id": staging})),
        )
        .await;
    r.expect(403);
}

async fn arrow_results(db: Db, engine: Engine) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let o = Org::start(&db).await;
    let Some((env, _pg)) = development(&o, engine).await else {
        return;
    };
    let dev = o.query_key(&env, &["developer"], "developer").await;
    let resp =
        o.s.client
            .post(format!("{}/v1/query/arrow", o.s.url))
            .header("X-API-Key", &dev)
            .json(&json!({"sql": "SELECT n::BIGINT AS n, 'row ' || n AS label FROM generate_series(0, 4999) AS g(n)"}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/vnd.apache.arrow.stream");
    assert!(h["x-query-id"].to_str().unwrap().starts_with("qry_"));
    assert_eq!(h["x-row-count"], "5000");
    assert_eq!(h["x-cache-hit"], "false");
    assert!(h.contains_key("x-duration-ms") && h.contains_key("x-credits-consumed"));
    let bytes = resp.bytes().await.unwrap();
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let mut total = 0i64;
    let mut rows = 0;
    for batch in reader {
        let batch = batch.unwrap();
        assert_eq!(batch.schema().field(1).name(), "label");
        total += batch
            .column(0)
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .sum::<i64>();
        rows += batch.num_rows();
    }
    assert_eq!((rows, total), (5000, (0..5000).sum()));
    // A statement without rows is for /v1/query.
    let r =
        o.s.keyed(
            Method::POST,
            "/v1/query/arrow",
            &dev,
            Some(json!({"sql": "CREATE TABLE t (a INT)"})),
        )
        .await;
    r.expect(400);
}

async fn sandbox_and_authorization(db: Db) {
    let o = Org::start(&db).await;
    let env = o.env("development").await;
    let dev = o.query_key(&env, &["developer"], "developer").await;
    o.sql(&dev, "CREATE TABLE t (a INTEGER)", json!([]))
        .await
        .expect(200);
    let outside = std::env::temp_dir().join(format!("enclave-sandbox-{}", ulid::Ulid::new()));
    for sql in [
        "SELECT * FROM read_csv('/etc/passwd')".to_string(),
        "SELECT * FROM read_text('/etc/passwd')".to_string(),
        format!("COPY t TO '{}'", outside.display()),
        "INSTALL httpfs".to_string(),
        "LOAD httpfs".to_string(),
        format!("ATTACH '{}' AS other", outside.display()),
        "SELECT * FROM glob('/etc/*')".to_string(),
    ] {
        let r = o.sql(&dev, &sql, json!([])).await;
        assert!(r.status >= 400, "{sql} ran: {}", r.body);
        assert!(
            !r.body.to_string().contains("root:"),
            "{sql} leaked a host file"
        );
    }
    assert!(!outside.exists(), "a statement wrote a host file");
    // Past the allow-list, the engine's own sandbox holds: a table named like a file is not
    // read from the disk.
    let r = o
        .sql(&dev, "SELECT * FROM \"/etc/passwd\"", json!([]))
        .await;
    assert!(
        r.status >= 400 && !r.body.to_string().contains("root:"),
        "{}",
        r.body
    );
    // `SET` of an engine setting stays on the session: the sandbox is still on.
    let r = o
        .sql(
            &dev,
            "SET enable_external_access = true; SELECT * FROM read_csv('/etc/passwd')",
            json!([]),
        )
        .await;
    assert!(r.status >= 400 && !r.body.to_string().contains("root:"));

    // A read-only key reads and cannot write (42501).
    let reader = o.query_key(&env, &["read_only"], "developer").await;
    o.sql(&reader, "SELECT * FROM t", json!([]))
        .await
        .expect(200);
    for sql in [
        "INSERT INTO t VALUES (1)",
        "DROP TABLE t",
        "CREATE TABLE u (a INT)",
    ] {
        let r = o.sql(&reader, sql, json!([])).await;
        r.expect_error(403, "FORBIDDEN");
        assert_eq!(sqlstate(&r), "42501", "{sql}");
    }
    // An analyst's key reads only, whatever its scopes.
    let analyst = o
        .query_key(&env, &["query:read", "query:write"], "analyst")
        .await;
    let r = o.sql(&analyst, "DELETE FROM t", json!([])).await;
    assert_eq!(r.error(), ("FORBIDDEN", "permission:write_data"));

    // A suspended environment refuses, through both doors; resumed, it answers again.
    o.s.post(
        &format!("/v1/environments/{env}/suspend"),
        Some(&o.token),
        json!({}),
    )
    .await
    .expect(200);
    o.sql(&dev, "SELECT 1", json!([])).await.expect(401);
    let r =
        o.s.post(
            "/v1/query",
            Some(&o.token),
            json!({"sql": "SELECT 1", "env_id": env}),
        )
        .await;
    r.expect(403);
    assert_eq!(sqlstate(&r), "42501");
    o.s.post(
        &format!("/v1/environments/{env}/resume"),
        Some(&o.token),
        json!({}),
    )
    .await
    .expect(200);
    o.sql(&dev, "SELECT 1", json!([])).await.expect(200);
}

async fn timeouts_cancel_the_statement(db: Db, engine: Engine) {
    let o = Org::start(&db).await;
    let Some((env, _pg)) = development(&o, engine).await else {
        return;
    };
    let dev = o.query_key(&env, &["developer"], "developer").await;
    let heavy = match engine {
        Engine::Embedded => {
            "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range + b.range = 7"
        }
        Engine::Postgres => "SELECT pg_sleep(60)",
    };
    let started = Instant::now();
    let r =
        o.s.keyed(
            Method::POST,
            "/v1/query",
            &dev,
            Some(json!({"sql": heavy, "timeout_ms": 300})),
        )
        .await;
    let took = started.elapsed();
    r.expect(408);
    assert_eq!(sqlstate(&r), "57014");
    assert!(
        took < Duration::from_millis(300 + 200),
        "cancelled after {took:?}"
    );
    // The environment's own setting applies too.
    o.s.patch(
        &format!("/v1/environments/{env}"),
        &o.token,
        json!({"settings": {"query_timeout_ms": 200}}),
    )
    .await
    .expect(200);
    let started = Instant::now();
    let r = o.sql(&dev, heavy, json!([])).await;
    assert_eq!(sqlstate(&r), "57014");
    assert!(started.elapsed() < Duration::from_millis(200 + 200));
    // The connection is usable afterwards.
    o.sql(&dev, "SELECT 1", json!([])).await.expect(200);

    // A wire client's cancel request stops its running statement (57014), and the session
    // goes on; the trail says `cancelled`.
    o.s.patch(
        &format!("/v1/environments/{env}"),
        &o.token,
        json!({"settings": {"query_timeout_ms": 60000}}),
    )
    .await
    .expect(200);
    if let Some((ok, out, err)) = python(CANCEL, &[&o.s.gateway, &dev, heavy]).await {
        assert!(ok, "cancel failed: {err}");
        assert_eq!(out.trim(), "57014 True 1", "{err}");
        let r =
            o.s.get(
                &format!("/v1/environments/{env}/audit/queries?outcome=cancelled"),
                &o.token,
            )
            .await;
        assert_eq!(r.body["data"][0]["error_code"], "57014");
    }
}

const CANCEL: &str = r#"
import sys, threading, time, psycopg
addr, key, heavy = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = addr.rsplit(":", 1)
with psycopg.connect(host=host, port=port, user="agent", password=key, dbname="development",
                     autocommit=True) as conn:
    threading.Timer(0.5, conn.cancel).start()
    started = time.monotonic()
    try:
        conn.execute(heavy)
        print("not cancelled")
    except psycopg.errors.QueryCanceled as e:
        print(e.sqlstate, time.monotonic() - started < 5, conn.execute("SELECT 1").fetchone()[0])
"#;

async fn query_audit_trail(db: Db) {
    let o = Org::start(&db).await;
    let env = o.env("development").await;
    let dev = o.query_key(&env, &["developer"], "developer").await;
    let reader = o.query_key(&env, &["read_only"], "developer").await;
    o.sql(
        &dev,
        "CREATE TABLE people (name VARCHAR, ssn VARCHAR)",
        json!([]),
    )
    .await
    .expect(200);
    o.sql(
        &dev,
        "INSERT INTO people VALUES ('Ada', '123-45-6789')",
        json!([]),
    )
    .await
    .expect(200);
    o.sql(
        &dev,
        "SELECT * FROM people WHERE ssn = '123-45-6789'",
        json!([]),
    )
    .await
    .expect(200);
    o.sql(&reader, "DELETE FROM people", json!([]))
        .await
        .expect(403);
    o.sql(&dev, "SELEC nonsense '123-45-6789'", json!([]))
        .await
        .expect(400);

    let base = format!("/v1/environments/{env}/audit/queries");
    let r = o.s.get(&base, &o.token).await;
    r.expect(200);
    let entries = r.body["data"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 5, "{}", r.body);
    // No literal reaches the trail.
    assert!(!r.body.to_string().contains("123-45-6789"), "{}", r.body);
    assert!(!r.body.to_string().contains("Ada"));
    let select = entries
        .iter()
        .find(|e| e["statement_kind"] == "read")
        .unwrap();
    assert_eq!(select["sql_redacted"], "SELECT * FROM people WHERE ssn = ?");
    assert_eq!(select["tables"], json!(["people"]));
    assert_eq!(select["rows_returned"], 1);
    assert_eq!(select["outcome"], "ok");
    assert_eq!(select["door"], "http");
    let refused = entries
        .iter()
        .find(|e| e["outcome"] == "refused" && e["statement_kind"] == "write")
        .unwrap();
    assert_eq!(refused["error_code"], "42501");
    let syntax = entries
        .iter()
        .find(|e| e["statement_kind"].is_null())
        .unwrap();
    assert_eq!(
        (syntax["outcome"].as_str(), syntax["error_code"].as_str()),
        (Some("refused"), Some("42601"))
    );
    assert!(syntax["sql_redacted"].is_null());
    // Filters, one entry, verify, export.
    let r = o.s.get(&format!("{base}?outcome=refused"), &o.token).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    o.s.get(&format!("{base}?outcome=maybe"), &o.token)
        .await
        .expect_error(400, "VALIDATION_ERROR");
    let id = select["query_id"].as_str().unwrap();
    let r = o.s.get(&format!("{base}/{id}"), &o.token).await;
    assert_eq!(r.body, *select);
    let r = o.s.get(&format!("{base}/verify"), &o.token).await;
    assert_eq!(r.body["chain_valid"], true);
    assert_eq!(r.body["entry_count"], 5);
    let export =
        o.s.client
            .get(format!("{}{base}/export", o.s.url))
            .bearer_auth(&o.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(enclave_core::audit::verify(lines.iter()).chain_valid);
    // Keys read it only with audit:read; the developer key without it gets 403.
    o.s.keyed(Method::GET, &base, &dev, None).await.expect(403);

    // Tampering with the stored trail is detected and named.
    let pool_sql = format!(
        "UPDATE query_audit SET entry_json = replace(entry_json, '\"rows_returned\":1', '\"rows_returned\":9') \
         WHERE query_id = '{id}'"
    );
    if db.is_postgres() {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query(&pool_sql).execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query(&pool_sql).execute(&pool).await.unwrap();
    }
    let r = o.s.get(&format!("{base}/verify"), &o.token).await;
    assert_eq!(r.body["chain_valid"], false);
    assert_eq!(r.body["first_invalid_entry"]["entry_id"], id);
}

/// Runs `psql` against the gateway with `key` as the password.
pub(crate) async fn psql(
    o: &Org,
    key: &str,
    database: &str,
    args: &[&str],
) -> (bool, String, String) {
    psql_with(o, "agent", key, database, args, "prefer").await
}

pub(crate) async fn psql_with(
    o: &Org,
    user: &str,
    password: &str,
    database: &str,
    args: &[&str],
    sslmode: &str,
) -> (bool, String, String) {
    let (host, port) = o.s.gateway.rsplit_once(':').unwrap();
    let out = tokio::process::Command::new("psql")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-U",
            user,
            "-d",
            database,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", sslmode)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await
        .expect("psql is installed");
    outcome(out)
}

/// A test client installed by `scripts/test-clients` (its path in `var`); outside CI a missing
/// one skips that part of the test, in CI it is a failure.
pub(crate) fn test_client(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(p) => Some(p),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set: run the tests through scripts/test")
        }
        Err(_) => {
            eprintln!("skipping a client test: {var} is not set");
            None
        }
    }
}

/// A client's exit status, stdout and stderr.
fn outcome(out: std::process::Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Runs a Python snippet with the test clients' interpreter (psycopg 3 and 2).
pub(crate) async fn python(script: &str, args: &[&str]) -> Option<(bool, String, String)> {
    let python = test_client("ENCLAVE_TEST_PYTHON")?;
    let out = tokio::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .await
        .unwrap();
    Some(outcome(out))
}

/// Runs a node-postgres snippet.
async fn node(script: &str, args: &[&str]) -> Option<(bool, String, String)> {
    let modules = test_client("ENCLAVE_TEST_NODE_PATH")?;
    let out = tokio::process::Command::new("node")
        .arg("-e")
        .arg(script)
        .arg("--")
        .args(args)
        .env("NODE_PATH", modules)
        .output()
        .await
        .expect("node is installed");
    Some(outcome(out))
}

const NODE_PG: &str = r#"
const { Client } = require('pg');
const [host, port, password] = process.argv.slice(1);
(async () => {
  const client = new Client({ host, port: Number(port), user: 'agent', password, database: 'development',
                              application_name: 'node-test' });
  await client.connect();
  const r = await client.query('SELECT $1::int + 1 AS n, $2 AS s', [41, 'hi']);
  console.log(JSON.stringify(r.rows));
  const v = await client.query('SELECT version() AS v');
  console.log(v.rows[0].v.startsWith('PostgreSQL ') ? 'version ok' : v.rows[0].v);
  try { await client.query('SELECT nope FROM items'); } catch (e) { console.log('error', e.code); }
  await client.end();
})().catch((e) => { console.error(e); process.exit(1); });
"#;

const PSYCOPG3: &str = r#"
import sys, psycopg
host, port, key = sys.argv[1], sys.argv[2], sys.argv[3]
with psycopg.connect(host=host, port=port, user="agent", password=key, dbname="development",
                     application_name="pytest", options="-c enclave_framework=psycopg") as conn:
    cur = conn.cursor()
    cur.execute("CREATE TABLE items (id INTEGER, name VARCHAR, price DOUBLE PRECISION)")
    cur.executemany("INSERT INTO items VALUES (%s, %s, %s)", [(1, "pen", 1.5), (2, "ink", 4.25), (3, "pad", None)])
    conn.commit()
    cur.execute("SELECT name, price FROM items WHERE id >= %s AND name <> %s ORDER BY id", (2, "zzz"))
    print(cur.fetchall())
    # A server-side prepared statement, reused.
    for i in (1, 3):
        cur.execute("SELECT name FROM items WHERE id = %s", (i,), prepare=True)
        print(cur.fetchone()[0])
    cur.execute("SHOW server_version")
    print(cur.fetchone()[0])
    cur.execute("SET my.request_id = 'abc'")
    cur.execute("SHOW my.request_id")
    print(cur.fetchone()[0])
    try:
        cur.execute("DELETE FROM nowhere")
    except psycopg.Error as e:
        print("error", e.sqlstate)
"#;

const PSYCOPG2: &str = r#"
import sys, psycopg2
host, port, key = sys.argv[1], sys.argv[2], sys.argv[3]
conn = psycopg2.connect(host=host, port=port, user="agent", password=key, dbname="development")
cur = conn.cursor()
cur.execute("SELECT count(*), sum(price) FROM items WHERE price > %s", (1,))
print(cur.fetchone())
conn.close()
"#;

async fn wire_clients(db: Db, engine: Engine) {
    let o = Org::start(&db).await;
    let Some((env, _pg)) = development(&o, engine).await else {
        return;
    };
    let dev = o.query_key(&env, &["developer"], "developer").await;
    let (host, port) = o.s.gateway.rsplit_once(':').unwrap();
    let (host, port) = (host.to_string(), port.to_string());

    if let Some((ok, out, err)) = python(PSYCOPG3, &[&host, &port, &dev]).await {
        assert!(ok, "psycopg 3 failed: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "[('ink', 4.25), ('pad', None)]");
        assert_eq!(&lines[1..3], ["pen", "pad"]);
        assert!(lines[3].starts_with("15"));
        assert_eq!(lines[4], "abc");
        assert_eq!(lines[5], "error 42P01");
        let (ok, out, err) = python(PSYCOPG2, &[&host, &port, &dev]).await.unwrap();
        assert!(ok, "psycopg2 failed: {err}");
        assert_eq!(out.trim(), "(2, 5.75)");
    } else {
        let (ok, _, err) = psql(
            &o,
            &dev,
            "development",
            &[
                "-c",
                "CREATE TABLE items (id INTEGER, name VARCHAR, price DOUBLE PRECISION)",
            ],
        )
        .await;
        assert!(ok, "{err}");
    }

    // node-postgres: parameters (extended protocol), version(), an error's SQLSTATE.
    if let Some((ok, out, err)) = node(NODE_PG, &[&host, &port, &dev]).await {
        assert!(ok, "node-postgres failed: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [r#"[{"n":42,"s":"hi"}]"#, "version ok", "error 42703"]
        );
    }

    // psql: a query and \dt.
    let (ok, out, err) = psql(
        &o,
        &dev,
        "development",
        &["-A", "-t", "-c", "SELECT 40 + 2 AS answer"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "42");
    let (ok, out, err) = psql(&o, &dev, "development", &["-c", "\\dt"]).await;
    assert!(ok, "\\dt failed: {err}");
    assert!(out.contains("items"), "{out}");
    let (ok, out, err) = psql(&o, &dev, "development", &["-c", "\\d items"]).await;
    assert!(ok, "\\d failed: {err}");
    assert!(out.contains("price") && out.contains("name"), "{out}");
    let (ok, out, err) = psql(&o, &dev, "development", &["-c", "\\l"]).await;
    assert!(ok, "\\l failed: {err}");
    if engine == Engine::Embedded {
        assert!(out.contains("development"), "{out}");
    }
    // Errors carry their SQLSTATE and the Enclave code in DETAIL.
    let (ok, _, err) = psql(
        &o,
        &dev,
        "development",
        &[
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "COPY items TO '/tmp/items.csv'",
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("42501") && err.contains("FORBIDDEN"), "{err}");
    // The database, when named, must be the key's environment; a bad key is refused.
    let (ok, _, err) = psql(&o, &dev, "staging", &["-c", "SELECT 1"]).await;
    assert!(!ok && err.contains("does not match"), "{err}");
    let (ok, _, _) = psql(&o, "ek_live_nope", "development", &["-c", "SELECT 1"]).await;
    assert!(!ok);
    // A person connects as themselves: e-mail, a current access token, the environment's slug;
    // their role decides. Another e-mail with the token is refused.
    let as_owner = ["-A", "-t", "-c", "SELECT count(*) FROM items"];
    let (ok, out, err) = psql_with(
        &o,
        crate::common::OWNER_EMAIL,
        &o.token,
        "development",
        &as_owner,
        "prefer",
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.trim().parse::<i64>().is_ok(), "{out}");
    let (ok, _, err) = psql_with(
        &o,
        "someone@example.net",
        &o.token,
        "development",
        &as_owner,
        "prefer",
    )
    .await;
    assert!(!ok && err.contains("access token"), "{err}");
    let (ok, _, err) = psql_with(
        &o,
        crate::common::OWNER_EMAIL,
        "not-a-token",
        "development",
        &as_owner,
        "prefer",
    )
    .await;
    assert!(
        !ok && err.contains("access token as the password"),
        "the refusal says what to use: {err}"
    );

    // A read-only key cannot write on the wire either.
    let reader = o.query_key(&env, &["read_only"], "developer").await;
    let (ok, _, err) = psql(&o, &reader, "development", &["-c", "DELETE FROM items"]).await;
    assert!(
        !ok && (err.contains("42501") || err.contains("scope")),
        "{err}"
    );

    // The wire's statements are in the trail, with the agent identity of the session.
    let r =
        o.s.get(
            &format!("/v1/environments/{env}/audit/queries?limit=200"),
            &o.token,
        )
        .await;
    let entries = r.body["data"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["door"] == "wire" && e["agent"]["framework"] == "psycopg")
            || std::env::var("ENCLAVE_TEST_PYTHON").is_err()
    );
    // The literal is redacted (looked for in the statements only: a timestamp such as
    // `…:14.251Z` may hold the same digits).
    assert!(entries
        .iter()
        .all(|e| !e["sql_redacted"].to_string().contains("4.25")));
    assert!(entries
        .iter()
        .any(|e| e["door"] == "wire" && e["principal"]["type"] == "user"));
}

/// Tables are listed as the engine has them; CSV and Parquet imports create or append to a
/// table in one transaction (all rows or none); `COPY … FROM STDIN` loads on the wire, from
/// psql (text and CSV formats) and psycopg.
async fn tables_import_and_copy(db: Db, engine: Engine) {
    let o = Org::start(&db).await;
    let Some((env, _pg)) = development(&o, engine).await else {
        return;
    };
    let dev = o.query_key(&env, &["developer"], "developer").await;
    let csv = "text/csv";

    // A CSV creates the table, types inferred from the data.
    let r = o
        .import_file(
            &dev,
            &env,
            "items",
            "",
            csv,
            b"id,name,price\n1,pen,1.5\n2,ink,\n3,\"a, b\",2\n".to_vec(),
        )
        .await;
    r.expect(201);
    assert_eq!(r.body["rows_imported"], 3);
    assert_eq!(r.body["created"], true);
    assert!(r.body["query_id"].as_str().unwrap().starts_with("qry_"));
    let r =
        o.s.keyed(
            Method::GET,
            &format!("/v1/environments/{env}/tables"),
            &dev,
            None,
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["pagination"]["total"], 1);
    let items = &r.body["data"][0];
    assert_eq!(items["name"], "items");
    assert_eq!(items["kind"], "table");
    let columns: Vec<(&str, &str)> = items["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    let expected = match engine {
        Engine::Embedded => [("id", "BIGINT"), ("name", "VARCHAR"), ("price", "DOUBLE")],
        Engine::Postgres => [
            ("id", "bigint"),
            ("name", "text"),
            ("price", "double precision"),
        ],
    };
    assert_eq!(columns, expected);
    // A user's token lists them as well; one table by name; bad and missing names.
    let r =
        o.s.get(&format!("/v1/environments/{env}/tables/ITEMS"), &o.token)
            .await;
    r.expect(200);
    assert_eq!(r.body["columns"].as_array().unwrap().len(), 3);
    o.s.get(&format!("/v1/environments/{env}/tables/nowhere"), &o.token)
        .await
        .expect(404);
    let r =
        o.s.get(&format!("/v1/environments/{env}/tables/a.b"), &o.token)
            .await;
    r.expect(400);
    assert_eq!(r.body["error"]["details"]["field"], "table");

    // Appending matches columns by name; missing ones are NULL; "007" stays text.
    let r = o
        .import_file(&dev, &env, "items", "", csv, b"name,id\n007,4\n".to_vec())
        .await;
    r.expect(200);
    assert_eq!(
        (
            r.body["rows_imported"].as_i64(),
            r.body["created"].as_bool()
        ),
        (Some(1), Some(false))
    );
    let r = o
        .sql(
            &dev,
            "SELECT name, price FROM items WHERE id = 4",
            json!([]),
        )
        .await;
    assert_eq!(r.body["rows"], json!([["007", null]]));
    // Without a header, by position; another delimiter.
    let r = o
        .import_file(
            &dev,
            &env,
            "items",
            "?header=false&delimiter=%3B",
            csv,
            b"5;pad;3.5\n".to_vec(),
        )
        .await;
    r.expect(200);
    assert_eq!(o.count(&dev, "items").await, 5);

    // Refusals change nothing: an unknown column, a value of the wrong type halfway through,
    // a bad file, no format, bad options.
    let r = o
        .import_file(&dev, &env, "items", "", csv, b"id,colour\n6,red\n".to_vec())
        .await;
    r.expect(400);
    assert_eq!(sqlstate(&r), "42703");
    let mut rows = String::from("id,name\n");
    for i in 0..5000 {
        rows.push_str(&format!("{i},n{i}\n"));
    }
    rows.push_str("oops,x\n");
    let r = o
        .import_file(&dev, &env, "items", "", csv, rows.into_bytes())
        .await;
    r.expect(400);
    assert_eq!(sqlstate(&r), "22P02", "{}", r.body);
    assert_eq!(o.count(&dev, "items").await, 5);
    let r = o
        .import_file(
            &dev,
            &env,
            "items",
            "?header=false",
            csv,
            b"1,\"unterminated\n".to_vec(),
        )
        .await;
    r.expect(400);
    assert_eq!(o.count(&dev, "items").await, 5);
    let r = o
        .import_file(&dev, &env, "items", "", "", b"id\n1\n".to_vec())
        .await;
    r.expect(415);
    assert_eq!(r.body["error"]["details"]["field"], "format");
    let r = o
        .import_file(
            &dev,
            &env,
            "items",
            "?delimiter=ab",
            csv,
            b"id\n1\n".to_vec(),
        )
        .await;
    r.expect(400);
    assert_eq!(r.body["error"]["details"]["field"], "delimiter");
    let r = o.import_file(&dev, &env, "fresh", "", csv, vec![]).await;
    r.expect(400);
    let r = o
        .import_file(
            &dev,
            &env,
            "missing",
            "?create=false",
            csv,
            b"id\n1\n".to_vec(),
        )
        .await;
    r.expect(404);
    assert_eq!(sqlstate(&r), "42P01");

    // Authorization: a read-only key cannot import; a key that may write but not create
    // tables may append only.
    let reader = o.query_key(&env, &["read_only"], "developer").await;
    let r = o
        .import_file(&reader, &env, "items", "", csv, b"id\n9\n".to_vec())
        .await;
    r.expect(403);
    assert_eq!(sqlstate(&r), "42501");
    let writer = o
        .query_key(&env, &["query:read", "query:write"], "developer")
        .await;
    o.import_file(&writer, &env, "items", "", csv, b"id\n9\n".to_vec())
        .await
        .expect(200);
    let r = o
        .import_file(&writer, &env, "other", "", csv, b"id\n9\n".to_vec())
        .await;
    r.expect(403);
    assert_eq!(sqlstate(&r), "42501");
    assert_eq!(o.count(&dev, "items").await, 6);

    // Parquet, written by DuckDB itself.
    let dir = std::env::temp_dir().join(format!("enclave-import-{env}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prices.parquet");
    {
        let duck = enclave_gateway::duckdb::Connection::open_in_memory().unwrap();
        duck.execute_batch(&format!(
            "COPY (SELECT range AS id, 'p' || range AS label, range * 0.5 AS amount FROM range(1000)) \
             TO '{}' (FORMAT parquet)",
            file.display()
        ))
        .unwrap();
    }
    let parquet = std::fs::read(&file).unwrap();
    let r = o
        .import_file(
            &dev,
            &env,
            "prices",
            "",
            "application/vnd.apache.parquet",
            parquet,
        )
        .await;
    r.expect(201);
    assert_eq!(r.body["rows_imported"], 1000);
    // An empty body is refused, not imported as no rows.
    let empty = o
        .import_file(&dev, &env, "prices", "", "text/csv", Vec::new())
        .await;
    empty.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(empty.body["error"]["details"]["field"], "body");
    assert_eq!(empty.body["error"]["details"]["sqlstate"], "22P04");
    // A malformed file is refused saying where, never with the server's own file paths.
    o.sql(
        &dev,
        "CREATE TABLE typed (id INTEGER, name VARCHAR)",
        json!([]),
    )
    .await
    .expect(200);
    let bad = o
        .import_file(
            &dev,
            &env,
            "typed",
            "",
            "text/csv",
            b"id,name\n1,a\nabc,b\n".to_vec(),
        )
        .await;
    bad.expect_error(400, "VALIDATION_ERROR");
    assert!(!bad.body.to_string().contains("/spool"), "{}", bad.body);
    if engine == Engine::Embedded {
        let details = &bad.body["error"]["details"];
        assert_eq!(
            (details["line"].as_u64(), details["column"].as_str()),
            (Some(3), Some("id")),
            "{}",
            bad.body
        );
        assert_eq!(details["sqlstate"], "22P02");
    }
    let ragged = o
        .import_file(
            &dev,
            &env,
            "fresh",
            "",
            "text/csv",
            b"id,name\n1,a,extra\n2\n".to_vec(),
        )
        .await;
    ragged.expect_error(400, "VALIDATION_ERROR");
    assert!(
        !ragged.body.to_string().contains("/spool"),
        "{}",
        ragged.body
    );
    let r = o
        .sql(
            &dev,
            "SELECT sum(amount), max(label) FROM prices",
            json!([]),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["rows"][0][1], "p999");

    // COPY FROM STDIN has no STDIN over HTTP.
    let r = o.sql(&dev, "COPY items FROM STDIN", json!([])).await;
    r.expect(400);
    assert_eq!(sqlstate(&r), "0A000");

    // psql: the text format (tabs, \N, escapes) and \copy of a CSV file.
    let script = dir.join("copy.sql");
    std::fs::write(
        &script,
        "COPY items (id, name, price) FROM STDIN;\n10\ttab\\there\t\\N\n11\tplain\t2.5\n\\.\n",
    )
    .unwrap();
    let (ok, out, err) = psql(&o, &dev, "development", &["-f", script.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("COPY 2"), "{out}");
    let r = o
        .sql(
            &dev,
            "SELECT name, price FROM items WHERE id = 10",
            json!([]),
        )
        .await;
    assert_eq!(r.body["rows"], json!([["tab\there", null]]));
    let data = dir.join("more.csv");
    std::fs::write(&data, "id,name\n12,twelve\n13,\"thir,teen\"\n").unwrap();
    let copy = format!(
        "\\copy items (id, name) from '{}' csv header",
        data.display()
    );
    let (ok, out, err) = psql(&o, &dev, "development", &["-c", &copy]).await;
    assert!(ok, "{err}");
    assert!(out.contains("COPY 2"), "{out}");
    assert_eq!(o.count(&dev, "items").await, 10);
    // A bad row fails the whole COPY, and the session goes on.
    std::fs::write(
        &script,
        "COPY items (id, name) FROM STDIN;\n14\tok\nnope\tbad\n\\.\nSELECT count(*) FROM items;\n",
    )
    .unwrap();
    let (ok, _, err) = psql(
        &o,
        &dev,
        "development",
        &["-v", "ON_ERROR_STOP=0", "-f", script.to_str().unwrap()],
    )
    .await;
    assert!(ok && err.contains("ERROR"), "{err}");
    assert_eq!(o.count(&dev, "items").await, 10);
    let (ok, _, err) = psql(&o, &reader, "development", &["-c", &copy]).await;
    assert!(
        !ok && (err.contains("42501") || err.contains("scope")),
        "{err}"
    );

    if let Some((ok, out, err)) = python(PSYCOPG3_COPY, &[&o.s.gateway, &dev]).await {
        assert!(ok, "psycopg copy failed: {err}");
        assert_eq!(out.trim(), "3");
    }
    // A deletion's dry run counts the environment's tables, on either engine.
    let listed =
        o.s.keyed(
            Method::GET,
            &format!("/v1/environments/{env}/tables"),
            &dev,
            None,
        )
        .await;
    let total = listed.body["pagination"]["total"].as_i64().unwrap();
    assert!(total >= 2, "{}", listed.body);
    let preview =
        o.s.delete(&format!("/v1/environments/{env}?dry_run=true"), &o.token)
            .await;
    preview.expect(200);
    assert_eq!(preview.body["would_delete"]["tables"], total);
    std::fs::remove_dir_all(&dir).unwrap();

    // Every load is in the query trail as the COPY it is, with the rows it loaded.
    let r =
        o.s.get(
            &format!("/v1/environments/{env}/audit/queries?statement_kind=write&limit=200"),
            &o.token,
        )
        .await;
    let entries = r.body["data"].as_array().unwrap();
    let first = entries
        .iter()
        .find(|e| e["rows_returned"] == 3 && e["door"] == "http")
        .unwrap();
    assert!(
        first["sql_redacted"].as_str().unwrap().starts_with("COPY"),
        "{first}"
    );
    assert_eq!(first["tables"], json!(["items"]));
    assert!(entries
        .iter()
        .any(|e| e["door"] == "wire" && e["rows_returned"] == 2));
    assert!(entries
        .iter()
        .any(|e| e["outcome"] == "error" && e["error_code"] == "22P02"));
}

const PSYCOPG3_COPY: &str = r#"
import sys, psycopg
addr, key = sys.argv[1], sys.argv[2]
host, port = addr.rsplit(":", 1)
with psycopg.connect(host=host, port=port, user="agent", password=key, dbname="development") as conn:
    cur = conn.cursor()
    cur.execute("CREATE TABLE copied (id INTEGER, name VARCHAR)")
    with cur.copy("COPY copied (id, name) FROM STDIN") as copy:
        for row in [(1, "a"), (2, "b\tc"), (3, None)]:
            copy.write_row(row)
    conn.commit()
    cur.execute("SELECT count(*) FROM copied WHERE id > 0")
    print(cur.fetchone()[0])
"#;

/// With a certificate the gateway speaks TLS; in `require` mode a plaintext client is
/// refused before it sends its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_require_mode() {
    let db = Db::sqlite();
    let dir = db.data_dir();
    let (cert, key) = (dir.join("gateway.crt"), dir.join("gateway.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args = crate::audit::walk_args(&db);
    args.gateway_tls_cert = Some(cert);
    args.gateway_tls_key = Some(key);
    args.gateway_tls_require = Some(true);
    let o = Org::start_with(args).await;
    let env = o.env("development").await;
    let dev = o.query_key(&env, &["developer"], "developer").await;

    let (ok, out, err) = psql_with(
        &o,
        "agent",
        &dev,
        "development",
        &["-c", "\\conninfo", "-c", "SELECT 7"],
        "require",
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("SSL connection") && out.contains('7'), "{out}");
    let (ok, _, err) = psql_with(
        &o,
        "agent",
        &dev,
        "development",
        &["-c", "SELECT 7"],
        "disable",
    )
    .await;
    assert!(!ok && err.contains("requires TLS"), "{err}");
    // The HTTP door is unaffected.
    o.sql(&dev, "SELECT 7", json!([])).await.expect(200);
}
