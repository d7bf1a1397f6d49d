//! A clone copies its source's data only when asked (`include: ["data"]`): DuckDB into
//! DuckDB, DuckDB and PostgreSQL into the managed PostgreSQL engine, from one snapshot of the
//! source, recorded in the audit trail; what cannot be copied is refused before anything is
//! created.

use enclave::config::ServeArgs;
use enclave_store::testing::postgres_admin_url;
use serde_json::{json, Value};

use crate::both;
use crate::cluster::{drop_managed_databases, on_a_thread_of_its_own};
use crate::common::{Db, Org};
use crate::gateway::{on_engine, sqlstate, Engine};

both!(
    clone_copies_embedded_data_only_when_asked,
    clone_copies_data_into_the_managed_engine,
);

impl Org {
    /// Clones `env` as `name` with `include` (absent when null).
    async fn clone_env(&self, env: &str, name: &str, include: Value) -> crate::common::Resp {
        let mut body = json!({"name": name});
        if !include.is_null() {
            body["include"] = include;
        }
        self.s
            .post(
                &format!("/v1/environments/{env}/clone"),
                Some(&self.token),
                body,
            )
            .await
    }

    /// Runs `sql` with `key` and answers the result's rows (the statement must succeed).
    async fn rows(&self, key: &str, sql: &str) -> Value {
        let r = self.sql(key, sql, json!([])).await;
        r.expect(200);
        r.body["rows"].clone()
    }

    async fn environment_count(&self) -> usize {
        let r = self
            .s
            .get(
                &format!("/v1/organizations/{}/environments?limit=100", self.org),
                &self.token,
            )
            .await;
        r.expect(200);
        r.body["data"].as_array().unwrap().len()
    }

    /// The `environment.data_copied` entries of the organization's audit trail.
    async fn data_copies(&self) -> Vec<Value> {
        let r = self
            .s
            .get(
                &format!(
                    "/v1/organizations/{}/audit/iam?action=environment.data_copied",
                    self.org
                ),
                &self.token,
            )
            .await;
        r.expect(200);
        r.body["data"].as_array().unwrap().clone()
    }
}

/// A table with several types and a mask on it (developers exempt), one in a schema of its
/// own, and two views.
async fn fill_embedded(o: &Org, env: &str, key: &str) {
    for statement in [
        "CREATE TABLE customers (id INTEGER, email VARCHAR, balance DECIMAL(12,2), active BOOLEAN, \
         joined TIMESTAMP, born DATE, tags VARCHAR[])",
        "INSERT INTO customers VALUES \
         (1, 'ada@example.com', 10.50, true, TIMESTAMP '2024-01-02 03:04:05.123456', DATE '1990-12-31', ['a', 'b']), \
         (2, 'say \"hi\", twice', -3.25, false, NULL, NULL, []), \
         (3, NULL, NULL, NULL, NULL, NULL, NULL)",
        "CREATE SCHEMA sales",
        "CREATE TABLE sales.orders AS SELECT range AS id, range % 3 AS customer_id FROM range(2500)",
        "CREATE VIEW small_orders AS SELECT id, customer_id FROM sales.orders WHERE id < 10",
        "CREATE VIEW sales.big_orders AS SELECT id FROM sales.orders WHERE id >= 2000",
    ] {
        o.sql(key, statement, json!([])).await.expect(200);
    }
    o.s.post(
        &format!("/v1/environments/{env}/policies"),
        Some(&o.token),
        json!({"name": "pii", "type": "column_masking", "rules": [
            {"table": "customers", "column": "email", "function": "partial",
             "visible_chars": 4, "exempt_roles": ["developer"]}]}),
    )
    .await
    .expect(201);
}

const READS: [&str; 4] = [
    "SELECT * FROM customers ORDER BY id",
    "SELECT count(*), sum(id), sum(customer_id) FROM sales.orders",
    "SELECT * FROM small_orders ORDER BY id",
    "SELECT count(*) FROM sales.big_orders",
];

