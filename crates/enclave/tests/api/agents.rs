//! The agent registry and capability grants through the real server: agents registered from
//! both doors, a grant narrowing actions, tables (reached through joins, subqueries, CTEs and
//! views), rows, rate and daily credits — on the wire and over HTTP, and only for its agent in
//! its environment — agents required to hold a grant, and the API's own rules.

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::common::{Db, Org, Resp};
use crate::gateway::sqlstate;

crate::both!(
    agents_are_registered_and_narrowed,
    grants_follow_their_rules,
    grants_move_with_promotion_clone_and_diff,
);

struct Fixture {
    o: Org,
    dev: String,
    staging: String,
    key: String,
}

impl Fixture {
    async fn start(db: &Db) -> Fixture {
        let o = Org::start(db).await;
        let dev = o.env("development").await;
        let staging = o.env("staging").await;
        for env in [&dev, &staging] {
            for sql in [
                "CREATE TABLE orders (id INT, total INT)",
                "INSERT INTO orders VALUES (1, 10), (2, 20), (3, 30), (4, 40), (5, 50)",
                "CREATE TABLE customers (id INT, name TEXT)",
                "INSERT INTO customers VALUES (1, 'ada')",
                "CREATE TABLE salaries (id INT, amount INT)",
                "INSERT INTO salaries VALUES (1, 100)",
                "CREATE VIEW pay AS SELECT id, amount FROM salaries",
            ] {
                let r =
                    o.s.post(
                        "/v1/query",
                        Some(&o.token),
                        json!({"sql": sql, "env_id": env}),
                    )
                    .await;
                r.expect(200);
            }
        }
        let key = o.query_key(&dev, &["developer"], "developer").await;
        Fixture {
            o,
            dev,
            staging,
            key,
        }
    }

    /// A statement over HTTP with `key`, as agent `agent` (none: no agent headers).
    async fn as_agent(&self, key: &str, agent: Option<&str>, sql: &str) -> Resp {
        let mut req = self
            .o
            .s
            .request(Method::POST, "/v1/query", None)
            .header("x-api-key", key)
            .json(&json!({ "sql": sql }));
        if let Some(a) = agent {
            req = req
                .header("x-agent-id", a)
                .header("x-agent-framework", "langchain");
        }
        self.o.s.raw(req).await
    }

    async fn grant(&self, agent: &str, spec: Value) -> Resp {
        let path = format!("/v1/environments/{}/agents/{agent}/capabilities", self.dev);
        self.o.s.post(&path, Some(&self.o.token), spec).await
    }
}

#[track_caller]
fn narrowed(r: &Resp, rule: &str, grant_id: &str) {
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "POLICY_VIOLATION");
    assert_eq!(r.body["error"]["details"]["rule"], rule, "{}", r.body);
    assert_eq!(r.body["error"]["details"]["grant_id"], grant_id);
    assert_eq!(sqlstate(r), "42501");
}

