//! Several nodes on one PostgreSQL store (docs/deployment.md): the managed PostgreSQL engine
//! serves an environment's tables through every node, an embedded environment answers only on
//! its home node — elsewhere a clear refusal naming it, never an empty local copy — and the
//! query audit chain written by two nodes verifies.

use enclave::config::ServeArgs;
use enclave_store::testing::postgres_admin_url;
use serde_json::{json, Value};
use sqlx::Row;

use crate::common::{Db, Server};
use crate::gateway::sqlstate;

/// Drops the managed engine's databases and roles of every environment the test's store
/// knows, when the test ends (however it ends).
struct ManagedCleanup {
    store_url: String,
}

impl Drop for ManagedCleanup {
    fn drop(&mut self) {
        let store_url = self.store_url.clone();
        on_a_thread_of_its_own(async move {
            use sqlx::Connection;
            let Ok(mut store) = sqlx::PgConnection::connect(&store_url).await else {
                return;
            };
            let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM environments")
                .fetch_all(&mut store)
                .await
                .unwrap_or_default();
            drop_managed_databases(ids).await;
        });
    }
}

/// Runs `work` to its end on a runtime of its own (from a `Drop`, inside the test's runtime).
pub(crate) fn on_a_thread_of_its_own(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join();
}

/// Drops the managed engine's database and role of each environment of `ids`.
pub(crate) async fn drop_managed_databases(ids: Vec<String>) {
    use sqlx::Connection;
    let Ok(mut admin) = sqlx::PgConnection::connect(&postgres_admin_url()).await else {
        return;
    };
    for id in ids {
        let name = format!("enclave_{}", id.to_ascii_lowercase());
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS \"{name}\""),
        ] {
            let _ = sqlx::query(&sql).execute(&mut admin).await;
        }
    }
}

/// A node's settings: the first node's store, master key and signing key, a data directory
/// of its own.
fn node_args(db: &Db, first: &ServeArgs, dir: &std::path::Path) -> ServeArgs {
    let first_dir = first.data_dir.clone().unwrap();
    ServeArgs {
        data_dir: Some(dir.to_path_buf()),
        master_key_file: Some(first_dir.join("master.key")),
        jwt_key_file: Some(first_dir.join("jwt-signing-key.pk8")),
        ..crate::audit::walk_args(db)
    }
}

/// Two nodes on a fresh PostgreSQL store, with `extra` settings on both (node A's data
/// directory is `db.data_dir()`), and the owner signed in. The managed engine's databases and
/// node B's data directory go with it.
/// Bind every field, `_cleanup` last: what a pattern leaves out is dropped at once, and
/// bindings drop in reverse order (the clean-up reads the store, so it goes first).
struct Cluster {
    a: Server,
    b: Server,
    token: String,
    org: String,
    b_dir: tempdir::Dir,
    _cleanup: ManagedCleanup,
    db: Db,
}

impl Cluster {
    /// `None` when PostgreSQL is unreachable outside CI.
    async fn start(extra: impl Fn(ServeArgs) -> ServeArgs) -> Option<Cluster> {
        let db = Db::postgres().await?;
        let _cleanup = ManagedCleanup {
            store_url: db.url.clone(),
        };
        let first = extra(crate::audit::walk_args(&db));
        let a = Server::start(first.clone()).await;
        let b_dir = tempdir::Dir::new();
        let b = Server::start(extra(node_args(&db, &first, &b_dir.0))).await;
        let token = a.owner_token().await;
        let org = a.bootstrap_org.clone().unwrap();
        Some(Cluster {
            a,
            b,
            token,
            org,
            b_dir,
            _cleanup,
            db,
        })
    }
}

