//! Credits, usage and quotas (docs/billing.md) through both doors and on both engines: each
//! term of the formula, what costs nothing, the refusal of a statement whose estimate does
//! not fit (429 / `53400`, audited), keys of other environments metered but never counted,
//! the warnings sent once each, the usage report, who may change quotas, the row cap, the
//! storage quota, and two
//! nodes metering into one ledger.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{Db, Org, Server};
use crate::gateway::{on_engine, psql, Engine};
use crate::receiver::Receiver;
use crate::{both, engines};

engines!(credits_are_metered_and_the_quota_is_enforced);
both!(
    usage_reports_and_who_may_read_and_change_quotas,
    warnings_go_out_once_each_per_period,
);

impl Org {
    fn quotas_path(&self) -> String {
        format!("/v1/organizations/{}/billing/quotas", self.org)
    }

    fn usage_path(&self, query: &str) -> String {
        format!("/v1/organizations/{}/billing/usage{query}", self.org)
    }

    async fn set_quotas(&self, body: Value) -> Value {
        let r = self.s.patch(&self.quotas_path(), &self.token, body).await;
        r.expect(200);
        r.body.clone()
    }

    /// The usage report, once this node's metering is stored (the report flushes it).
    async fn usage(&self, query: &str) -> Value {
        let r = self.s.get(&self.usage_path(query), &self.token).await;
        r.expect(200);
        r.body.clone()
    }

    /// `(rows, credits_consumed)` of a statement that succeeds.
    async fn charged(&self, key: &str, sql: &str) -> (u64, f64) {
        let r = self.sql(key, sql, json!([])).await;
        r.expect(200);
        (
            r.body["row_count"].as_u64().unwrap(),
            r.body["credits_consumed"].as_f64().unwrap(),
        )
    }

    /// `sql` through psql with the production key `key`: refused with SQLSTATE 53400.
    async fn over_quota_on_the_wire(&self, key: &str, sql: &str) {
        let args = ["-v", "VERBOSITY=verbose", "-c", sql];
        let (ok, _, err) = psql(self, key, "production", &args).await;
        assert!(!ok && err.contains("53400"), "{err}");
    }

    /// The newest query-audit entry of `env` whose SQL starts with `prefix`.
    async fn audited(&self, env: &str, prefix: &str) -> Value {
        let r = self
            .s
            .get(
                &format!("/v1/environments/{env}/audit/queries?limit=200"),
                &self.token,
            )
            .await;
        r.expect(200);
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["sql_redacted"].as_str().unwrap_or("").starts_with(prefix))
            .unwrap_or_else(|| panic!("no audit entry for {prefix}: {}", r.body))
            .clone()
    }
}

