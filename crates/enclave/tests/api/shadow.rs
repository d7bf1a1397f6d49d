//! Shadow environments through the real server: production's reads replayed in staging under
//! staging's data and policies — matches, mismatches (rows or a mask differ), errors (a table
//! staging lacks), writes never replayed, nothing at a zero sample rate — a report that never
//! shows rows, the API's rules, and a full replay queue that drops rather than delays.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{Db, Org, Resp};

crate::both!(staging_shadows_production, shadow_rules);

struct Fixture {
    o: Org,
    prod: String,
    staging: String,
    key: String,
}

impl Fixture {
    async fn start(db: &Db) -> Fixture {
        Fixture::with(Org::start(db).await).await
    }

    async fn with(o: Org) -> Fixture {
        let prod = o.env("production").await;
        let staging = o.env("staging").await;
        for env in [&prod, &staging] {
            for sql in [
                "CREATE TABLE orders (id INT, customer TEXT, total INT)",
                "INSERT INTO orders VALUES (1, 'ada', 10), (2, 'bo', 20), (3, 'cy', 30)",
            ] {
                o.s.post(
                    "/v1/query",
                    Some(&o.token),
                    json!({"sql": sql, "env_id": env}),
                )
                .await
                .expect(200);
            }
        }
        let key = o.query_key(&prod, &["developer"], "developer").await;
        Fixture {
            o,
            prod,
            staging,
            key,
        }
    }

    async fn read(&self, sql: &str) -> Resp {
        let r = self
            .o
            .s
            .keyed(
                Method::POST,
                "/v1/query",
                &self.key,
                Some(json!({ "sql": sql })),
            )
            .await;
        r
    }

    async fn shadow(&self, body: Value) -> Resp {
        let path = format!("/v1/environments/{}/shadow", self.prod);
        self.o.s.post(&path, Some(&self.o.token), body).await
    }

    async fn report(&self) -> Resp {
        let path = format!("/v1/environments/{}/shadow/report", self.prod);
        self.o.s.get(&path, &self.o.token).await
    }

    /// The report once `done` says it is complete (replays are asynchronous).
    async fn report_when(&self, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            let r = self.report().await;
            r.expect(200);
            if done(&r.body) {
                return r.body;
            }
            last = r.body;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the report did not get there: {last}");
    }
}

fn compared(r: &Value) -> i64 {
    ["matches", "mismatches", "errors"]
        .iter()
        .map(|k| r[*k].as_i64().unwrap())
        .sum()
}

