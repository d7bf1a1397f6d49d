use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::{Db, Server};

both!(
    defaults_for_new_organizations,
    create_fields_and_validation,
    concurrent_creates_of_one_slug,
    get_by_slug_and_aliases,
    updates_index_and_parents,
    reorder_is_atomic_and_versioned,
    locked_refuses_every_write_but_unlocking,
    lifecycle_and_delete,
    roles_and_other_organizations,
    quota_by_tier,
    list_filters_and_pages,
    clone_diff_and_promote,
);

/// A server whose new organizations are enterprise (no environment quota), its owner's
/// token and the bootstrapped organization.
async fn setup(db: &Db) -> (Server, String, String) {
    let mut args = db.args();
    args.default_tier = Some("enterprise".into());
    let s = Server::start(args).await;
    let owner = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    (s, owner, org)
}

fn envs_path(org: &str) -> String {
    format!("/v1/organizations/{org}/environments")
}

async fn create(s: &Server, token: &str, org: &str, body: Value) -> Value {
    let r = s.post(&envs_path(org), Some(token), body).await;
    r.expect(201);
    r.body
}

async fn list_all(s: &Server, token: &str, org: &str) -> Value {
    let r = s.get(&format!("{}?limit=200", envs_path(org)), token).await;
    r.expect(200);
    r.body
}

fn slugs(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["slug"].as_str().unwrap().to_string())
        .collect()
}

#[track_caller]
fn assert_dense(list: &Value) {
    let idx: Vec<i64> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_i64().unwrap())
        .collect();
    assert_eq!(idx, (0..idx.len() as i64).collect::<Vec<_>>(), "{list}");
}