async fn clone_copies_embedded_data_only_when_asked(db: Db) {
    let o = Org::start(&db).await;
    let dev = o.env("development").await;
    let key = o.query_key(&dev, &["developer"], "developer").await;
    fill_embedded(&o, &dev, &key).await;
    let mut expected = Vec::new();
    for read in READS {
        expected.push(o.rows(&key, read).await);
    }
    let analyst = o.query_key(&dev, &["read_only"], "analyst").await;
    let masked = o
        .rows(&analyst, "SELECT email FROM customers ORDER BY id")
        .await;
    assert_ne!(masked[0][0], json!("ada@example.com"), "{masked}");

    // Without `data` (the default), the clone's database is empty.
    let bare = o.clone_env(&dev, "No Data", Value::Null).await;
    bare.expect(201);
    let bare_id = bare.body["env_id"].as_str().unwrap().to_string();
    let bare_key = o.query_key(&bare_id, &["developer"], "developer").await;
    let r = o.sql(&bare_key, READS[0], json!([])).await;
    assert_eq!(sqlstate(&r), "42P01", "{}", r.body);

    // Bad input is refused and creates nothing.
    let count = o.environment_count().await;
    for include in [json!(["data", "data"]), json!(["rows"]), json!([])] {
        let r = o.clone_env(&dev, "Refused", include.clone()).await;
        r.expect_error(400, "VALIDATION_ERROR");
        let field = r.body["error"]["details"]["field"]
            .as_str()
            .unwrap_or_default();
        assert!(field.starts_with("include"), "{include}: {}", r.body);
    }
    assert_eq!(o.environment_count().await, count);

    // With `data`: every table, row and view, in a database of its own.
    let copy = o
        .clone_env(&dev, "Dev Copy", json!(["settings", "policies", "data"]))
        .await;
    copy.expect(201);
    assert_eq!(copy.body["status"], "active");
    assert_eq!(copy.body["settings"]["engine"], "duckdb");
    let copy_id = copy.body["env_id"].as_str().unwrap().to_string();
    let copy_key = o.query_key(&copy_id, &["developer"], "developer").await;
    for (read, rows) in READS.iter().zip(&expected) {
        assert_eq!(&o.rows(&copy_key, read).await, rows, "{read}");
    }
    // The cloned mask applies to the cloned rows.
    let copy_analyst = o.query_key(&copy_id, &["read_only"], "analyst").await;
    assert_eq!(
        o.rows(&copy_analyst, "SELECT email FROM customers ORDER BY id")
            .await,
        masked
    );
    // Two databases: a write to one is not seen by the other.
    o.sql(&key, "INSERT INTO customers (id) VALUES (4)", json!([]))
        .await
        .expect(200);
    o.sql(&copy_key, "DELETE FROM sales.orders", json!([]))
        .await
        .expect(200);
    assert_eq!(
        o.rows(&copy_key, "SELECT count(*) FROM customers").await,
        json!([[3]])
    );
    assert_eq!(
        o.rows(&key, "SELECT count(*) FROM sales.orders").await,
        json!([[2500]])
    );

    // The audit trail says what was copied, from where.
    let copies = o.data_copies().await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    let copied = &copies[0]["after"]["copied"];
    assert_eq!(copies[0]["resource_id"], json!(copy_id));
    assert_eq!(copied["source_env_id"], json!(dev));
    assert_eq!(copied["rows"], json!(2503));
    assert_eq!(copied["views"], json!(2));

    // From a database of the user's own: neither into it nor into the embedded engine.
    if let Some((own, _pg)) = on_engine(&o, "staging", Engine::Postgres).await {
        let count = o.environment_count().await;
        for (include, rule) in [
            (json!(["settings", "data"]), "managed_target"),
            (json!(["data"]), "engine_pair"),
        ] {
            let r = o.clone_env(&own, "Refused", include).await;
            r.expect_error(400, "VALIDATION_ERROR");
            assert_eq!(r.body["error"]["details"]["rule"], rule, "{}", r.body);
        }
        assert_eq!(o.environment_count().await, count);
    }
    o.s.stop().await;
}

/// Drops the managed engine's databases and roles of the environments named, when the test
/// ends (however it ends).
struct ManagedDatabases(std::sync::Mutex<Vec<String>>);

impl ManagedDatabases {
    fn track(&self, env_id: &str) {
        self.0.lock().unwrap().push(env_id.to_string());
    }
}

impl Drop for ManagedDatabases {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.0.lock().unwrap());
        on_a_thread_of_its_own(drop_managed_databases(ids));
    }
}