async fn agents_are_registered_and_narrowed(db: Db) {
    let f = Fixture::start(&db).await;
    let bot = Some("support-bot");
    // Before any grant the agent reads what its key may, and is registered.
    f.as_agent(&f.key, bot, "SELECT amount FROM salaries")
        .await
        .expect(200);
    let (host, port) = f.o.s.gateway.rsplit_once(':').unwrap();
    let options = sqlx::postgres::PgConnectOptions::new()
        .host(host)
        .port(port.parse().unwrap())
        .username("bot")
        .password(&f.key)
        .database("development")
        .application_name("support-bot")
        .ssl_mode(sqlx::postgres::PgSslMode::Disable)
        .statement_cache_capacity(0);
    let mut wire = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::query("SELECT count(*) FROM orders")
        .execute(&mut wire)
        .await
        .unwrap();
    let agents =
        f.o.s
            .get(&format!("/v1/environments/{}/agents", f.dev), &f.o.token)
            .await;
    agents.expect(200);
    let seen = &agents.body["data"][0];
    assert_eq!(seen["agent_id"], "support-bot", "{}", agents.body);
    assert_eq!(seen["framework"], "langchain");
    assert!(seen["query_count"].as_i64().unwrap() >= 2);
    assert!(seen["credits_used"].as_f64().unwrap() > 0.0);
    assert!(seen["capabilities"].is_null());

    // A grant to read two tables, two rows at a time.
    let g = f
        .grant(
            "support-bot",
            json!({"allowed_actions": ["query"], "allowed_tables": ["orders", "customers"],
                   "max_rows_per_query": 2}),
        )
        .await;
    g.expect(201);
    let grant_id = g.body["grant_id"].as_str().unwrap().to_string();
    assert!(grant_id.starts_with("cap_"));
    let r = f.as_agent(&f.key, bot, "SELECT * FROM orders").await;
    r.expect(200);
    assert_eq!(r.body["row_count"], 2);
    assert_eq!(r.body["truncated"], true);
    f.as_agent(
        &f.key,
        bot,
        "SELECT o.id, c.name FROM orders o JOIN customers c ON o.id = c.id",
    )
    .await
    .expect(200);
    for sql in [
        "SELECT amount FROM salaries",
        "SELECT * FROM orders WHERE id IN (SELECT id FROM salaries)",
        "WITH s AS (SELECT * FROM salaries) SELECT count(*) FROM s",
        "SELECT o.id FROM orders o JOIN salaries s ON o.id = s.id",
        "SELECT * FROM pay",
    ] {
        narrowed(
            &f.as_agent(&f.key, bot, sql).await,
            "allowed_tables",
            &grant_id,
        );
    }
    narrowed(
        &f.as_agent(&f.key, bot, "INSERT INTO orders VALUES (9, 90)")
            .await,
        "allowed_actions",
        &grant_id,
    );
    // The same on the wire, named in the error.
    let e = sqlx::query("SELECT amount FROM salaries")
        .execute(&mut wire)
        .await
        .unwrap_err();
    let db_error = e.as_database_error().unwrap();
    assert_eq!(db_error.code().as_deref(), Some("42501"));
    assert!(
        db_error.message().contains(&grant_id),
        "{}",
        db_error.message()
    );
    let rows = sqlx::query("SELECT id FROM orders")
        .fetch_all(&mut wire)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "the grant's row cap on the wire too");
    // Another agent, no agent, the key's own scopes: none of them narrowed by this grant; the
    // agent in another environment neither.
    f.as_agent(&f.key, Some("etl"), "SELECT amount FROM salaries")
        .await
        .expect(200);
    f.as_agent(&f.key, None, "SELECT amount FROM salaries")
        .await
        .expect(200);
    let staging_key = f.o.query_key(&f.staging, &["developer"], "developer").await;
    f.as_agent(&staging_key, bot, "SELECT amount FROM salaries")
        .await
        .expect(200);
    // A grant never widens: a read-only key's agent allowed to write still cannot.
    let reader = f.o.query_key(&f.dev, &["read_only"], "developer").await;
    f.grant(
        "writer",
        json!({"allowed_actions": ["query", "write", "ddl"]}),
    )
    .await
    .expect(201);
    let r = f
        .as_agent(&reader, Some("writer"), "INSERT INTO orders VALUES (9, 90)")
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    // Denied tables reach through views; an update of the grant applies to the next statement.
    let g2 = f
        .grant(
            "support-bot",
            json!({"allowed_actions": ["query", "write"], "denied_tables": ["salaries"]}),
        )
        .await;
    g2.expect(200);
    assert_eq!(g2.body["version"], 2);
    narrowed(
        &f.as_agent(&f.key, bot, "SELECT * FROM pay").await,
        "denied_tables",
        &grant_id,
    );
    narrowed(
        &f.as_agent(&f.key, bot, "SELECT amount FROM salaries").await,
        "denied_tables",
        &grant_id,
    );
    f.as_agent(&f.key, bot, "INSERT INTO orders VALUES (6, 60)")
        .await
        .expect(200);
    let r = f.as_agent(&f.key, bot, "SELECT * FROM orders").await;
    assert_eq!(r.body["row_count"], 6, "no row cap in this version");

    // A rate: three statements a minute.
    f.grant(
        "counter",
        json!({"allowed_actions": ["query"], "max_queries_per_minute": 3}),
    )
    .await
    .expect(201);
    for _ in 0..3 {
        f.as_agent(&f.key, Some("counter"), "SELECT 1")
            .await
            .expect(200);
    }
    let r = f.as_agent(&f.key, Some("counter"), "SELECT 1").await;
    assert_eq!(
        r.body["error"]["details"]["rule"], "max_queries_per_minute",
        "{}",
        r.body
    );
    // On the wire too, where the extended protocol describes a statement before running it:
    // only running counts.
    f.grant(
        "wire-counter",
        json!({"allowed_actions": ["query"], "max_queries_per_minute": 3}),
    )
    .await
    .expect(201);
    let mut counted =
        sqlx::PgConnection::connect_with(&options.clone().application_name("wire-counter"))
            .await
            .unwrap();
    for _ in 0..3 {
        sqlx::query("SELECT id FROM orders WHERE id = $1")
            .bind(1)
            .fetch_all(&mut counted)
            .await
            .unwrap();
    }
    let e = sqlx::query("SELECT id FROM orders WHERE id = $1")
        .bind(1)
        .fetch_all(&mut counted)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("statements a minute"), "{e}");
    let _ = counted.close().await;
    // Daily credits: a whole scan is estimated at 3 credits; 5 a day allow one.
    f.grant(
        "spender",
        json!({"allowed_actions": ["query"], "max_credits_per_day": 5}),
    )
    .await
    .expect(201);
    f.as_agent(&f.key, Some("spender"), "SELECT count(*) FROM orders")
        .await
        .expect(200);
    let r = f
        .as_agent(&f.key, Some("spender"), "SELECT count(*) FROM orders")
        .await;
    assert_eq!(
        r.body["error"]["details"]["rule"], "max_credits_per_day",
        "{}",
        r.body
    );

    // Agents required: one without a grant reads nothing (but may ask `SELECT 1`); a granted
    // one goes on.
    f.o.s
        .patch(
            &format!("/v1/environments/{}", f.dev),
            &f.o.token,
            json!({"settings": {"agents_require_capabilities": true}}),
        )
        .await
        .expect(200);
    let r = f
        .as_agent(&f.key, Some("stranger"), "SELECT * FROM orders")
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.body["error"]["details"]["rule"],
        "agents_require_capabilities"
    );
    f.as_agent(&f.key, Some("stranger"), "SELECT 1")
        .await
        .expect(200);
    f.as_agent(&f.key, bot, "SELECT * FROM orders")
        .await
        .expect(200);
    f.as_agent(&f.key, None, "SELECT * FROM orders")
        .await
        .expect(200);

    // Revoked: the agent is an agent without a grant again.
    let path = format!("/v1/environments/{}/agents/support-bot/capabilities", f.dev);
    f.o.s.delete(&path, &f.o.token).await.expect(204);
    let r = f.as_agent(&f.key, bot, "SELECT * FROM orders").await;
    assert_eq!(
        r.body["error"]["details"]["rule"],
        "agents_require_capabilities"
    );

    // Refusals are in the query audit with the agent.
    let trail =
        f.o.s
            .get(
                &format!(
                    "/v1/environments/{}/audit/queries?outcome=refused&limit=200",
                    f.dev
                ),
                &f.o.token,
            )
            .await;
    assert!(trail.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["agent"]["id"] == "support-bot" && e["error_code"] == "42501"));
    let _ = wire.close().await;
}