async fn staging_shadows_production(db: Db) {
    let f = Fixture::start(&db).await;
    let r = f
        .shadow(json!({"target_env_id": f.staging, "sample_rate": 1}))
        .await;
    r.expect(201);
    assert_eq!(r.body["statement_kinds"], json!(["read"]));
    // Same data: a match, whatever the order.
    f.read("SELECT id, customer FROM orders ORDER BY id")
        .await
        .expect(200);
    let report = f.report_when(|r| compared(r) == 1).await;
    assert_eq!(report["matches"], 1, "{report}");
    assert_eq!(report["active"], true);
    // Writes are not replayed; staging's data stays its own.
    f.read("INSERT INTO orders VALUES (4, 'di', 40)")
        .await
        .expect(200);
    // Now the row counts differ: a mismatch.
    f.read("SELECT id FROM orders").await.expect(200);
    let report = f.report_when(|r| compared(r) == 2).await;
    assert_eq!(report["mismatches"], 1, "{report}");
    let m = &report["latest"][0];
    assert_eq!(m["verdict"], "mismatch");
    assert_eq!(m["sql_redacted"], "SELECT id FROM orders");
    assert_eq!(
        (
            m["primary"]["row_count"].as_i64(),
            m["shadow"]["row_count"].as_i64()
        ),
        (Some(4), Some(3))
    );
    assert!(m["primary"]["rows_hash"].as_str().unwrap().len() == 64);
    // Staging's own policies apply to the replay: a mask there changes the hash, not the count.
    f.o.s
        .post(
            &format!("/v1/environments/{}/policies", f.staging),
            Some(&f.o.token),
            json!({"name": "hide-customers", "type": "column_masking",
                   "rules": [{"table": "orders", "column": "customer", "function": "hash"}]}),
        )
        .await
        .expect(201);
    f.read("SELECT customer FROM orders WHERE id < 4")
        .await
        .expect(200);
    // A table staging lacks: the replay fails, the caller does not.
    f.o.s
        .post(
            "/v1/query",
            Some(&f.o.token),
            json!({"sql": "CREATE TABLE only_prod (x INT)", "env_id": f.prod}),
        )
        .await
        .expect(200);
    f.read("SELECT x FROM only_prod").await.expect(200);
    let report = f.report_when(|r| compared(r) == 4).await;
    assert_eq!(
        (
            report["matches"].as_i64(),
            report["mismatches"].as_i64(),
            report["errors"].as_i64()
        ),
        (Some(1), Some(2), Some(1)),
        "{report}"
    );
    let latest = report["latest"].as_array().unwrap();
    let masked = latest
        .iter()
        .find(|m| m["sql_redacted"].as_str().unwrap().contains("customer"))
        .unwrap();
    assert_eq!(
        masked["primary"]["row_count"],
        masked["shadow"]["row_count"]
    );
    assert_ne!(
        masked["primary"]["rows_hash"],
        masked["shadow"]["rows_hash"]
    );
    let failed = latest.iter().find(|m| m["verdict"] == "error").unwrap();
    assert_eq!(failed["shadow"]["error_code"], "42P01", "{failed}");
    assert!(
        report["primary_mean_ms"].as_f64().is_some() && report["shadow_mean_ms"].as_f64().is_some()
    );
    // Never the rows themselves (looked for as JSON strings: a hex hash may hold the letters).
    let text = report.to_string();
    assert!(
        !text.contains("\"ada\"") && !text.contains("\"di\""),
        "{text}"
    );

    // A zero sample rate replays nothing; restarting resets the counts.
    f.shadow(json!({"target_env_id": f.staging, "sample_rate": 0}))
        .await
        .expect(201);
    f.read("SELECT id FROM orders").await.expect(200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let report = f.report().await;
    assert_eq!(compared(&report.body), 0, "{}", report.body);
    // Stopped: nothing more is replayed, the report stays.
    let path = format!("/v1/environments/{}/shadow", f.prod);
    f.o.s.get(&path, &f.o.token).await.expect(200);
    f.o.s.delete(&path, &f.o.token).await.expect(204);
    f.o.s
        .get(&path, &f.o.token)
        .await
        .expect_error(404, "NOT_FOUND");
    f.o.s
        .delete(&path, &f.o.token)
        .await
        .expect_error(404, "NOT_FOUND");
    let report = f.report().await;
    report.expect(200);
    assert_eq!(report.body["active"], false);
}

async fn shadow_rules(db: Db) {
    let f = Fixture::start(&db).await;
    for (body, field, rule) in [
        (
            json!({"target_env_id": f.staging, "sample_rate": 1.5}),
            "sample_rate",
            "range",
        ),
        (
            json!({"target_env_id": f.staging, "sample_rate": -0.1}),
            "sample_rate",
            "range",
        ),
        (
            json!({"target_env_id": f.prod, "sample_rate": 1}),
            "target_env_id",
            "different_environment",
        ),
        (
            json!({"target_env_id": f.staging, "sample_rate": 1, "statement_kinds": []}),
            "statement_kinds",
            "non_empty",
        ),
    ] {
        let r = f.shadow(body.clone()).await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["field"], field, "{body}");
        assert_eq!(r.body["error"]["details"]["rule"], rule, "{body}");
    }
    f.shadow(json!({"target_env_id": f.staging, "sample_rate": 1, "statement_kinds": ["write"]}))
        .await
        .expect_error(400, "VALIDATION_ERROR");
    f.shadow(json!({"target_env_id": "env_01m7y1mvvm720aw1bq259a443y", "sample_rate": 1}))
        .await
        .expect_error(404, "NOT_FOUND");
    // Another organization's environment is no target.
    let other_token =
        f.o.s
            .signup("eve@example.net", crate::common::PASSWORD)
            .await;
    let other_org =
        f.o.s
            .post(
                "/v1/organizations",
                Some(&other_token),
                json!({"name": "Eve", "slug": "eve", "billing_email": "eve@example.net"}),
            )
            .await;
    other_org.expect(201);
    let eve =
        f.o.s
            .login_as(
                "eve@example.net",
                crate::common::PASSWORD,
                other_org.body["org_id"].as_str(),
            )
            .await["token"]
            .as_str()
            .unwrap()
            .to_string();
    let envs =
        f.o.s
            .get(
                &format!(
                    "/v1/organizations/{}/environments",
                    other_org.body["org_id"].as_str().unwrap()
                ),
                &eve,
            )
            .await;
    let foreign = envs.body["data"][0]["env_id"].as_str().unwrap().to_string();
    f.shadow(json!({"target_env_id": foreign, "sample_rate": 1}))
        .await
        .expect_error(404, "NOT_FOUND");
    // Never shadowed: no report.
    f.report().await.expect_error(404, "NOT_FOUND");
    // Who: owners and admins start and stop; an analyst reads the report.
    let (_, analyst) =
        f.o.s
            .add_member(&f.o.token, &f.o.org, "ana@example.com", "analyst")
            .await;
    let path = format!("/v1/environments/{}/shadow", f.prod);
    f.o.s
        .post(
            &path,
            Some(&analyst),
            json!({"target_env_id": f.staging, "sample_rate": 1}),
        )
        .await
        .expect_error(403, "FORBIDDEN");
    f.shadow(json!({"target_env_id": f.staging, "sample_rate": 1}))
        .await
        .expect(201);
    f.o.s
        .get(&format!("{path}/report"), &analyst)
        .await
        .expect(200);
    f.o.s
        .delete(&path, &analyst)
        .await
        .expect_error(403, "FORBIDDEN");
}