async fn defaults_for_new_organizations(db: Db) {
    let (s, owner, org) = setup(&db).await;
    let list = list_all(&s, &owner, &org).await;
    assert_eq!(slugs(&list), ["development", "staging", "production"]);
    let types: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["dev", "staging", "prod"]);
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["status"] == "active"));
    assert_eq!(list["pagination"]["total"], 3);
    assert_dense(&list);

    let mk = |slug: &str, extra: Value| {
        let mut body = json!({"name": slug, "slug": slug, "billing_email": "b@example.com"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let none = s
        .post(
            "/v1/organizations",
            Some(&owner),
            mk("bare", json!({"default_environments": false})),
        )
        .await;
    none.expect(201);
    let bare = none.body["org_id"].as_str().unwrap();
    assert_eq!(list_all(&s, &owner, bare).await["data"], json!([]));

    let named = s
        .post(
            "/v1/organizations",
            Some(&owner),
            mk(
                "named",
                json!({"default_environments": ["Dev", "QA", "Prod"]}),
            ),
        )
        .await;
    named.expect(201);
    let named_list = list_all(&s, &owner, named.body["org_id"].as_str().unwrap()).await;
    assert_eq!(slugs(&named_list), ["dev", "qa", "prod"]);
    assert_eq!(named_list["data"][2]["type"], "prod");

    let dup = s
        .post(
            "/v1/organizations",
            Some(&owner),
            mk("dup", json!({"default_environments": ["QA", "qa"]})),
        )
        .await;
    dup.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(
        dup.body["error"]["details"]["field"],
        "default_environments[1]"
    );
    let bad = s
        .post(
            "/v1/organizations",
            Some(&owner),
            mk("badtype", json!({"default_environments": "yes"})),
        )
        .await;
    bad.expect_error(400, "VALIDATION_ERROR");
    // Nothing was created by the refused requests.
    let r = s.get("/v1/organizations?limit=200", &owner).await;
    assert_eq!(r.body["pagination"]["total"], 3);
    s.stop().await;
}

async fn create_fields_and_validation(db: Db) {
    let (s, owner, org) = setup(&db).await;
    let e = create(
        &s,
        &owner,
        &org,
        json!({"name": "  Preview PR 42 ", "description": "for PR 42\nbranch",
               "settings": {"query_timeout_ms": 5000}}),
    )
    .await;
    assert_eq!(e["name"], "Preview PR 42");
    assert_eq!(e["slug"], "preview-pr-42");
    assert_eq!(e["type"], "custom");
    assert_eq!(e["index"], 3);
    assert_eq!(e["color"], "#64748b");
    assert!(e["env_id"].as_str().unwrap().starts_with("env_"));
    assert_eq!(e["org_id"], org.as_str());
    assert!(e["status"] == "active" || e["status"] == "provisioning");
    assert_eq!(e["locked"], false);
    assert_eq!(
        e["settings"],
        json!({"query_timeout_ms": 5000, "max_concurrent_queries": 100, "cache_enabled": true,
               "engine": "duckdb", "engine_secret": null, "agents_require_capabilities": false})
    );
    assert_eq!(e["connection"]["database"], "preview-pr-42");
    // The port the gateway actually listens on (tests bind port 0).
    let gateway_port: u16 = s.gateway.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_eq!(e["connection"]["port"], gateway_port);
    assert_eq!(e["connection"]["host"], "127.0.0.1");
    assert!(e["version"].as_i64().unwrap() >= 1);

    let explicit = s
        .post(
            &envs_path(&org),
            Some(&owner),
            json!({"name": "EU", "slug": "Prod-EU", "type": "prod", "color": "#0000FF"}),
        )
        .await;
    explicit.expect(201);
    assert_eq!(explicit.body["slug"], "prod-eu");
    assert_eq!(explicit.body["type"], "prod");
    assert_eq!(explicit.body["color"], "#0000ff");
    assert!(explicit.header("etag").is_some());
    assert_eq!(
        explicit.header("location").unwrap(),
        format!(
            "/v1/environments/{}",
            explicit.body["env_id"].as_str().unwrap()
        )
    );
    // Inferred types.
    for (slug, ty) in [("stg", "staging"), ("dev-2", "custom")] {
        let r = create(&s, &owner, &org, json!({"name": slug})).await;
        assert_eq!(r["type"], ty);
    }

    // Case-insensitive uniqueness.
    let taken = s
        .post(
            &envs_path(&org),
            Some(&owner),
            json!({"name": "x", "slug": "STAGING"}),
        )
        .await;
    taken.expect_error(409, "CONFLICT");
    assert_eq!(taken.error().1, "slug_taken");

    let bad = |body: Value, field: &'static str, rule: &'static str| (body, field, rule);
    for (body, field, rule) in [
        bad(json!({}), "name", "required"),
        bad(json!({"name": "  "}), "name", "required"),
        bad(json!({"name": "x".repeat(65)}), "name", "max_length"),
        bad(
            json!({"name": "a\u{0007}b"}),
            "name",
            "no_control_characters",
        ),
        bad(json!({"name": "日本語"}), "slug", "derivable"),
        bad(json!({"name": "ok", "slug": "-x"}), "slug", "pattern"),
        bad(json!({"name": "ok", "slug": "a b"}), "slug", "pattern"),
        bad(json!({"name": "ok", "color": "red"}), "color", "pattern"),
        bad(json!({"name": "ok", "type": "qa"}), "type", ""),
        bad(
            json!({"name": "ok", "description": "d".repeat(1025)}),
            "description",
            "max_length",
        ),
        bad(
            json!({"name": "ok", "settings": {"query_timeout_ms": 99}}),
            "settings.query_timeout_ms",
            "range",
        ),
        bad(
            json!({"name": "ok", "settings": {"query_timeout_ms": 3_600_001}}),
            "settings.query_timeout_ms",
            "range",
        ),
        bad(
            json!({"name": "ok", "settings": {"max_concurrent_queries": 10_001}}),
            "settings.max_concurrent_queries",
            "range",
        ),
        bad(
            json!({"name": "ok", "settings": {"engine": "postgres"}}),
            "settings.engine_secret",
            "required",
        ),
        bad(
            json!({"name": "ok", "settings": {"engine": "postgres", "engine_secret": "no spaces"}}),
            "settings.engine_secret",
            "pattern",
        ),
        bad(
            json!({"name": "ok", "settings": {"turbo": true}}),
            "settings.turbo",
            "unknown_field",
        ),
        bad(
            json!({"name": "ok", "locked": true}),
            "locked",
            "unknown_field",
        ),
        bad(
            json!({"name": "ok", "create_api_key": {"name": "k"}}),
            "create_api_key.scopes",
            "required",
        ),
        bad(
            json!({"name": "ok", "create_api_key": {"name": "k", "scopes": ["nope"]}}),
            "create_api_key.scopes[0]",
            "unknown_scope",
        ),
        bad(
            json!({"name": "ok", "parent_env_id": "env_nope"}),
            "parent_env_id",
            "same_organization",
        ),
    ] {
        let r = s.post(&envs_path(&org), Some(&owner), body.clone()).await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(
            r.body["error"]["details"]["field"], field,
            "{body} → {}",
            r.body
        );
        if !rule.is_empty() {
            assert_eq!(r.error().1, rule, "{body} → {}", r.body);
        }
    }
    let list = list_all(&s, &owner, &org).await;
    assert_eq!(
        list["pagination"]["total"], 7,
        "refused creates changed nothing"
    );
    assert_dense(&list);
    s.stop().await;
}

async fn concurrent_creates_of_one_slug(db: Db) {
    let (s, owner, org) = setup(&db).await;
    let path = envs_path(&org);
    let results = futures::future::join_all((0..20).map(|i| {
        let (s, owner, path) = (&s, &owner, &path);
        async move {
            s.post(
                path,
                Some(owner),
                json!({"name": format!("Race {i}"), "slug": "race"}),
            )
            .await
        }
    }))
    .await;
    let created = results.iter().filter(|r| r.status == 201).count();
    let conflicts: Vec<_> = results.iter().filter(|r| r.status == 409).collect();
    assert_eq!((created, conflicts.len()), (1, 19));
    assert!(conflicts
        .iter()
        .all(|r| r.error() == ("CONFLICT", "slug_taken")));
    let list = list_all(&s, &owner, &org).await;
    assert_eq!(list["pagination"]["total"], 4);
    assert_dense(&list);

    // Different slugs at once: all succeed, each at its own index.
    let results = futures::future::join_all((0..10).map(|i| {
        let (s, owner, path) = (&s, &owner, &path);
        async move {
            s.post(path, Some(owner), json!({"name": format!("many {i}")}))
                .await
        }
    }))
    .await;
    assert!(results.iter().all(|r| r.status == 201));
    let list = list_all(&s, &owner, &org).await;
    assert_eq!(list["pagination"]["total"], 14);
    assert_dense(&list);
    s.stop().await;
}

async fn get_by_slug_and_aliases(db: Db) {
    let (s, owner, org) = setup(&db).await;
    let e = create(&s, &owner, &org, json!({"name": "Feature One"})).await;
    let id = e["env_id"].as_str().unwrap();
    let by_id = s.get(&format!("/v1/environments/{id}"), &owner).await;
    by_id.expect(200);
    assert_eq!(by_id.body, e);
    assert_eq!(
        by_id.header("etag").unwrap(),
        format!("\"{}\"", e["version"].as_i64().unwrap())
    );
    let by_slug = s
        .get(&format!("{}/FEATURE-one", envs_path(&org)), &owner)
        .await;
    by_slug.expect(200);
    assert_eq!(by_slug.body["env_id"], id);

    // Renamed twice: both old slugs keep resolving.
    s.patch(
        &format!("/v1/environments/{id}"),
        &owner,
        json!({"slug": "feature-two"}),
    )
    .await
    .expect(200);
    s.patch(
        &format!("/v1/environments/{id}"),
        &owner,
        json!({"slug": "feature-three"}),
    )
    .await
    .expect(200);
    for old in ["feature-one", "feature-two", "feature-three"] {
        let r = s.get(&format!("{}/{old}", envs_path(&org)), &owner).await;
        r.expect(200);
        assert_eq!(r.body["env_id"], id);
        assert_eq!(r.body["slug"], "feature-three");
    }
    // Until another environment takes one.
    let other = create(&s, &owner, &org, json!({"name": "Feature One"})).await;
    let r = s
        .get(&format!("{}/feature-one", envs_path(&org)), &owner)
        .await;
    assert_eq!(r.body["env_id"], other["env_id"]);
    // An old slug is free for others; the current one is not.
    s.post(
        &envs_path(&org),
        Some(&owner),
        json!({"name": "x", "slug": "feature-two"}),
    )
    .await
    .expect(201);
    s.post(
        &envs_path(&org),
        Some(&owner),
        json!({"name": "x", "slug": "feature-three"}),
    )
    .await
    .expect_error(409, "CONFLICT");

    for missing in ["nope", "env_01abc", &"x".repeat(300)] {
        s.get(&format!("{}/{missing}", envs_path(&org)), &owner)
            .await
            .expect_error(404, "NOT_FOUND");
    }
    s.get("/v1/environments/env_00000000000000000000000000", &owner)
        .await
        .expect_error(404, "NOT_FOUND");
    s.get("/v1/environments/not-an-id", &owner)
        .await
        .expect_error(404, "NOT_FOUND");
    s.stop().await;
}

async fn updates_index_and_parents(db: Db) {
    let (s, owner, org) = setup(&db).await;
    let list = list_all(&s, &owner, &org).await;
    let id = |i: usize| list["data"][i]["env_id"].as_str().unwrap().to_string();
    let (dev, stg, prod) = (id(0), id(1), id(2));
    let path = |e: &str| format!("/v1/environments/{e}");

    // PATCH: partial; PUT: the same body.
    let r = s
        .patch(
            &path(&stg),
            &owner,
            json!({"name": "Staging EU", "color": "#123456", "description": "eu",
                   "settings": {"cache_enabled": false}}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["name"], "Staging EU");
    assert_eq!(r.body["slug"], "staging");
    assert_eq!(r.body["settings"]["cache_enabled"], false);
    assert_eq!(r.body["settings"]["query_timeout_ms"], 30000);
    let v = r.body["version"].as_i64().unwrap();
    let r = s
        .put(
            &path(&stg),
            &owner,
            json!({"settings": {"query_timeout_ms": 1000}, "type": "custom"}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["settings"]["cache_enabled"], false, "settings merge");
    assert_eq!(r.body["type"], "custom");
    assert_eq!(r.body["version"].as_i64().unwrap(), v + 1);

    // If-Match.
    let stale = s
        .raw(
            s.request(Method::PATCH, &path(&stg), Some(&owner))
                .header("if-match", format!("\"{v}\""))
                .json(&json!({"name": "x"})),
        )
        .await;
    stale.expect_error(412, "PRECONDITION_FAILED");
    let fresh = s
        .raw(
            s.request(Method::PATCH, &path(&stg), Some(&owner))
                .header("if-match", format!("\"{}\"", v + 1))
                .json(&json!({"name": "Staging"})),
        )
        .await;
    fresh.expect(200);

    // Bad updates change nothing.
    for (body, field) in [
        (json!({"slug": "bad slug"}), "slug"),
        (json!({"name": ""}), "name"),
        (
            json!({"settings": {"max_concurrent_queries": 0}}),
            "settings.max_concurrent_queries",
        ),
        (json!({"index": 3}), "index"),
        (json!({"index": -1}), "index"),
        (json!({"status": "active"}), "status"),
        (json!({"parent_env_id": stg.clone()}), "parent_env_id"),
    ] {
        let r = s.patch(&path(&stg), &owner, body.clone()).await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["field"], field, "{body}");
    }
    s.patch(&path(&stg), &owner, json!({"slug": "Production"}))
        .await
        .expect_error(409, "CONFLICT");
    let after = s.get(&path(&stg), &owner).await;
    assert_eq!(after.body, fresh.body);

    // Index moves keep the order dense.
    let r = s.patch(&path(&prod), &owner, json!({"index": 0})).await;
    r.expect(200);
    let list = list_all(&s, &owner, &org).await;
    assert_eq!(slugs(&list), ["production", "development", "staging"]);
    assert_dense(&list);
    s.patch(&path(&prod), &owner, json!({"index": 2}))
        .await
        .expect(200);
    let list = list_all(&s, &owner, &org).await;
    assert_eq!(slugs(&list), ["development", "staging", "production"]);

    // Parents: a chain of 8 is the deepest; cycles are refused.
    s.patch(&path(&stg), &owner, json!({"parent_env_id": dev}))
        .await
        .expect(200);
    s.patch(&path(&prod), &owner, json!({"parent_env_id": stg}))
        .await
        .expect(200);
    let cycle = s
        .patch(&path(&dev), &owner, json!({"parent_env_id": prod}))
        .await;
    cycle.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(cycle.error().1, "no_cycles");
    let mut parent = prod.clone();
    for depth in 4..=8 {
        let e = create(
            &s,
            &owner,
            &org,
            json!({"name": format!("depth {depth}"), "parent_env_id": parent}),
        )
        .await;
        parent = e["env_id"].as_str().unwrap().to_string();
    }
    let too_deep = s
        .post(
            &envs_path(&org),
            Some(&owner),
            json!({"name": "depth 9", "parent_env_id": parent}),
        )
        .await;
    too_deep.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(too_deep.error().1, "max_depth");
    // Moving a subtree under another chain counts the subtree's height.
    let lone = create(&s, &owner, &org, json!({"name": "lone"})).await;
    let r = s
        .patch(
            &path(&dev),
            &owner,
            json!({"parent_env_id": lone["env_id"]}),
        )
        .await;
    r.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(r.error().1, "max_depth");
    // Clearing a parent.
    let r = s
        .patch(&path(&prod), &owner, json!({"parent_env_id": null}))
        .await;
    r.expect(200);
    assert_eq!(r.body["parent_env_id"], Value::Null);
    let children = s
        .get(&format!("{}?parent_env_id={dev}", envs_path(&org)), &owner)
        .await;
    assert_eq!(slugs(&children.body), ["staging"]);
    s.stop().await;
}

async fn reorder_is_atomic_and_versioned(db: Db) {
    let (s, owner, org) = setup(&db).await;
    let list = list_all(&s, &owner, &org).await;
    let version = list["order_version"].as_i64().unwrap();
    let ids: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["env_id"].as_str().unwrap().to_string())
        .collect();
    let reorder = format!("{}/reorder", envs_path(&org));

    // Two reorders from the same version race: one wins, the other gets 412.
    let a: Vec<_> = ids.iter().rev().cloned().collect();
    let b = vec![ids[1].clone(), ids[0].clone(), ids[2].clone()];
    let (ra, rb) = tokio::join!(
        s.post(
            &reorder,
            Some(&owner),
            json!({"order": a, "expected_version": version})
        ),
        s.post(
            &reorder,
            Some(&owner),
            json!({"order": b, "expected_version": version})
        ),
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [200, 412], "{} {}", ra.body, rb.body);
    let (winner, loser) = if ra.status == 200 {
        (&ra, &rb)
    } else {
        (&rb, &ra)
    };
    assert_eq!(loser.error().0, "PRECONDITION_FAILED");
    let list = list_all(&s, &owner, &org).await;
    let now: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["env_id"].as_str().unwrap())
        .collect();
    assert_eq!(json!(now), winner.body["order"]);
    assert_eq!(list["order_version"], winner.body["order_version"]);
    assert_dense(&list);

    // A create moves the order version on: a reorder made before it is stale.
    let v = list["order_version"].as_i64().unwrap();
    create(&s, &owner, &org, json!({"name": "late"})).await;
    s.post(
        &reorder,
        Some(&owner),
        json!({"order": now, "expected_version": v}),
    )
    .await
    .expect_error(412, "PRECONDITION_FAILED");

    // Not a complete order: 400, and the order is unchanged.
    let list = list_all(&s, &owner, &org).await;
    let v = list["order_version"].as_i64().unwrap();
    let all: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["env_id"].as_str().unwrap())
        .collect();
    for order in [
        json!(all[..3]),
        json!([all[0], all[0], all[1], all[2]]),
        json!([all[0], all[1], all[2], "env_01notmine"]),
    ] {
        let r = s
            .post(
                &reorder,
                Some(&owner),
                json!({"order": order, "expected_version": v}),
            )
            .await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(r.error().1, "permutation");
    }
    s.post(&reorder, Some(&owner), json!({"order": all}))
        .await
        .expect_error(400, "VALIDATION_ERROR");
    assert_eq!(list_all(&s, &owner, &org).await["order_version"], v);
    s.stop().await;
}