async fn grants_follow_their_rules(db: Db) {
    let f = Fixture::start(&db).await;
    let base = format!("/v1/environments/{}/agents", f.dev);
    // Bad specs name the field and the rule, and change nothing.
    for (spec, field, rule) in [
        (
            json!({"allowed_actions": []}),
            "allowed_actions",
            "non_empty",
        ),
        (
            json!({"allowed_actions": ["read"]}),
            "allowed_actions[0]",
            "",
        ),
        (
            json!({"allowed_actions": ["query"], "allowed_tables": ["a b"]}),
            "allowed_tables[0]",
            "identifier",
        ),
        (
            json!({"allowed_actions": ["query"], "max_rows_per_query": 0}),
            "max_rows_per_query",
            "minimum",
        ),
        (
            json!({"allowed_actions": ["query"], "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
            "future",
        ),
        (
            json!({"allowed_actions": ["query"], "colour": "red"}),
            "colour",
            "unknown_field",
        ),
    ] {
        let r = f.grant("bot", spec.clone()).await;
        r.expect_error(400, "VALIDATION_ERROR");
        if !rule.is_empty() {
            assert_eq!(r.body["error"]["details"]["field"], field, "{spec}");
            assert_eq!(r.body["error"]["details"]["rule"], rule, "{spec}");
        }
    }
    f.o.s
        .get(&format!("{base}/bot/capabilities"), &f.o.token)
        .await
        .expect_error(404, "NOT_FOUND");
    let long = "x".repeat(129);
    f.o.s
        .get(&format!("{base}/{long}/capabilities"), &f.o.token)
        .await
        .expect_error(400, "VALIDATION_ERROR");
    f.o.s
        .get(&format!("{base}/never-seen"), &f.o.token)
        .await
        .expect_error(404, "NOT_FOUND");

    // Versions, and the grant as stored (tables lower-cased and sorted).
    let spec = json!({"allowed_actions": ["query"], "allowed_tables": ["Orders", "crm.Customers"],
                      "max_credits_per_day": 12.5, "expires_at": "2999-01-01T00:00:00Z"});
    f.grant("bot", spec).await.expect(201);
    f.grant("bot", json!({"allowed_actions": ["query", "write"]}))
        .await
        .expect(200);
    let r =
        f.o.s
            .get(&format!("{base}/bot/capabilities/versions"), &f.o.token)
            .await;
    r.expect(200);
    assert_eq!(r.body["pagination"]["total"], 2);
    let old = &r.body["data"][1];
    assert_eq!(old["allowed_tables"], json!(["crm.customers", "orders"]));
    assert_eq!(old["max_credits_per_day"], 12.5);
    let current =
        f.o.s
            .get(&format!("{base}/bot/capabilities"), &f.o.token)
            .await;
    assert_eq!(current.body["allowed_actions"], json!(["query", "write"]));

    // Who: members read grants, owners and admins (and keys with policies:manage) change them.
    let (_, analyst) =
        f.o.s
            .add_member(&f.o.token, &f.o.org, "ana@example.com", "analyst")
            .await;
    f.o.s
        .get(&format!("{base}/bot/capabilities"), &analyst)
        .await
        .expect(200);
    let r =
        f.o.s
            .post(
                &format!("{base}/bot/capabilities"),
                Some(&analyst),
                json!({"allowed_actions": ["query"]}),
            )
            .await;
    r.expect_error(403, "FORBIDDEN");
    f.o.s
        .delete(&format!("{base}/bot/capabilities"), &analyst)
        .await
        .expect_error(403, "FORBIDDEN");

    // Audited like policies.
    let r =
        f.o.s
            .get(
                &format!(
                    "/v1/organizations/{}/audit/iam?resource_type=agent_capability",
                    f.o.org
                ),
                &f.o.token,
            )
            .await;
    let actions: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["agent_capability.updated", "agent_capability.granted"]
    );

    // A locked environment takes no grant.
    f.o.s
        .patch(
            &format!("/v1/environments/{}", f.dev),
            &f.o.token,
            json!({"locked": true}),
        )
        .await
        .expect(200);
    f.grant("bot", json!({"allowed_actions": ["ddl"]}))
        .await
        .expect_error(409, "CONFLICT");
}

async fn grants_move_with_promotion_clone_and_diff(db: Db) {
    let f = Fixture::start(&db).await;
    let spec = json!({"allowed_actions": ["query"], "allowed_tables": ["orders"]});
    f.grant("support-bot", spec.clone()).await.expect(201);
    let diff =
        f.o.s
            .get(
                &format!("/v1/environments/{}/diff?against={}", f.dev, f.staging),
                &f.o.token,
            )
            .await;
    diff.expect(200);
    assert_eq!(
        diff.body["capabilities"],
        json!([{"name": "support-bot", "status": "missing_there"}])
    );
    assert_eq!(diff.body["identical"], false);

    let promote = |dry_run: bool| {
        let (s, token, dev, staging) = (&f.o.s, &f.o.token, &f.dev, &f.staging);
        async move {
            let r = s
                .post(
                    &format!("/v1/environments/{dev}/promote"),
                    Some(token),
                    json!({"target_env_id": staging, "include": ["capabilities"], "dry_run": dry_run}),
                )
                .await;
            r.expect(200);
            r.body
        }
    };
    let planned = promote(true).await;
    assert_eq!(planned["changes"]["capabilities_promoted"], 1);
    assert_eq!(
        planned["details"],
        json!([{"kind": "capability", "name": "support-bot", "action": "created"}])
    );
    let staging_grant = format!(
        "/v1/environments/{}/agents/support-bot/capabilities",
        f.staging
    );
    f.o.s
        .get(&staging_grant, &f.o.token)
        .await
        .expect_error(404, "NOT_FOUND");
    promote(false).await;
    let copied = f.o.s.get(&staging_grant, &f.o.token).await;
    copied.expect(200);
    assert_eq!(copied.body["allowed_tables"], json!(["orders"]));
    // In force there from the next statement.
    let staging_key = f.o.query_key(&f.staging, &["developer"], "developer").await;
    let r = f
        .as_agent(&staging_key, Some("support-bot"), "SELECT * FROM salaries")
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    // Promoted again, nothing changes.
    assert_eq!(promote(false).await["changes"]["capabilities_promoted"], 0);
    let diff =
        f.o.s
            .get(
                &format!("/v1/environments/{}/diff?against={}", f.dev, f.staging),
                &f.o.token,
            )
            .await;
    assert_eq!(diff.body["capabilities"][0]["status"], "equal");

    // A clone carries them unless left out.
    let clone = |include: Value| {
        let (s, token, dev) = (&f.o.s, &f.o.token, &f.dev);
        async move {
            let mut body = json!({"name": format!("c{}", include.to_string().len())});
            if !include.is_null() {
                body["include"] = include;
            }
            let r = s
                .post(&format!("/v1/environments/{dev}/clone"), Some(token), body)
                .await;
            r.expect(201);
            r.body["env_id"].as_str().unwrap().to_string()
        }
    };
    let with = clone(Value::Null).await;
    f.o.s
        .get(
            &format!("/v1/environments/{with}/agents/support-bot/capabilities"),
            &f.o.token,
        )
        .await
        .expect(200);
    let without = clone(json!(["settings"])).await;
    f.o.s
        .get(
            &format!("/v1/environments/{without}/agents/support-bot/capabilities"),
            &f.o.token,
        )
        .await
        .expect_error(404, "NOT_FOUND");
}