async fn credits_are_metered_and_the_quota_is_enforced(db: Db, engine: Engine) {
    let o = Org::start(&db).await;
    let Some((prod, _pg)) = on_engine(&o, "production", engine).await else {
        return;
    };
    let key = o.query_key(&prod, &["developer"], "developer").await;
    assert!(key.starts_with("ek_live_"), "production keys are live keys");

    // DDL and writes: one table each; 25 000 rows written are two blocks past the free 10 000.
    assert_eq!(
        o.charged(&key, "CREATE TABLE customers (id INTEGER, name VARCHAR)")
            .await,
        (0, 1.0)
    );
    o.charged(
        &key,
        "CREATE TABLE orders (id INTEGER, customer_id INTEGER, total INTEGER)",
    )
    .await;
    assert_eq!(
        o.charged(
            &key,
            "INSERT INTO customers SELECT n, 'customer ' || n FROM generate_series(0, 24999) AS g(n)"
        )
        .await,
        (25_000, 3.0)
    );
    assert_eq!(
        o.charged(&key, "INSERT INTO orders VALUES (7, 42, 20), (8, 43, 5)")
            .await,
        (2, 1.0)
    );

    // A point lookup; a join on a key (two tables); a whole scan; `*`; rows in blocks.
    let point = "SELECT name FROM customers WHERE id = 42";
    assert_eq!(o.charged(&key, point).await, (1, 1.0));
    let join = "SELECT c.name, o.total FROM orders o JOIN customers c ON o.customer_id = c.id WHERE o.id = 7";
    assert_eq!(o.charged(&key, join).await, (1, 1.5));
    assert_eq!(
        o.charged(&key, "SELECT count(*) FROM customers").await,
        (1, 3.0)
    );
    assert_eq!(
        o.charged(&key, "SELECT * FROM customers LIMIT 100").await,
        (100, 4.0)
    );
    assert_eq!(
        o.charged(&key, "SELECT name FROM customers WHERE id < 10001")
            .await,
        (10_001, 2.0)
    );
    assert_eq!(
        o.charged(&key, "SELECT * FROM customers").await,
        (25_000, 6.0)
    );

    // Nothing for a cache hit, a session statement, a failure.
    assert_eq!(o.charged(&key, point).await, (1, 0.0));
    assert_eq!(o.charged(&key, "SET application_name = 'x'").await.1, 0.0);
    o.sql(&key, "SELECT * FROM missing", json!([]))
        .await
        .expect(400);
    let failed = o.audited(&prod, "SELECT * FROM missing").await;
    assert_eq!(failed["credits_consumed"], 0.0, "{failed}");

    // The audit has the estimate and what was consumed; the estimate of a whole scan comes
    // from the engine's statistics on the embedded engine (PostgreSQL's lag behind writes).
    let scan = o.audited(&prod, "SELECT * FROM customers LIMIT").await;
    assert_eq!(
        (&scan["credits_estimated"], &scan["credits_consumed"]),
        (&json!(4.0), &json!(4.0)),
        "{scan}"
    );
    let whole = o.audited(&prod, "SELECT * FROM customers").await;
    assert_eq!(whole["credits_consumed"], 6.0, "{whole}");
    if engine == Engine::Embedded {
        assert_eq!(whole["credits_estimated"], 6.0, "{whole}");
    }

    // Arrow says what it consumed in a header.
    let arrow =
        o.s.keyed(
            Method::POST,
            "/v1/query/arrow",
            &key,
            Some(json!({"sql": "SELECT name FROM customers WHERE id = 7"})),
        )
        .await;
    arrow.expect(200);
    assert_eq!(arrow.header("x-credits-consumed"), Some("1"));

    // 24.5 credits so far. A limit of 27 leaves 2.5: a point lookup fits, a `SELECT *` with
    // `LIMIT` (4 known before it runs) does not, on either door, and the refusal is audited.
    let report = o.usage("").await;
    assert_eq!(report["credits"]["used"], 24.5, "{report}");
    o.set_quotas(json!({"monthly_credit_limit": 27})).await;
    assert_eq!(
        o.charged(&key, "SELECT name FROM customers WHERE id = 3")
            .await,
        (1, 1.0)
    );
    let refused = o.sql(&key, "SELECT * FROM orders LIMIT 5", json!([])).await;
    refused.expect_error(429, "QUOTA_EXCEEDED");
    assert_eq!(
        refused.body["error"]["details"]["quota"],
        "monthly_credit_limit"
    );
    assert_eq!(refused.body["error"]["details"]["estimate"], 4.0);
    assert_eq!(refused.body["error"]["details"]["remaining"], 1.5);
    let audit = o.audited(&prod, "SELECT * FROM orders LIMIT").await;
    assert_eq!(audit["outcome"], "refused", "{audit}");
    assert_eq!(audit["credits_estimated"], 4.0, "{audit}");
    assert_eq!(audit["credits_consumed"], 0.0, "{audit}");
    o.over_quota_on_the_wire(&key, "SELECT * FROM orders LIMIT 5")
        .await;

    // Other environments' keys are metered, never counted nor refused.
    let Some((dev, _dev_pg)) = on_engine(&o, "development", engine).await else {
        return;
    };
    let test_key = o.query_key(&dev, &["developer"], "developer").await;
    assert!(test_key.starts_with("ek_test_"));
    o.charged(&test_key, "CREATE TABLE t (x INTEGER)").await;
    for _ in 0..3 {
        // Metered as anywhere (the answer says what it cost), not counted.
        assert_eq!(o.charged(&test_key, "SELECT * FROM t LIMIT 1").await.1, 4.0);
        o.charged(&test_key, "INSERT INTO t VALUES (1)").await;
    }
    let report = o.usage("").await;
    assert_eq!(report["credits"]["used"], 25.5, "{report}");
    assert_eq!(report["credits"]["remaining"], 1.5, "{report}");
    let envs = report["breakdown"]["by_environment"].as_array().unwrap();
    let of = |id: &str| envs.iter().find(|e| e["env_id"] == id).unwrap().clone();
    assert_eq!(of(&prod)["counts_against_quota"], true);
    assert_eq!(of(&prod)["credits_used"], 25.5);
    assert_eq!(of(&dev)["counts_against_quota"], false);
    assert_eq!(of(&dev)["query_count"], 7, "{report}");

    // The row cap of the organization: rows past it are left out.
    o.set_quotas(json!({"monthly_credit_limit": null, "max_rows_per_query": 100}))
        .await;
    let capped = o.sql(&key, "SELECT id FROM customers", json!([])).await;
    capped.expect(200);
    assert_eq!(capped.body["row_count"], 100);
    assert_eq!(capped.body["truncated"], true);

    // Storage is measured after writes, in the background; once the organization holds its
    // storage_limit_gb, what adds data is refused and what frees space is not.
    let mut storage = Value::Null;
    for _ in 0..100 {
        storage = o.usage("").await["storage"].clone();
        if storage["used_bytes"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(storage["used_bytes"].as_u64().unwrap() > 0, "{storage}");
    assert_eq!(storage["limit_gb"], 1, "{storage}");
    o.set_quotas(json!({"storage_limit_gb": 0})).await;
    let full = o
        .sql(&key, "INSERT INTO orders VALUES (9, 1, 1)", json!([]))
        .await;
    full.expect_error(429, "QUOTA_EXCEEDED");
    assert_eq!(full.body["error"]["details"]["quota"], "storage_limit_gb");
    o.sql(&key, "CREATE TABLE more (x INTEGER)", json!([]))
        .await
        .expect_error(429, "QUOTA_EXCEEDED");
    o.over_quota_on_the_wire(&key, "UPDATE orders SET total = 1")
        .await;
    o.charged(&key, "DELETE FROM orders WHERE id = 8").await;
    o.charged(&key, "SELECT * FROM orders LIMIT 1").await;
    o.charged(&key, "DROP TABLE orders").await;
    o.set_quotas(json!({"storage_limit_gb": null})).await;
    o.charged(&key, "CREATE TABLE more (x INTEGER)").await;
}

async fn usage_reports_and_who_may_read_and_change_quotas(db: Db) {
    let o = Org::start(&db).await;
    let prod = o.env("production").await;
    let dev = o.env("development").await;
    let (_, admin) =
        o.s.add_member(&o.token, &o.org, "admin@example.com", "admin")
            .await;
    let (_, auditor) =
        o.s.add_member(&o.token, &o.org, "auditor@example.com", "auditor")
            .await;
    let (_, developer) =
        o.s.add_member(&o.token, &o.org, "dev@example.com", "developer")
            .await;

    // Every member reads the quotas; only the owner changes them.
    for token in [&admin, &auditor, &developer] {
        let r = o.s.get(&o.quotas_path(), token).await;
        r.expect(200);
        assert_eq!(r.body["tier"], "free");
        assert_eq!(r.body["quotas"]["max_api_keys_per_environment"], 50);
    }
    o.s.patch(&o.quotas_path(), &admin, json!({"max_users": 10}))
        .await
        .expect_error(403, "FORBIDDEN");
    let bad =
        o.s.patch(&o.quotas_path(), &o.token, json!({"max_users": -1}))
            .await;
    bad.expect(400);
    assert_eq!(bad.body["error"]["details"]["field"], "quotas.max_users");
    o.s.patch(&o.quotas_path(), &o.token, json!({"max_rows": 5}))
        .await
        .expect(400);
    let set = o
        .set_quotas(json!({"max_users": 4, "monthly_credit_limit": "unlimited"}))
        .await;
    assert_eq!(set["quotas"]["max_users"], 4);
    assert_eq!(set["quotas"]["monthly_credit_limit"], Value::Null);
    assert_eq!(
        set["overrides"],
        json!({"max_users": 4, "monthly_credit_limit": "unlimited"})
    );
    // The change is in the audit trail.
    let trail =
        o.s.get(
            &format!(
                "/v1/organizations/{}/audit/iam?action=organization.quotas_updated",
                o.org
            ),
            &o.token,
        )
        .await;
    trail.expect(200);
    assert_eq!(
        trail.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        trail.body
    );

    // Members up to the quota, invitations included: a fifth is refused.
    o.s.post(
        &format!("/v1/organizations/{}/users", o.org),
        Some(&o.token),
        json!({"email": "fifth@example.com", "role": "analyst"}),
    )
    .await
    .expect_error(429, "QUOTA_EXCEEDED");

    // Usage: owner, admin and auditor; keys with billing:read; not a developer.
    let key = o.query_key(&prod, &["developer"], "developer").await;
    let test_key = o.query_key(&dev, &["developer"], "developer").await;
    for sql in [
        "CREATE TABLE t (x INTEGER)",
        "INSERT INTO t VALUES (1), (2)",
        "UPDATE t SET x = 3 WHERE x = 2",
        "DELETE FROM t WHERE x = 1",
        "SELECT x FROM t WHERE x = 3",
    ] {
        o.charged(&key, sql).await;
    }
    o.charged(&test_key, "CREATE TABLE u (x INTEGER)").await;
    for token in [&o.token, &admin, &auditor] {
        o.s.get(&o.usage_path(""), token).await.expect(200);
    }
    o.s.get(&o.usage_path(""), &developer)
        .await
        .expect_error(403, "FORBIDDEN");
    let billing_key = o.query_key(&prod, &["billing:read"], "auditor").await;
    let by_key =
        o.s.keyed(Method::GET, &o.usage_path(""), &billing_key, None)
            .await;
    by_key.expect(200);
    o.s.keyed(Method::GET, &o.usage_path(""), &key, None)
        .await
        .expect_error(403, "FORBIDDEN");

    let report = o.usage("?group_by=hour").await;
    let queries = &report["breakdown"]["queries"];
    assert_eq!(
        (
            &queries["total"],
            &queries["select"],
            &queries["insert"],
            &queries["update"],
            &queries["delete"],
            &queries["ddl"]
        ),
        (
            &json!(6),
            &json!(1),
            &json!(1),
            &json!(1),
            &json!(1),
            &json!(2)
        ),
        "{report}"
    );
    // UPDATE/DELETE with a bound on their table: 1 each; everything here is 1.
    assert_eq!(report["credits"]["used"], 5.0, "{report}");
    assert_eq!(report["breakdown"]["credits_used"], 6.0, "{report}");
    let day = &report["breakdown"]["by_day"][0];
    assert_eq!(
        (&day["credits_used"], &day["credits_counted"]),
        (&json!(6.0), &json!(5.0))
    );
    assert_eq!(report["group_by"], "hour");
    assert_eq!(
        report["breakdown"]["by_period"].as_array().unwrap().len(),
        1
    );

    // A range far in the past is empty; bad ranges name the field.
    let old = o.usage("?start_date=2020-01-01&end_date=2020-02-01").await;
    assert_eq!(old["breakdown"]["queries"]["total"], 0);
    assert_eq!(
        old["credits"]["used"], 5.0,
        "the current period is always reported"
    );
    for (query, field) in [
        ("?group_by=month", "group_by"),
        ("?start_date=2026-13-01", "start_date"),
        ("?start_date=2020-01-01&end_date=2024-01-01", "end_date"),
        ("?start_date=2026-02-01&end_date=2026-01-01", "end_date"),
    ] {
        let r = o.s.get(&o.usage_path(query), &o.token).await;
        r.expect(400);
        assert_eq!(r.body["error"]["details"]["field"], field, "{query}");
    }
}

async fn warnings_go_out_once_each_per_period(db: Db) {
    let o = Org::start(&db).await;
    let prod = o.env("production").await;
    let rx = Receiver::start().await;
    o.s.post(
        &format!("/v1/organizations/{}/webhooks", o.org),
        Some(&o.token),
        json!({"url": rx.url(), "events": ["billing.warning"]}),
    )
    .await
    .expect(201);
    o.set_quotas(json!({"monthly_credit_limit": 10})).await;
    let key = o.query_key(&prod, &["developer"], "developer").await;
    o.charged(&key, "CREATE TABLE t (x INTEGER)").await;
    // Each statement costs 1: the 8th reaches 80 %, the 10th 100 %, the 11th is refused.
    for i in 2..=10 {
        o.charged(&key, &format!("INSERT INTO t VALUES ({i})"))
            .await;
    }
    o.sql(&key, "INSERT INTO t VALUES (11)", json!([]))
        .await
        .expect_error(429, "QUOTA_EXCEEDED");
    let got = rx
        .wait_for("two billing.warning events", |g| {
            Receiver::of_type(g, "billing.warning").len() >= 2
        })
        .await;
    // Nothing else arrives later, however often usage is stored.
    o.usage("").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warnings = Receiver::of_type(&rx.received(), "billing.warning");
    assert_eq!(warnings.len(), 2, "{got:?}");
    let mut thresholds: Vec<Value> = warnings
        .iter()
        .map(|w| w.json()["data"]["threshold_percent"].clone())
        .collect();
    thresholds.sort_by_key(|t| t.as_u64());
    assert_eq!(thresholds, vec![json!(80), json!(100)]);
    let last = warnings
        .iter()
        .map(|w| w.json())
        .find(|w| w["data"]["threshold_percent"] == 100)
        .unwrap();
    assert_eq!(last["data"]["credits_used"], 10.0, "{last}");
    assert_eq!(last["data"]["monthly_credit_limit"], 10.0, "{last}");

    // Raising the limit lets statements run again.
    o.set_quotas(json!({"monthly_credit_limit": 100})).await;
    o.charged(&key, "INSERT INTO t VALUES (11)").await;
}

/// Two nodes on one PostgreSQL store meter one organization's statements into one ledger:
/// the report counts every statement of both, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_meter_into_one_ledger() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let o = Org::start(&db).await;
    let Some((prod, _pg)) = on_engine(&o, "production", Engine::Postgres).await else {
        return;
    };
    let key = o.query_key(&prod, &["developer"], "developer").await;
    o.charged(&key, "CREATE TABLE t (x INTEGER)").await;
    let b = Server::start(crate::audit::walk_args(&db)).await;
    async fn insert(s: &Server, key: &str, i: usize) -> f64 {
        let sql = format!("INSERT INTO t VALUES ({i})");
        let r = s
            .keyed(Method::POST, "/v1/query", key, Some(json!({"sql": sql})))
            .await;
        r.expect(200);
        r.body["credits_consumed"].as_f64().unwrap()
    }
    let mut sent = 1.0;
    for round in 0..20 {
        let (a, bb) = tokio::join!(
            insert(&o.s, &key, round * 2),
            insert(&b, &key, round * 2 + 1)
        );
        sent += a + bb;
    }
    // Node b's metering is stored by its writer within its batch interval; a's by the report.
    let mut used = Value::Null;
    for _ in 0..50 {
        used = o.usage("").await["credits"]["used"].clone();
        if used == json!(sent) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(used, json!(sent));
    let report = b.get(&o.usage_path(""), &o.token).await;
    report.expect(200);
    assert_eq!(report.body["breakdown"]["queries"]["insert"], 40);
    b.stop().await;
}