async fn locked_refuses_every_write_but_unlocking(db: Db) {
    let (s, owner, org) = setup(&db).await;
    let list = list_all(&s, &owner, &org).await;
    let dev = list["data"][0]["env_id"].as_str().unwrap().to_string();
    let prod = list["data"][2]["env_id"].as_str().unwrap().to_string();
    let path = format!("/v1/environments/{prod}");
    s.patch(
        &path,
        &owner,
        json!({"settings": {"query_timeout_ms": 1000}}),
    )
    .await
    .expect(200);
    let locked = s.patch(&path, &owner, json!({"locked": true})).await;
    locked.expect(200);
    assert_eq!(locked.body["locked"], true);

    let refused = [
        s.patch(&path, &owner, json!({"name": "x"})).await,
        s.patch(&path, &owner, json!({"locked": false, "name": "x"}))
            .await,
        s.put(&path, &owner, json!({"description": "x"})).await,
        s.patch(&path, &owner, json!({"index": 0})).await,
        s.delete(&path, &owner).await,
        s.post(&format!("{path}/suspend"), Some(&owner), json!({}))
            .await,
        s.post(
            &format!("/v1/environments/{dev}/promote"),
            Some(&owner),
            json!({"target_env_id": prod}),
        )
        .await,
        s.post(
            &format!("/v1/environments/{dev}/promote"),
            Some(&owner),
            json!({"target_env_id": prod, "dry_run": true}),
        )
        .await,
    ];
    for r in &refused {
        r.expect_error(409, "CONFLICT");
        assert_eq!(r.error().1, "environment_locked", "{}", r.body);
    }
    let still = s.get(&path, &owner).await;
    assert_eq!(still.body, locked.body, "nothing changed");
    // Reads, and using it as a source, still work.
    s.get(
        &format!("/v1/environments/{prod}/diff?against={dev}"),
        &owner,
    )
    .await
    .expect(200);
    s.post(
        &format!("{path}/clone"),
        Some(&owner),
        json!({"name": "prod copy"}),
    )
    .await
    .expect(201);
    // Dry-run delete says why a delete would fail.
    let preview = s.delete(&format!("{path}?dry_run=true"), &owner).await;
    preview.expect(200);
    assert_eq!(preview.body["blocked_by"], json!(["environment_locked"]));

    let unlocked = s.patch(&path, &owner, json!({"locked": false})).await;
    unlocked.expect(200);
    assert_eq!(unlocked.body["locked"], false);
    s.patch(&path, &owner, json!({"name": "Production!"}))
        .await
        .expect(200);
    s.stop().await;
}