async fn clone_copies_data_into_the_managed_engine(db: Db) {
    // The managed engine needs PostgreSQL, whichever the store.
    if enclave_store::testing::TempPostgres::create()
        .await
        .is_none()
    {
        return;
    }
    let managed = ManagedDatabases(Default::default());
    let o = Org::start_with(ServeArgs {
        engine_postgres_url: Some(postgres_admin_url()),
        default_engine: Some("postgres".into()),
        ..crate::audit::walk_args(&db)
    })
    .await;
    let dev = o.env("development").await;
    managed.track(&dev);
    for slug in ["staging", "production"] {
        managed.track(&o.env(slug).await);
    }

    // DuckDB → the managed engine: an embedded source, cloned without its settings.
    let lake =
        o.s.post(
            &format!("/v1/organizations/{}/environments", o.org),
            Some(&o.token),
            json!({"name": "Lake", "settings": {"engine": "duckdb"}}),
        )
        .await;
    lake.expect(201);
    let lake = lake.body["env_id"].as_str().unwrap().to_string();
    let lake_key = o.query_key(&lake, &["developer"], "developer").await;
    fill_embedded(&o, &lake, &lake_key).await;
    let moved = o
        .clone_env(&lake, "Lake On Postgres", json!(["policies", "data"]))
        .await;
    moved.expect(201);
    let moved_id = moved.body["env_id"].as_str().unwrap().to_string();
    managed.track(&moved_id);
    assert_eq!(moved.body["settings"]["engine"], "postgres");
    let moved_key = o.query_key(&moved_id, &["developer"], "developer").await;
    let portable = "SELECT id, email, active, CAST(balance AS VARCHAR), CAST(born AS VARCHAR) \
                    FROM customers ORDER BY id";
    assert_eq!(
        o.rows(&moved_key, portable).await,
        o.rows(&lake_key, portable).await
    );
    assert_eq!(
        o.rows(&moved_key, "SELECT count(*) FROM sales.big_orders")
            .await,
        json!([[500]])
    );
    let columns =
        o.s.get(
            &format!("/v1/environments/{moved_id}/tables/customers"),
            &o.token,
        )
        .await;
    columns.expect(200);
    let balance = columns.body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "balance")
        .unwrap()
        .clone();
    assert_eq!(balance["type"], "numeric", "{balance}");

    // A copy that fails half-way (a DuckDB view PostgreSQL cannot create) leaves no clone.
    o.sql(
        &lake_key,
        "CREATE VIEW pairs AS SELECT list_value(id, id) AS ids FROM customers",
        json!([]),
    )
    .await
    .expect(200);
    let count = o.environment_count().await;
    let r = o.clone_env(&lake, "Not Portable", json!(["data"])).await;
    r.expect_error(409, "CONFLICT");
    assert_eq!(
        r.body["error"]["details"]["rule"], "view_not_portable",
        "{}",
        r.body
    );
    assert_eq!(o.environment_count().await, count);

    // PostgreSQL → PostgreSQL: exact types, arrays and views, from the managed development.
    let key = o.query_key(&dev, &["developer"], "developer").await;
    for statement in [
        "CREATE TABLE accounts (id integer, name varchar(20), balance numeric(12,2), \
         flags integer[], opened timestamptz, note text)",
        "INSERT INTO accounts VALUES (1, 'ada', 10.50, '{1,2}', '2024-01-02 03:04:05+00', 'a \"quoted\", note'), \
         (2, NULL, NULL, NULL, NULL, NULL)",
        "CREATE TABLE events AS SELECT g AS id, g % 7 AS kind FROM generate_series(1, 3000) AS g",
        "CREATE VIEW kinds AS SELECT kind, count(*) AS n FROM events GROUP BY kind",
    ] {
        o.sql(&key, statement, json!([])).await.expect(200);
    }
    let reads = [
        "SELECT * FROM accounts ORDER BY id",
        "SELECT * FROM kinds ORDER BY kind",
    ];
    let copy = o
        .clone_env(&dev, "Dev Copy", json!(["settings", "data"]))
        .await;
    copy.expect(201);
    let copy_id = copy.body["env_id"].as_str().unwrap().to_string();
    managed.track(&copy_id);
    let copy_key = o.query_key(&copy_id, &["developer"], "developer").await;
    for read in reads {
        assert_eq!(
            o.rows(&copy_key, read).await,
            o.rows(&key, read).await,
            "{read}"
        );
    }
    let types = |body: &Value| -> Vec<Value> {
        body["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].clone())
            .collect()
    };
    let source_columns =
        o.s.get(&format!("/v1/environments/{dev}/tables/accounts"), &o.token)
            .await;
    let copy_columns =
        o.s.get(
            &format!("/v1/environments/{copy_id}/tables/accounts"),
            &o.token,
        )
        .await;
    assert_eq!(types(&copy_columns.body), types(&source_columns.body));
    // The copy is its own database.
    o.sql(&copy_key, "DELETE FROM events", json!([]))
        .await
        .expect(200);
    assert_eq!(
        o.rows(&key, "SELECT count(*) FROM events").await,
        json!([[3000]])
    );

    // Without settings, a copy goes to this server's default engine: PostgreSQL here.
    let r = o.clone_env(&dev, "Dev Data", json!(["data"])).await;
    r.expect(201);
    managed.track(r.body["env_id"].as_str().unwrap());
    assert_eq!(r.body["settings"]["engine"], "postgres");
    assert_eq!(o.data_copies().await.len(), 3);
    o.s.stop().await;
}
