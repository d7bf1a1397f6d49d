//! The result cache (pipeline stage 9, docs/sql.md): a repeated read is answered from it and
//! marked so; a write through either door, on any node, makes it read again; callers with
//! different masks or filters never share an answer; `settings.cache_enabled` is honoured.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{Db, Org, Server};
use crate::engines;
use crate::gateway::{development, psql, Engine};

engines!(repeats_hit_and_writes_miss);

/// The rows (as text: engines type sums differently) and the cache mark of one HTTP query.
async fn ask(o: &Org, key: &str, sql: &str) -> (Value, bool) {
    let r = o.sql(key, sql, json!([])).await;
    r.expect(200);
    let text = |v: &Value| match v {
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    };
    let rows = r.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| Value::Array(row.as_array().unwrap().iter().map(text).collect()))
        .collect();
    (Value::Array(rows), r.body["cache_hit"].as_bool().unwrap())
}

async fn repeats_hit_and_writes_miss(db: Db, engine: Engine) {
    let o = Org::start(&db).await;
    let Some((env, _pg)) = development(&o, engine).await else {
        return;
    };
    let region = |r: &str| json!({ "region": r });
    let dev = o
        .attributed_key(&env, &["developer"], "developer", region("eu"))
        .await;
    let eu = o
        .attributed_key(&env, &["query:read"], "analyst", region("eu"))
        .await;
    let na = o
        .attributed_key(&env, &["query:read"], "analyst", region("na"))
        .await;
    for sql in [
        "CREATE TABLE sales (region VARCHAR, amount INTEGER)",
        "INSERT INTO sales VALUES ('eu', 10), ('eu', 20), ('na', 5)",
    ] {
        o.sql(&dev, sql, json!([])).await.expect(200);
    }
    let total = "SELECT count(*), sum(amount) FROM sales";

    // A repeat is answered from the cache, with the same rows.
    let (first, hit) = ask(&o, &dev, total).await;
    assert!(!hit);
    assert_eq!(first, json!([["3", "35"]]));
    let (again, hit) = ask(&o, &dev, total).await;
    assert!(hit);
    assert_eq!(again, first);
    let arrow =
        o.s.keyed(
            Method::POST,
            "/v1/query/arrow",
            &dev,
            Some(json!({"sql": total})),
        )
        .await;
    arrow.expect(200);
    assert_eq!(arrow.header("x-cache-hit"), Some("true"));

    // A write through the other door: the next read runs again.
    let (ok, out, err) = psql(
        &o,
        &dev,
        "development",
        &["-c", "INSERT INTO sales VALUES ('eu', 100)"],
    )
    .await;
    assert!(ok, "{out}{err}");
    let (after, hit) = ask(&o, &dev, total).await;
    assert!(!hit);
    assert_eq!(after, json!([["4", "135"]]));

    // Randomness (and the clock) are never kept; nor is a read inside a transaction.
    let volatile = "SELECT count(*) FROM sales WHERE random() >= 0";
    ask(&o, &dev, volatile).await;
    assert!(!ask(&o, &dev, volatile).await.1);
    assert!(!ask(&o, &dev, &format!("BEGIN; {total}")).await.1);

    // Two views of the same text: each caller's filter is part of what is kept.
    o.s.post(
        &format!("/v1/environments/{env}/policies"),
        Some(&o.token),
        json!({"name": "own-region", "type": "row_level_security", "rules": [
            {"table": "sales", "filter": "region = {region}", "exempt_roles": ["owner", "admin"]},
        ]}),
    )
    .await
    .expect(201);
    assert_eq!(ask(&o, &eu, total).await, (json!([["3", "130"]]), false));
    assert_eq!(ask(&o, &na, total).await, (json!([["1", "5"]]), false));
    assert_eq!(ask(&o, &eu, total).await, (json!([["3", "130"]]), true));
    assert_eq!(ask(&o, &na, total).await, (json!([["1", "5"]]), true));

    // The query audit marks the hits.
    let trail =
        o.s.get(
            &format!("/v1/environments/{env}/audit/queries?limit=100"),
            &o.token,
        )
        .await;
    trail.expect(200);
    let hits = trail.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cache_hit"] == true)
        .count();
    assert_eq!(hits, 4, "{}", trail.body);

    // Turned off for the environment: every read runs.
    o.s.patch(
        &format!("/v1/environments/{env}"),
        &o.token,
        json!({"settings": {"cache_enabled": false}}),
    )
    .await
    .expect(200);
    assert!(!ask(&o, &eu, total).await.1);
    assert!(!ask(&o, &eu, total).await.1);
    o.s.patch(
        &format!("/v1/environments/{env}"),
        &o.token,
        json!({"settings": {"cache_enabled": true}}),
    )
    .await
    .expect(200);
    assert!(!ask(&o, &eu, total).await.1);
    assert!(ask(&o, &eu, total).await.1);
}

/// Two nodes on one PostgreSQL store and one PostgreSQL engine: a write on one drops the
/// other's cached answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_another_node_reaches_the_cache() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let o = Org::start(&db).await;
    let Some((env, _pg)) = development(&o, Engine::Postgres).await else {
        return;
    };
    let dev = o.query_key(&env, &["developer"], "developer").await;
    o.sql(&dev, "CREATE TABLE t (x INTEGER)", json!([]))
        .await
        .expect(200);
    o.sql(&dev, "INSERT INTO t VALUES (1)", json!([]))
        .await
        .expect(200);
    let b = Server::start(crate::audit::walk_args(&db)).await;
    let on_b = |sql: &'static str| {
        let b = &b;
        let dev = dev.clone();
        async move {
            let r = b
                .keyed(Method::POST, "/v1/query", &dev, Some(json!({"sql": sql})))
                .await;
            r.expect(200);
            (
                r.body["rows"][0][0].as_i64().unwrap(),
                r.body["cache_hit"] == true,
            )
        }
    };
    assert_eq!(on_b("SELECT sum(x) FROM t").await, (1, false));
    assert_eq!(on_b("SELECT sum(x) FROM t").await, (1, true));
    o.sql(&dev, "INSERT INTO t VALUES (41)", json!([]))
        .await
        .expect(200);
    // NOTIFY reaches the other node right after the commit; allow it a moment.
    let mut seen = (0, true);
    for _ in 0..50 {
        seen = on_b("SELECT sum(x) FROM t").await;
        if seen.0 == 42 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, (42, false));
}