async fn lifecycle_and_delete(db: Db) {
    let (s, owner, org) = setup(&db).await;
    let e = create(&s, &owner, &org, json!({"name": "temp"})).await;
    let id = e["env_id"].as_str().unwrap().to_string();
    let path = format!("/v1/environments/{id}");
    assert_eq!(e["status"], "active");

    let r = s
        .post(&format!("{path}/resume"), Some(&owner), json!({}))
        .await;
    r.expect_error(409, "CONFLICT");
    assert_eq!(r.error().1, "illegal_transition");
    let r = s
        .post(&format!("{path}/suspend"), Some(&owner), json!({}))
        .await;
    r.expect(200);
    assert_eq!(r.body["status"], "suspended");
    s.post(&format!("{path}/suspend"), Some(&owner), json!({}))
        .await
        .expect_error(409, "CONFLICT");
    // Suspended environments can still be configured.
    s.patch(&path, &owner, json!({"description": "paused"}))
        .await
        .expect(200);
    let r = s
        .post(&format!("{path}/resume"), Some(&owner), json!({}))
        .await;
    r.expect(200);
    assert_eq!(r.body["status"], "active");

    // A parent cannot go while it has children.
    let child = create(
        &s,
        &owner,
        &org,
        json!({"name": "child", "parent_env_id": id}),
    )
    .await;
    let preview = s.delete(&format!("{path}?dry_run=true"), &owner).await;
    preview.expect(200);
    assert_eq!(preview.body["dry_run"], true);
    assert_eq!(preview.body["blocked_by"], json!(["has_children"]));
    assert_eq!(
        preview.body["would_delete"],
        json!({"api_keys": 0, "secrets": 0, "policies": 0, "tables": 0})
    );
    s.delete(&path, &owner).await.expect_error(409, "CONFLICT");
    s.get(&path, &owner).await.expect(200);

    // Delete: gone, and the order closes up.
    let child_path = format!("/v1/environments/{}", child["env_id"].as_str().unwrap());
    let before = list_all(&s, &owner, &org).await["order_version"]
        .as_i64()
        .unwrap();
    s.delete(&child_path, &owner).await.expect(204);
    s.get(&child_path, &owner)
        .await
        .expect_error(404, "NOT_FOUND");
    s.delete(&child_path, &owner)
        .await
        .expect_error(404, "NOT_FOUND");
    // The middle one goes: indexes stay dense.
    let stg = list_all(&s, &owner, &org).await["data"][1]["env_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.delete(&format!("/v1/environments/{stg}"), &owner)
        .await
        .expect(204);
    let list = list_all(&s, &owner, &org).await;
    assert_eq!(slugs(&list), ["development", "production", "temp"]);
    assert_dense(&list);
    assert!(list["order_version"].as_i64().unwrap() > before);
    // Its slug is free again.
    create(&s, &owner, &org, json!({"name": "Staging"})).await;

    // Deleting the organization removes its environments (parents and children alike).
    create(
        &s,
        &owner,
        &org,
        json!({"name": "kid", "parent_env_id": id}),
    )
    .await;
    let other = s
        .post(
            "/v1/organizations",
            Some(&owner),
            json!({"name": "Gone", "slug": "gone", "billing_email": "b@example.com"}),
        )
        .await;
    let gone = other.body["org_id"].as_str().unwrap().to_string();
    let p = create(&s, &owner, &gone, json!({"name": "p"})).await;
    let c = create(
        &s,
        &owner,
        &gone,
        json!({"name": "c", "parent_env_id": p["env_id"]}),
    )
    .await;
    s.delete(&format!("/v1/organizations/{gone}"), &owner)
        .await
        .expect(204);
    s.get(
        &format!("/v1/environments/{}", c["env_id"].as_str().unwrap()),
        &owner,
    )
    .await
    .expect_error(404, "NOT_FOUND");
    s.stop().await;
}

async fn roles_and_other_organizations(db: Db) {
    let (s, owner, org) = setup(&db).await;
    let list = list_all(&s, &owner, &org).await;
    let dev = list["data"][0]["env_id"].as_str().unwrap().to_string();
    let stg = list["data"][1]["env_id"].as_str().unwrap().to_string();
    let path = format!("/v1/environments/{dev}");

    for (i, role) in ["developer", "analyst", "auditor", "service_account"]
        .iter()
        .enumerate()
    {
        let (_, token) = s
            .add_member(&owner, &org, &format!("m{i}@example.com"), role)
            .await;
        // Reads are open to every member.
        s.get(&envs_path(&org), &token).await.expect(200);
        s.get(&path, &token).await.expect(200);
        s.get(&format!("{path}/diff?against={stg}"), &token)
            .await
            .expect(200);
        s.get(&format!("{path}/promotions"), &token)
            .await
            .expect(200);
        // Writes are not.
        let writes = [
            s.post(&envs_path(&org), Some(&token), json!({"name": "nope"}))
                .await,
            s.patch(&path, &token, json!({"name": "nope"})).await,
            s.put(&path, &token, json!({"name": "nope"})).await,
            s.delete(&path, &token).await,
            s.delete(&format!("{path}?dry_run=true"), &token).await,
            s.post(&format!("{path}/suspend"), Some(&token), json!({}))
                .await,
            s.post(&format!("{path}/resume"), Some(&token), json!({}))
                .await,
            s.post(&format!("{path}/clone"), Some(&token), json!({"name": "c"}))
                .await,
            s.post(
                &format!("{path}/promote"),
                Some(&token),
                json!({"target_env_id": stg}),
            )
            .await,
            s.post(
                &format!("{}/reorder", envs_path(&org)),
                Some(&token),
                json!({"order": [], "expected_version": 0}),
            )
            .await,
        ];
        for w in &writes {
            w.expect_error(403, "FORBIDDEN");
            assert_eq!(w.error().1, "permission:manage_environments", "{role}");
        }
        // What a client is told it may do agrees with what it was refused.
        let may = s.get(&format!("{path}/permissions"), &token).await;
        may.expect(200);
        assert_eq!(may.body["role"], *role);
        assert!(may.body["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p != "manage_environments"));
        let me = s.get("/v1/auth/me", &token).await;
        assert!(me.body["org"]["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "read_environments"));
    }
    let may = s.get(&format!("{path}/permissions"), &owner).await;
    may.expect(200);
    assert_eq!(may.body["permissions"].as_array().unwrap().len(), 17);
    // An admin may.
    let (_, admin) = s
        .add_member(&owner, &org, "admin@example.com", "admin")
        .await;
    create(&s, &admin, &org, json!({"name": "by admin"})).await;

    // Another organization's environments are 404 for everything, existence never leaks.
    let stranger = s.signup("stranger@example.com", "outsider-pass-1234").await;
    let theirs = s
        .post(
            "/v1/organizations",
            Some(&stranger),
            json!({"name": "Theirs", "slug": "theirs", "billing_email": "t@example.com"}),
        )
        .await;
    let their_org = theirs.body["org_id"].as_str().unwrap().to_string();
    let stranger = s
        .login_as(
            "stranger@example.com",
            "outsider-pass-1234",
            Some(&their_org),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let their_env = list_all(&s, &stranger, &their_org).await["data"][0]["env_id"]
        .as_str()
        .unwrap()
        .to_string();
    let tp = format!("/v1/environments/{their_env}");
    let probes = [
        s.get(&tp, &owner).await,
        s.patch(&tp, &owner, json!({"name": "mine"})).await,
        s.delete(&tp, &owner).await,
        s.post(&format!("{tp}/suspend"), Some(&owner), json!({}))
            .await,
        s.post(&format!("{tp}/clone"), Some(&owner), json!({"name": "x"}))
            .await,
        s.get(&format!("{tp}/diff?against={dev}"), &owner).await,
        s.get(&format!("{path}/diff?against={their_env}"), &owner)
            .await,
        s.post(
            &format!("{path}/promote"),
            Some(&owner),
            json!({"target_env_id": their_env}),
        )
        .await,
        s.get(&envs_path(&their_org), &owner).await,
        s.get(&format!("{}/development", envs_path(&their_org)), &owner)
            .await,
        s.post(&envs_path(&their_org), Some(&owner), json!({"name": "x"}))
            .await,
        s.get(&format!("{tp}/permissions"), &owner).await,
    ];
    for p in &probes {
        p.expect_error(404, "NOT_FOUND");
    }
    // A parent from another organization is refused like an unknown one.
    let r = s
        .post(
            &envs_path(&org),
            Some(&owner),
            json!({"name": "x", "parent_env_id": their_env}),
        )
        .await;
    r.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(r.error().1, "same_organization");
    // Their environment is untouched.
    let mine = s.get(&tp, &stranger).await;
    mine.expect(200);
    assert_eq!(mine.body["name"], "Development");
    assert_eq!(mine.body["version"], 2);
    s.stop().await;
}

async fn quota_by_tier(db: Db) {
    // The default tier here is free: 3 environments, all taken by the defaults.
    let mut args = db.args();
    args.environment_quotas = Some("free=4".into());
    let s = Server::start(args).await;
    let owner = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let org_view = s.get(&format!("/v1/organizations/{org}"), &owner).await;
    assert_eq!(org_view.body["quotas"]["max_environments"], 4);
    create(&s, &owner, &org, json!({"name": "fourth"})).await;
    let over = s
        .post(&envs_path(&org), Some(&owner), json!({"name": "fifth"}))
        .await;
    over.expect_error(429, "QUOTA_EXCEEDED");
    assert_eq!(over.body["error"]["details"]["quota"], "max_environments");
    assert_eq!(over.body["error"]["details"]["limit"], 4);
    assert_eq!(
        over.body["error"]["details"]["setting"],
        "tier_quotas (--tier-quotas)"
    );
    let list = list_all(&s, &owner, &org).await;
    assert_eq!(list["pagination"]["total"], 4);
    let fourth = list["data"][3]["env_id"].as_str().unwrap().to_string();
    s.post(
        &format!("/v1/environments/{fourth}/clone"),
        Some(&owner),
        json!({"name": "c"}),
    )
    .await
    .expect_error(429, "QUOTA_EXCEEDED");
    // Concurrent creates cannot overshoot it.
    s.delete(&format!("/v1/environments/{fourth}"), &owner)
        .await
        .expect(204);
    let results = futures::future::join_all((0..6).map(|i| {
        let (s, owner, org) = (&s, &owner, &org);
        async move {
            s.post(
                &envs_path(org),
                Some(owner),
                json!({"name": format!("q{i}")}),
            )
            .await
        }
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.status == 201).count(), 1);
    assert_eq!(results.iter().filter(|r| r.status == 429).count(), 5);
    // A new organization asking for more defaults than its tier allows.
    let r = s
        .post(
            "/v1/organizations",
            Some(&owner),
            json!({"name": "Big", "slug": "big", "billing_email": "b@example.com",
                   "default_environments": ["a", "b", "c", "d", "e"]}),
        )
        .await;
    r.expect_error(429, "QUOTA_EXCEEDED");
    s.stop().await;

    // The default free quota is 3.
    let db2 = Db::sqlite();
    let s = db2.start().await;
    let owner = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    s.post(&envs_path(&org), Some(&owner), json!({"name": "fourth"}))
        .await
        .expect_error(429, "QUOTA_EXCEEDED");
    s.stop().await;
}

async fn list_filters_and_pages(db: Db) {
    let (s, owner, org) = setup(&db).await;
    for i in 0..7 {
        create(
            &s,
            &owner,
            &org,
            json!({"name": format!("Preview {i}"), "slug": format!("pr_{i}")}),
        )
        .await;
    }
    let list = list_all(&s, &owner, &org).await;
    let pr3 = list["data"][6]["env_id"].as_str().unwrap().to_string();
    s.post(
        &format!("/v1/environments/{pr3}/suspend"),
        Some(&owner),
        json!({}),
    )
    .await
    .expect(200);

    // Pages walk the display order without gaps or repeats.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("{}?limit=3", envs_path(&org));
        if let Some(c) = &cursor {
            path += &format!("&cursor={c}");
        }
        let r = s.get(&path, &owner).await;
        r.expect(200);
        assert_eq!(r.body["pagination"]["total"], 10);
        seen.extend(slugs(&r.body));
        match r.body["pagination"]["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => {
                assert_eq!(r.body["pagination"]["has_more"], false);
                break;
            }
        }
    }
    assert_eq!(seen, slugs(&list));

    let q = |query: &str| {
        let s = &s;
        let path = format!("{}?{query}", envs_path(&org));
        let owner = owner.clone();
        async move {
            let r = s.get(&path, &owner).await;
            r.expect(200);
            r.body
        }
    };
    let r = q("status=suspended").await;
    assert_eq!(slugs(&r), ["pr_3"]);
    assert_eq!(r["pagination"]["total"], 1);
    assert_eq!(slugs(&q("type=prod").await), ["production"]);
    assert_eq!(
        slugs(&q("type=custom&status=active&limit=2").await),
        ["pr_0", "pr_1"]
    );
    assert_eq!(
        q("type=custom&status=active&limit=2").await["pagination"]["total"],
        6
    );
    assert_eq!(slugs(&q("q=PREVIEW%205").await), ["pr_5"]);
    // `_` and `%` are literal in q.
    assert_eq!(q("q=_").await["pagination"]["total"], 7);
    assert_eq!(slugs(&q("q=%25").await), Vec::<String>::new());
    assert_eq!(slugs(&q("q=ION").await), ["production"]);

    for (query, field) in [
        ("status=sleeping", "status"),
        ("type=qa", "type"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=%21%21", "cursor"),
        ("cursor=bm90LWEta2V5", "cursor"),
        ("sort=name", "sort"),
    ] {
        let r = s.get(&format!("{}?{query}", envs_path(&org)), &owner).await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["field"], field, "{query}");
    }
    s.stop().await;
}

async fn clone_diff_and_promote(db: Db) {
    let (s, owner, org) = setup(&db).await;
    let list = list_all(&s, &owner, &org).await;
    let stg = list["data"][1]["env_id"].as_str().unwrap().to_string();
    let prod = list["data"][2]["env_id"].as_str().unwrap().to_string();
    s.patch(
        &format!("/v1/environments/{stg}"),
        &owner,
        json!({"settings": {"query_timeout_ms": 5000, "cache_enabled": false}, "description": "stage"}),
    )
    .await
    .expect(200);

    // Diff shows every setting, values included (settings are not secret).
    let d = s
        .get(
            &format!("/v1/environments/{stg}/diff?against={prod}"),
            &owner,
        )
        .await;
    d.expect(200);
    assert_eq!(d.body["identical"], false);
    let statuses: Vec<(&str, &str)> = d.body["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["name"].as_str().unwrap(), x["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("query_timeout_ms", "different"),
            ("max_concurrent_queries", "equal"),
            ("cache_enabled", "different"),
            ("engine", "equal"),
            ("engine_secret", "equal"),
            ("agents_require_capabilities", "equal")
        ]
    );
    assert_eq!(d.body["settings"][0]["value"], 5000);
    assert_eq!(d.body["settings"][0]["against_value"], 30000);
    s.get(&format!("/v1/environments/{stg}/diff"), &owner)
        .await
        .expect_error(400, "VALIDATION_ERROR");

    // Clone: settings and description copied, fresh identity, appended.
    let c = s
        .post(
            &format!("/v1/environments/{stg}/clone"),
            Some(&owner),
            json!({"name": "Staging Copy"}),
        )
        .await;
    c.expect(201);
    assert_eq!(c.body["slug"], "staging-copy");
    assert_eq!(c.body["settings"]["query_timeout_ms"], 5000);
    assert_eq!(c.body["description"], "stage");
    assert_eq!(c.body["index"], 3);
    let bare = s
        .post(
            &format!("/v1/environments/{stg}/clone"),
            Some(&owner),
            json!({"name": "Bare", "include": ["policies"]}),
        )
        .await;
    bare.expect(201);
    assert_eq!(bare.body["settings"]["query_timeout_ms"], 30000);
    for body in [
        json!({"name": "x", "include": ["keys"]}),
        json!({"name": "x", "include": []}),
        json!({"name": "Staging Copy"}),
    ] {
        let r = s
            .post(&format!("/v1/environments/{stg}/clone"), Some(&owner), body)
            .await;
        assert!(r.status == 400 || r.status == 409, "{}", r.body);
    }

    // Promote: the dry run is what the real run does, and changes nothing.
    let promote = format!("/v1/environments/{stg}/promote");
    let before = s.get(&format!("/v1/environments/{prod}"), &owner).await;
    let dry = s
        .post(
            &promote,
            Some(&owner),
            json!({"target_env_id": prod, "dry_run": true}),
        )
        .await;
    dry.expect(200);
    assert_eq!(dry.body["status"], "dry_run");
    assert_eq!(dry.body["changes"]["settings_changed"], 2);
    assert_eq!(dry.body["changes"]["policies_promoted"], 0);
    assert_eq!(
        dry.body["details"],
        json!([{"kind": "setting", "name": "query_timeout_ms", "action": "updated"},
               {"kind": "setting", "name": "cache_enabled", "action": "updated"}])
    );
    assert_eq!(
        s.get(&format!("/v1/environments/{prod}"), &owner)
            .await
            .body,
        before.body
    );
    assert_eq!(
        s.get(&format!("/v1/environments/{prod}/promotions"), &owner)
            .await
            .body["pagination"]["total"],
        0
    );
    let real = s
        .post(&promote, Some(&owner), json!({"target_env_id": prod}))
        .await;
    real.expect(200);
    assert_eq!(real.body["status"], "completed");
    assert_eq!(real.body["changes"], dry.body["changes"]);
    assert_eq!(real.body["details"], dry.body["details"]);
    assert_eq!(real.body["source_env"], stg.as_str());
    assert_eq!(real.body["target_env"], prod.as_str());
    assert!(real.body["promotion_id"]
        .as_str()
        .unwrap()
        .starts_with("prm_"));
    let after = s.get(&format!("/v1/environments/{prod}"), &owner).await;
    assert_eq!(after.body["settings"]["query_timeout_ms"], 5000);
    assert_eq!(after.body["description"], "", "only settings move");
    let again = s
        .post(&promote, Some(&owner), json!({"target_env_id": prod}))
        .await;
    again.expect(200);
    assert_eq!(again.body["changes"]["settings_changed"], 0);
    assert_eq!(again.body["details"], json!([]));
    // `include` without settings moves no setting.
    s.patch(
        &format!("/v1/environments/{stg}"),
        &owner,
        json!({"settings": {"query_timeout_ms": 7000}}),
    )
    .await
    .expect(200);
    let none = s
        .post(
            &promote,
            Some(&owner),
            json!({"target_env_id": prod, "include": ["secrets"]}),
        )
        .await;
    none.expect(200);
    assert_eq!(none.body["changes"]["settings_changed"], 0);
    assert_eq!(
        s.get(&format!("/v1/environments/{prod}"), &owner)
            .await
            .body["settings"]["query_timeout_ms"],
        5000
    );
    let history = s
        .get(
            &format!("/v1/environments/{prod}/promotions?limit=2"),
            &owner,
        )
        .await;
    history.expect(200);
    assert_eq!(history.body["pagination"]["total"], 3);
    assert_eq!(
        history.body["data"][0]["promotion_id"],
        none.body["promotion_id"]
    );
    let next = history.body["pagination"]["cursor"].as_str().unwrap();
    let rest = s
        .get(
            &format!("/v1/environments/{prod}/promotions?limit=2&cursor={next}"),
            &owner,
        )
        .await;
    assert_eq!(
        rest.body["data"][0]["promotion_id"],
        real.body["promotion_id"]
    );
    // The source lists it too.
    assert_eq!(
        s.get(&format!("/v1/environments/{stg}/promotions"), &owner)
            .await
            .body["pagination"]["total"],
        3
    );

    for (body, status) in [
        (json!({"target_env_id": stg}), 400),
        (
            json!({"target_env_id": prod, "include": ["everything"]}),
            400,
        ),
        (json!({"target_env_id": prod, "include": []}), 400),
        (json!({"target_env_id": prod, "force": true}), 400),
        (json!({}), 400),
        (json!({"target_env_id": "env_01unknown"}), 404),
    ] {
        let r = s.post(&promote, Some(&owner), body.clone()).await;
        assert_eq!(r.status, status, "{body} → {}", r.body);
    }
    let ids: BTreeSet<String> = list_all(&s, &owner, &org).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["env_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 5);
    s.stop().await;
}