/// A replay queue of one, and replays that take long: the callers' reads all answer while the
/// sampled statements past the queue are dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_never_waits() {
    let db = Db::sqlite();
    let mut args = crate::audit::walk_args(&db);
    args.shadow_queue = Some(1);
    let f = Fixture::with(Org::start_with(args).await).await;
    // The same statement is quick in production and slow in staging.
    for (env, rows) in [(&f.prod, 10), (&f.staging, 20_000)] {
        let sql = format!("CREATE TABLE t AS SELECT range AS id FROM range({rows})");
        f.o.s
            .post(
                "/v1/query",
                Some(&f.o.token),
                json!({"sql": sql, "env_id": env}),
            )
            .await
            .expect(200);
    }
    f.o.s
        .patch(
            &format!("/v1/environments/{}", f.staging),
            &f.o.token,
            json!({"settings": {"query_timeout_ms": 3000}}),
        )
        .await
        .expect(200);
    f.shadow(json!({"target_env_id": f.staging, "sample_rate": 1}))
        .await
        .expect(201);
    let slow = "SELECT count(*) FROM t a, t b WHERE a.id < b.id";
    for _ in 0..20 {
        let r = f.read(slow).await;
        r.expect(200);
        assert_eq!(r.body["rows"][0][0], 45);
    }
    let report = f
        .report_when(|r| compared(r) + r["dropped"].as_i64().unwrap() == 20)
        .await;
    assert!(report["dropped"].as_i64().unwrap() >= 10, "{report}");
    assert!(compared(&report) >= 1, "{report}");
}