mod tempdir {
    /// A second node's data directory, removed with the test.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let dir = std::env::temp_dir().join(format!(
                "enclave-node-{}",
                enclave_core::id::NodeId::generate()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn env_id(s: &Server, token: &str, org: &str, slug: &str) -> String {
    let r = s
        .get(
            &format!("/v1/organizations/{org}/environments/{slug}"),
            token,
        )
        .await;
    r.expect(200);
    r.body["env_id"].as_str().unwrap().to_string()
}

async fn key(s: &Server, token: &str, env: &str) -> String {
    let r = s
        .post(
            &format!("/v1/environments/{env}/api-keys"),
            Some(token),
            json!({"name": "app", "scopes": ["developer"], "role": "developer"}),
        )
        .await;
    r.expect(201);
    r.body["key"].as_str().unwrap().to_string()
}

async fn sql(s: &Server, key: &str, sql: &str) -> crate::common::Resp {
    s.keyed(
        reqwest::Method::POST,
        "/v1/query",
        key,
        Some(json!({"sql": sql})),
    )
    .await
}

async fn wire(s: &Server, key: &str, database: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let (host, port) = s.gateway.rsplit_once(':').unwrap();
    let options = sqlx::postgres::PgConnectOptions::new()
        .host(host)
        .port(port.parse().unwrap())
        .username("app")
        .password(key)
        .database(database)
        .ssl_mode(sqlx::postgres::PgSslMode::Disable)
        .statement_cache_capacity(0);
    sqlx::PgConnection::connect_with(&options).await.unwrap()
}

fn wire_sqlstate(e: sqlx::Error) -> (String, String) {
    match e {
        sqlx::Error::Database(db) => (
            db.code().unwrap_or_default().to_string(),
            db.message().to_string(),
        ),
        other => panic!("not a database error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_engine_tables_are_shared_by_every_node() {
    let Some(Cluster {
        a,
        b,
        token,
        org,
        b_dir: _b_dir,
        db: _db,
        _cleanup,
    }) = Cluster::start(|args| ServeArgs {
        engine_postgres_url: Some(postgres_admin_url()),
        ..args
    })
    .await
    else {
        return;
    };

    // A PostgreSQL store with a managed engine: new environments go to it, each its own
    // database owned by its own role.
    let dev = env_id(&a, &token, &org, "development").await;
    let shown = a.get(&format!("/v1/environments/{dev}"), &token).await;
    shown.expect(200);
    assert_eq!(
        shown.body["settings"]["engine"], "postgres",
        "{}",
        shown.body
    );
    assert!(shown.body["settings"]["engine_secret"].is_null());
    let database = format!("enclave_{}", dev.to_ascii_lowercase());
    {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .unwrap();
        let owner: String = sqlx::query_scalar(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
        )
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(owner, database);
        let (superuser, createdb, createrole): (bool, bool, bool) = sqlx::query_as(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1",
        )
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!((superuser, createdb, createrole), (false, false, false));
    }

    // Written through one node, read through the other, on both doors.
    let k = key(&a, &token, &dev).await;
    let mut on_a = wire(&a, &k, "development").await;
    sqlx::raw_sql("CREATE TABLE orders (id INT PRIMARY KEY, amount NUMERIC(10,2)); INSERT INTO orders VALUES (1, 9.50), (2, 20.00)")
        .execute(&mut on_a)
        .await
        .unwrap();
    let mut on_b = wire(&b, &k, "development").await;
    let total: String = sqlx::query("SELECT CAST(sum(amount) AS TEXT) AS total FROM orders")
        .fetch_one(&mut on_b)
        .await
        .unwrap()
        .get("total");
    assert_eq!(total, "29.50");
    let r = sql(&b, &k, "SELECT id FROM orders ORDER BY id").await;
    r.expect(200);
    assert_eq!(r.body["rows"], json!([[1], [2]]));
    let r = sql(&a, &k, "INSERT INTO orders VALUES (3, 1.00)").await;
    r.expect(200);
    let r = sql(&b, &k, "SELECT count(*) FROM orders").await;
    assert_eq!(r.body["rows"][0][0], json!(3), "{}", r.body);

    // The environment's query audit, written by both nodes, is one chain that verifies.
    drop((on_a, on_b));
    let path = format!("/v1/environments/{dev}/audit/queries/verify");
    let mut verdict: Value = Value::Null;
    for _ in 0..50 {
        let r = b.get(&path, &token).await;
        r.expect(200);
        if r.body["entry_count"].as_i64().unwrap_or(0) >= 6 {
            verdict = r.body.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(verdict["chain_valid"], json!(true), "{verdict}");

    // The data moves only with its tables: switching engines by settings is refused.
    let r = a
        .patch(
            &format!("/v1/environments/{dev}"),
            &token,
            json!({"settings": {"engine": "duckdb"}}),
        )
        .await;
    r.expect_error(409, "CONFLICT");
    assert_eq!(r.body["error"]["details"]["field"], "settings.engine");

    // Deleting the environment drops its database and role.
    let r = b.delete(&format!("/v1/environments/{dev}"), &token).await;
    r.expect(204);
    {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) \
             + (SELECT count(*) FROM pg_roles WHERE rolname = $1)",
        )
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(left, 0);
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_environment_answers_only_on_its_home_node() {
    let Some(Cluster {
        a,
        b,
        token,
        org,
        b_dir,
        db: _db,
        _cleanup,
    }) = Cluster::start(|args| ServeArgs {
        node_name: Some(if args.master_key_file.is_none() {
            "node-a".into()
        } else {
            "node-b".into()
        }),
        ..args
    })
    .await
    else {
        return;
    };
    let dev = env_id(&a, &token, &org, "development").await;
    let k = key(&a, &token, &dev).await;
    sql(&a, &k, "CREATE TABLE t AS SELECT 1 AS x")
        .await
        .expect(200);

    // On node B over HTTP: 421, naming node A and where it answers.
    let r = sql(&b, &k, "SELECT x FROM t").await;
    r.expect(421);
    assert_eq!(sqlstate(&r), "57P03");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("node-a"), "{message}");
    assert!(message.contains(&a.gateway), "{message}");
    assert!(message.contains("/engine"), "{message}");
    let home = &r.body["error"]["details"]["home_node"];
    assert_eq!(home["name"], "node-a");
    assert_eq!(home["alive"], json!(true));
    // A clone that copies its data is made on the home node too; elsewhere nothing is created.
    let envs = format!("/v1/organizations/{org}/environments");
    let before = b.get(&envs, &token).await.body["data"]
        .as_array()
        .unwrap()
        .len();
    let r = b
        .post(
            &format!("/v1/environments/{dev}/clone"),
            Some(&token),
            json!({"name": "Dev Copy", "include": ["settings", "data"]}),
        )
        .await;
    r.expect(421);
    assert_eq!(r.body["error"]["details"]["home_node"]["name"], "node-a");
    let after = b.get(&envs, &token).await.body["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before);
    // And on its wire door.
    let mut on_b = wire(&b, &k, "development").await;
    let (state, message) = wire_sqlstate(
        sqlx::query("SELECT x FROM t")
            .fetch_all(&mut on_b)
            .await
            .unwrap_err(),
    );
    assert_eq!(state, "57P03");
    assert!(message.contains("node-a"), "{message}");
    // Node B made no database file of its own.
    assert!(!b_dir.0.join(format!("{dev}.duckdb")).exists());
    // An environment node B creates is B's: it answers there, and A refuses it.
    let created = b
        .post(
            &format!("/v1/organizations/{org}/environments"),
            Some(&token),
            json!({"name": "Preview"}),
        )
        .await;
    created.expect(201);
    let preview = created.body["env_id"].as_str().unwrap().to_string();
    let pk = key(&a, &token, &preview).await;
    sql(&b, &pk, "SELECT 1").await.expect(200);
    sql(&a, &pk, "SELECT 1").await.expect(421);
    // Deleting it through node A leaves the file to node B, which removes it.
    a.delete(&format!("/v1/environments/{preview}"), &token)
        .await
        .expect(204);
    let file = b_dir.0.join(format!("{preview}.duckdb"));
    let mut purged = false;
    for _ in 0..300 {
        let r = a.get(&format!("/v1/environments/{preview}"), &token).await;
        if r.status == 404 {
            purged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(purged, "the home node finishes the deletion");
    assert!(
        !file.exists(),
        "the home node removes the deleted environment's file"
    );

    // Node A stops: node B says it is gone.
    a.stop().await;
    let r = sql(&b, &k, "SELECT x FROM t").await;
    r.expect(503);
    assert_eq!(sqlstate(&r), "57P03");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("gone"), "{message}");
    assert_eq!(
        r.body["error"]["details"]["home_node"]["alive"],
        json!(false)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managed_engine_needs_configuring() {
    let db = Db::sqlite();
    let s = db.start().await;
    let token = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    // Without --engine-postgres-url, postgres needs the user's own database.
    let r = s
        .post(
            &format!("/v1/organizations/{org}/environments"),
            Some(&token),
            json!({"name": "Warehouse", "settings": {"engine": "postgres"}}),
        )
        .await;
    r.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(
        r.body["error"]["details"]["field"],
        "settings.engine_secret"
    );
    let dev = env_id(&s, &token, &org, "development").await;
    let r = s
        .patch(
            &format!("/v1/environments/{dev}"),
            &token,
            json!({"settings": {"engine": "postgres"}}),
        )
        .await;
    r.expect_error(400, "VALIDATION_ERROR");
    let shown = s.get(&format!("/v1/environments/{dev}"), &token).await;
    assert_eq!(shown.body["settings"]["engine"], "duckdb");
    // A default of postgres without the managed engine is refused at start.
    let bad = ServeArgs {
        default_engine: Some("postgres".into()),
        ..db.args()
    }
    .resolve()
    .unwrap_err()
    .to_string();
    assert!(bad.contains("engine_postgres_url"), "{bad}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_an_environment_keeps_every_row_and_its_policies() {
    // Embedded by default, with a managed engine to move to.
    let Some(Cluster {
        a,
        b,
        token,
        org,
        b_dir: _b_dir,
        db,
        _cleanup,
    }) = Cluster::start(|args| ServeArgs {
        engine_postgres_url: Some(postgres_admin_url()),
        default_engine: Some("duckdb".into()),
        ..args
    })
    .await
    else {
        return;
    };
    let dev = env_id(&a, &token, &org, "development").await;
    let k = key(&a, &token, &dev).await;
    for statement in [
        "CREATE TABLE customers (id INTEGER, email VARCHAR, balance DECIMAL(12,2), active BOOLEAN, \
         joined TIMESTAMP, seen TIMESTAMPTZ, born DATE, photo BLOB, tags VARCHAR[], score DOUBLE)",
        "INSERT INTO customers VALUES \
         (1, 'ada@example.com', 10.50, true, TIMESTAMP '2024-01-02 03:04:05.123456', \
          TIMESTAMPTZ '2024-01-02 03:04:05+00', DATE '1990-12-31', '\\x00\\xFF'::BLOB, ['a', 'b'], 0.1), \
         (2, 'say \"hi\", twice\nand again', -3.25, false, NULL, NULL, NULL, NULL, [], 'inf'::DOUBLE), \
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        "CREATE TABLE events AS SELECT range AS id, range % 7 AS kind FROM range(5000)",
        "CREATE VIEW first_kind AS SELECT id FROM events WHERE kind = 0",
    ] {
        sql(&a, &k, statement).await.expect(200);
    }
    let r = a
        .post(
            &format!("/v1/environments/{dev}/policies"),
            Some(&token),
            json!({"name": "pii", "type": "column_masking", "rules": [
                {"table": "customers", "column": "email", "function": "hash"}]}),
        )
        .await;
    r.expect(201);
    let analyst = {
        let r = a
            .post(
                &format!("/v1/environments/{dev}/api-keys"),
                Some(&token),
                json!({"name": "analyst", "scopes": ["read_only"], "role": "analyst"}),
            )
            .await;
        r.expect(201);
        r.body["key"].as_str().unwrap().to_string()
    };
    let masked_before = sql(&a, &analyst, "SELECT email FROM customers WHERE id = 1").await;
    masked_before.expect(200);
    let before_rows = sql(&a, &k, "SELECT * FROM customers ORDER BY id").await;
    before_rows.expect(200);

    let path = format!("/v1/environments/{dev}/engine");
    // Only the home node holds the file, so only it moves it.
    b.post(&path, Some(&token), json!({"engine": "postgres"}))
        .await
        .expect(421);
    // Bad input changes nothing.
    let r = a
        .post(&path, Some(&token), json!({"engine": "duckdb"}))
        .await;
    r.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["error"]["details"]["field"], "engine");
    a.post(&path, Some(&token), json!({"engine": "oracle"}))
        .await
        .expect(400);

    // A dry run says what would move and moves nothing — from the CLI too.
    let cli = crate::cli::Cli {
        url: a.url.clone(),
        token: token.clone(),
    };
    let out = cli
        .run(&["env", "move-data", "development", "--dry-run"])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("would move 5003 rows in 2 tables and 1 views to enclave_env_"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("balance numeric(12,2)"),
        "{}",
        out.stdout
    );
    let dry = a
        .post(
            &path,
            Some(&token),
            json!({"engine": "postgres", "dry_run": true}),
        )
        .await;
    dry.expect(200);
    assert_eq!(dry.body["dry_run"], json!(true));
    assert_eq!(dry.body["rows"], json!(5003), "{}", dry.body);
    let tables = dry.body["tables"].as_array().unwrap();
    let customers = tables.iter().find(|t| t["name"] == "customers").unwrap();
    assert_eq!(customers["schema"], "public");
    assert_eq!(customers["rows"], json!(3));
    let balance = customers["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "balance")
        .unwrap();
    assert_eq!(
        (balance["from_type"].as_str(), balance["to_type"].as_str()),
        (Some("DECIMAL(12,2)"), Some("numeric(12,2)"))
    );
    assert_eq!(dry.body["views"][0]["name"], "first_kind");
    let shown = a.get(&format!("/v1/environments/{dev}"), &token).await;
    assert_eq!(shown.body["settings"]["engine"], "duckdb");

    // A session with an open transaction on the embedded data.
    let mut open = wire(&a, &k, "development").await;
    sqlx::raw_sql("BEGIN; INSERT INTO events VALUES (-1, -1)")
        .execute(&mut open)
        .await
        .unwrap();

    let moved = a
        .post(&path, Some(&token), json!({"engine": "postgres"}))
        .await;
    moved.expect(200);
    assert_eq!(moved.body["dry_run"], json!(false));
    assert_eq!(moved.body["rows"], json!(5003));
    let shown = a.get(&format!("/v1/environments/{dev}"), &token).await;
    assert_eq!(
        shown.body["settings"]["engine"], "postgres",
        "{}",
        shown.body
    );
    assert!(shown.body["settings"]["engine_secret"].is_null());
    assert!(!db
        .data_dir()
        .join("engine")
        .join(format!("{dev}.duckdb"))
        .exists());

    // Every row, through the other node too; the view came along.
    let after_rows = sql(&b, &k, "SELECT * FROM customers ORDER BY id").await;
    after_rows.expect(200);
    assert_eq!(after_rows.body["rows"][0][0], json!(1));
    assert_eq!(
        after_rows.body["rows"][1][1],
        before_rows.body["rows"][1][1]
    );
    assert_eq!(
        after_rows.body["rows"][0][4],
        before_rows.body["rows"][0][4]
    );
    assert_eq!(after_rows.body["rows"][2], before_rows.body["rows"][2]);
    let r = sql(&b, &k, "SELECT count(*), sum(id) FROM events").await;
    assert_eq!(r.body["rows"][0], json!([5000, "12497500"]), "{}", r.body);
    let r = sql(&a, &k, "SELECT count(*) FROM first_kind").await;
    assert_eq!(r.body["rows"], json!([[715]]), "{}", r.body);
    let r = sql(
        &a,
        &k,
        "SELECT CAST(balance AS TEXT), encode(photo, 'hex') FROM customers WHERE id = 1",
    )
    .await;
    assert_eq!(r.body["rows"][0], json!(["10.50", "00ff"]), "{}", r.body);
    // The masking policy applies to the next statement, on either node.
    for node in [&a, &b] {
        let masked = sql(node, &analyst, "SELECT email FROM customers WHERE id = 1").await;
        masked.expect(200);
        assert_ne!(masked.body["rows"][0][0], json!("ada@example.com"));
        assert_eq!(masked.body["rows"][0][0], masked_before.body["rows"][0][0]);
    }
    // The open transaction stayed behind, and its session is told so.
    let (state, message) = wire_sqlstate(
        sqlx::raw_sql("COMMIT")
            .execute(&mut open)
            .await
            .unwrap_err(),
    );
    assert_eq!(state, "40001", "{message}");
    let r = sql(&a, &k, "SELECT count(*) FROM events WHERE id = -1").await;
    assert_eq!(r.body["rows"][0][0], json!(0));
    // The move is in the audit trail.
    let audit = a
        .get(
            &format!("/v1/organizations/{org}/audit/iam?action=environment.engine_moved"),
            &token,
        )
        .await;
    audit.expect(200);
    assert_eq!(
        audit.body["data"][0]["after"]["moved"]["rows"],
        json!(5003),
        "{}",
        audit.body
    );
    // And a second move finds nothing to move.
    a.post(&path, Some(&token), json!({"engine": "postgres"}))
        .await
        .expect(409);
    drop(open);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_nodes() {
    // A burst of 10, one more a second.
    let Some(Cluster {
        a,
        b,
        token,
        org,
        b_dir: _b_dir,
        db: _db,
        _cleanup,
    }) = Cluster::start(|args| ServeArgs {
        engine_postgres_url: Some(postgres_admin_url()),
        rate_limits: Some("free=60/10".into()),
        ..args
    })
    .await
    else {
        return;
    };
    // Each node has heard of the other (node A through the store's notifications).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let dev = env_id(&b, &token, &org, "development").await;

    // A burst spread over both nodes is limited as one: 10 (and what refills meanwhile),
    // not 10 on each.
    let mut allowed = [0, 0];
    let mut refused = [0, 0];
    for i in 0..24 {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = node.get("/v1/auth/me", &token).await;
        match r.status {
            200 => allowed[i % 2] += 1,
            429 => {
                refused[i % 2] += 1;
                assert!(r.header("retry-after").is_some());
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    let total = allowed[0] + allowed[1];
    assert!(
        (9..=13).contains(&total),
        "allowed {allowed:?}, refused {refused:?}"
    );
    assert!(
        refused[0] > 0 && refused[1] > 0,
        "both nodes refuse: {refused:?}"
    );

    // One statement at a time for the environment, whichever node it reaches.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    a.patch(
        &format!("/v1/environments/{dev}"),
        &token,
        json!({"settings": {"max_concurrent_queries": 1}}),
    )
    .await
    .expect(200);
    let k = key(&a, &token, &dev).await;
    let timed = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS started, \
                 pg_sleep(0.4) AS slept, \
                 CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS ended";
    let (on_a, on_b) = tokio::join!(sql(&a, &k, timed), sql(&b, &k, timed));
    let span = |r: &crate::common::Resp| {
        r.expect(200);
        (
            r.body["rows"][0][0].as_i64().unwrap(),
            r.body["rows"][0][2].as_i64().unwrap(),
        )
    };
    let (x, y) = (span(&on_a), span(&on_b));
    assert!(
        x.1 <= y.0 || y.1 <= x.0,
        "the two statements ran at once: {x:?} {y:?}"
    );
    b.stop().await;
    a.stop().await;
}
