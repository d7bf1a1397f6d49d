use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::both;
use crate::common::{Db, Resp, Server, OWNER_EMAIL, OWNER_PASSWORD};

both!(
    create_show_once_and_authenticate,
    scopes_roles_and_environment_boundaries,
    bad_inputs_are_refused,
    refused_keys_say_why,
    rotation_and_revocation,
    quota_per_environment,
    first_key_with_a_new_environment,
    secrets_never_stored_or_logged,
);

struct Env {
    s: Server,
    owner: String,
    org: String,
    dev: String,
    prod: String,
}

async fn setup(db: &Db) -> Env {
    let s = db.start().await;
    let owner = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let list = s
        .get(&format!("/v1/organizations/{org}/environments"), &owner)
        .await;
    let id = |i: usize| list.body["data"][i]["env_id"].as_str().unwrap().to_string();
    Env {
        dev: id(0),
        prod: id(2),
        s,
        owner,
        org,
    }
}

fn keys_path(env: &str) -> String {
    format!("/v1/environments/{env}/api-keys")
}

/// Creates a key as `token` (a JWT) and returns the whole answer.
async fn new_key(s: &Server, token: &str, env: &str, body: Value) -> Value {
    let r = s.post(&keys_path(env), Some(token), body).await;
    r.expect(201);
    r.body
}

fn key_of(v: &Value) -> String {
    v["key"].as_str().unwrap().to_string()
}

async fn as_key(s: &Server, key: &str, path: &str) -> Resp {
    s.keyed(Method::GET, path, key, None).await
}

async fn create_show_once_and_authenticate(db: Db) {
    let Env {
        s,
        owner,
        dev,
        prod,
        org,
    } = setup(&db).await;
    let r = s
        .post(
            &keys_path(&prod),
            Some(&owner),
            json!({"name": "ci", "scopes": ["read_only"]}),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let k = r.body;
    let key = key_of(&k);
    assert!(key.starts_with("ek_live_"), "{key}");
    assert_eq!(k["prefix"].as_str().unwrap(), &key[..12]);
    assert_eq!(k["status"], "active");
    assert_eq!(k["role"], "service_account");
    assert_eq!(
        k["scopes"],
        json!([
            "query:read",
            "tables:list",
            "tables:describe",
            "schemas:read",
            "policies:read",
            "environments:read"
        ])
    );
    let test_key =
        key_of(&new_key(&s, &owner, &dev, json!({"name": "t", "scopes": ["agent"]})).await);
    assert!(test_key.starts_with("ek_test_"));

    // Three ways to present it.
    let path = format!("/v1/environments/{prod}");
    as_key(&s, &key, &path).await.expect(200);
    let apikey = s
        .raw(
            s.client
                .get(format!("{}{path}", s.url))
                .header("authorization", format!("ApiKey {key}")),
        )
        .await;
    apikey.expect(200);
    s.get(&path, &key).await.expect(200); // Authorization: Bearer <key>
    let me = as_key(&s, &key, "/v1/auth/me").await;
    me.expect(200);
    assert_eq!(me.body["type"], "api_key");
    assert_eq!(me.body["key"]["key_id"], k["key_id"]);
    assert_eq!(me.body["key"]["env_id"], prod.as_str());
    assert_eq!(me.body["org"]["org_id"], org.as_str());
    assert!(me.body.get("user").is_none());
    // Both credentials at once is ambiguous.
    s.raw(
        s.request(Method::GET, &path, Some(&owner))
            .header("x-api-key", &key),
    )
    .await
    .expect_error(401, "UNAUTHORIZED");

    // Shown once: never again in get or list.
    let kid = k["key_id"].as_str().unwrap();
    let got = s.get(&format!("{}/{kid}", keys_path(&prod)), &owner).await;
    got.expect(200);
    assert!(got.body.get("key").is_none());
    let list = s.get(&keys_path(&prod), &owner).await;
    assert_eq!(list.body["pagination"]["total"], 1);
    assert!(list.body["data"][0].get("key").is_none());
    assert!(!list.body.to_string().contains(&key[35..]));

    // last_used_at is written shortly after the first use.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let g = s.get(&format!("{}/{kid}", keys_path(&prod)), &owner).await;
        if g.body["last_used_at"].is_string() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "last_used_at never written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

async fn scopes_roles_and_environment_boundaries(db: Db) {
    let Env {
        s,
        owner,
        org,
        dev,
        prod,
    } = setup(&db).await;
    let reader = key_of(
        &new_key(
            &s,
            &owner,
            &prod,
            json!({"name": "r", "scopes": ["read_only"]}),
        )
        .await,
    );
    let env_path = format!("/v1/environments/{prod}");

    // Its own environment: reads yes, writes no.
    as_key(&s, &reader, &env_path).await.expect(200);
    let w = s
        .keyed(
            Method::PATCH,
            &env_path,
            &reader,
            Some(json!({"name": "x"})),
        )
        .await;
    w.expect_error(403, "FORBIDDEN");
    as_key(&s, &reader, &keys_path(&prod))
        .await
        .expect_error(403, "FORBIDDEN");
    // Another environment of its organization: 403; anything organization-wide: 403.
    let other = as_key(&s, &reader, &format!("/v1/environments/{dev}")).await;
    other.expect_error(403, "FORBIDDEN");
    assert_eq!(other.error().1, "key_environment");
    for path in [
        format!("/v1/organizations/{org}/environments"),
        format!("/v1/organizations/{org}"),
        format!("/v1/organizations/{org}/users"),
        "/v1/organizations".to_string(),
        format!("/v1/environments/{prod}/diff?against={dev}"),
    ] {
        let r = as_key(&s, &reader, &path).await;
        r.expect_error(403, "FORBIDDEN");
        assert_eq!(r.error().1, "user_required", "{path}");
    }
    // Another organization's environment: 404.
    let stranger = s.signup("stranger@example.com", "outsider-pass-1234").await;
    let theirs = s
        .post(
            "/v1/organizations",
            Some(&stranger),
            json!({"name": "T", "slug": "theirs", "billing_email": "t@example.com"}),
        )
        .await;
    let their_org = theirs.body["org_id"].as_str().unwrap();
    let st = s
        .login_as(
            "stranger@example.com",
            "outsider-pass-1234",
            Some(their_org),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let their_env = s
        .get(&format!("/v1/organizations/{their_org}/environments"), &st)
        .await
        .body["data"][0]["env_id"]
        .as_str()
        .unwrap()
        .to_string();
    as_key(&s, &reader, &format!("/v1/environments/{their_env}"))
        .await
        .expect_error(404, "NOT_FOUND");

    // An admin-role key with the admin bundle manages its environment and its keys…
    let admin_key = key_of(
        &new_key(
            &s,
            &owner,
            &prod,
            json!({"name": "ops", "scopes": ["admin"], "role": "admin"}),
        )
        .await,
    );
    s.keyed(
        Method::PATCH,
        &env_path,
        &admin_key,
        Some(json!({"description": "by key"})),
    )
    .await
    .expect(200);
    let made = s
        .keyed(
            Method::POST,
            &keys_path(&prod),
            &admin_key,
            Some(json!({"name": "child", "scopes": ["query:read"]})),
        )
        .await;
    made.expect(201);
    assert_eq!(
        made.body["created_by"],
        s.keyed(Method::GET, "/v1/auth/me", &admin_key, None)
            .await
            .body["key"]["key_id"]
    );
    // …but never above itself.
    let r = s
        .keyed(
            Method::POST,
            &keys_path(&prod),
            &admin_key,
            Some(json!({"name": "boss", "scopes": ["query:read"], "role": "owner"})),
        )
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(r.error().1, "role_above_caller");
    // A narrow key-manager cannot hand out what it lacks.
    let narrow = key_of(
        &new_key(
            &s,
            &owner,
            &prod,
            json!({"name": "n", "role": "admin", "scopes": ["keys:manage", "environments:read"]}),
        )
        .await,
    );
    let r = s
        .keyed(
            Method::POST,
            &keys_path(&prod),
            &narrow,
            Some(json!({"name": "wide", "scopes": ["query:write"]})),
        )
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(r.error().1, "scope_not_held");

    // Users: developers may not manage keys; an admin may not mint an owner key.
    let (_, dev_token) = s
        .add_member(&owner, &org, "dev@example.com", "developer")
        .await;
    s.post(
        &keys_path(&prod),
        Some(&dev_token),
        json!({"name": "x", "scopes": ["read_only"]}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    let (_, admin) = s
        .add_member(&owner, &org, "admin@example.com", "admin")
        .await;
    let r = s
        .post(
            &keys_path(&prod),
            Some(&admin),
            json!({"name": "x", "scopes": ["read_only"], "role": "owner"}),
        )
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(r.error().1, "role_above_caller");

    // Narrowing a key's scopes takes effect on its next request.
    let kid = s
        .keyed(Method::GET, "/v1/auth/me", &reader, None)
        .await
        .body["key"]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    as_key(&s, &reader, &env_path).await.expect(200);
    let p = s
        .patch(
            &format!("{}/{kid}", keys_path(&prod)),
            &owner,
            json!({"scopes": ["query:read"]}),
        )
        .await;
    p.expect(200);
    assert_eq!(p.body["scopes"], json!(["query:read"]));
    let r = as_key(&s, &reader, &env_path).await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(r.error().1, "scope:environments:read");
    // Widening beyond the caller is refused (a narrow key-manager patching).
    let r = s
        .keyed(
            Method::PATCH,
            &format!("{}/{kid}", keys_path(&prod)),
            &narrow,
            Some(json!({"scopes": ["admin"]})),
        )
        .await;
    r.expect_error(403, "FORBIDDEN");
    s.stop().await;
}

async fn bad_inputs_are_refused(db: Db) {
    let Env {
        s,
        owner,
        dev,
        prod,
        ..
    } = setup(&db).await;
    for (body, field, rule) in [
        (
            json!({"name": "k", "scopes": ["read_only"], "ip_allowlist": ["10.0.0.0/33"]}),
            "ip_allowlist[0]",
            "cidr",
        ),
        (
            json!({"name": "k", "scopes": ["read_only"], "ip_allowlist": ["example.com"]}),
            "ip_allowlist[0]",
            "cidr",
        ),
        (
            json!({"name": "k", "scopes": ["read_only"], "expires_in_days": -1}),
            "expires_in_days",
            "range",
        ),
        (
            json!({"name": "k", "scopes": ["read_only"], "expires_in_days": 0}),
            "expires_in_days",
            "range",
        ),
        (
            json!({"name": "k", "scopes": ["query:delete"]}),
            "scopes[0]",
            "unknown_scope",
        ),
        (json!({"name": "k", "scopes": []}), "scopes", "non_empty"),
        (
            json!({"name": "", "scopes": ["read_only"]}),
            "name",
            "required",
        ),
        (json!({"name": "k"}), "scopes", "required"),
        (
            json!({"name": "k", "scopes": ["read_only"], "role": "god"}),
            "role",
            "",
        ),
        (
            json!({"name": "k", "scopes": ["read_only"], "secret": "mine"}),
            "secret",
            "unknown_field",
        ),
    ] {
        let r = s.post(&keys_path(&prod), Some(&owner), body.clone()).await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(
            r.body["error"]["details"]["field"], field,
            "{body}: {}",
            r.body
        );
        if !rule.is_empty() {
            assert_eq!(r.error().1, rule, "{body}");
        }
    }
    assert_eq!(
        s.get(&keys_path(&prod), &owner).await.body["pagination"]["total"],
        0
    );

    let k = new_key(
        &s,
        &owner,
        &prod,
        json!({"name": "k", "scopes": ["read_only"]}),
    )
    .await;
    let kid = k["key_id"].as_str().unwrap();
    for grace in [-1, 721] {
        let r = s
            .post(
                &format!("{}/{kid}/rotate", keys_path(&prod)),
                Some(&owner),
                json!({"grace_period_hours": grace}),
            )
            .await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["field"], "grace_period_hours");
    }
    // A key addressed through another environment does not exist there.
    s.get(&format!("{}/{kid}", keys_path(&dev)), &owner)
        .await
        .expect_error(404, "NOT_FOUND");
    s.delete(&format!("{}/{kid}", keys_path(&dev)), &owner)
        .await
        .expect_error(404, "NOT_FOUND");
    s.get(&format!("{}/not-a-key", keys_path(&prod)), &owner)
        .await
        .expect_error(404, "NOT_FOUND");
    // A locked environment takes no new keys (but still lets one be revoked).
    s.patch(
        &format!("/v1/environments/{prod}"),
        &owner,
        json!({"locked": true}),
    )
    .await
    .expect(200);
    let r = s
        .post(
            &keys_path(&prod),
            Some(&owner),
            json!({"name": "k2", "scopes": ["read_only"]}),
        )
        .await;
    r.expect_error(409, "CONFLICT");
    assert_eq!(r.error().1, "environment_locked");
    s.delete(&format!("{}/{kid}", keys_path(&prod)), &owner)
        .await
        .expect(204);
    s.stop().await;
}

async fn refused_keys_say_why(db: Db) {
    let Env { s, owner, prod, .. } = setup(&db).await;
    let path = format!("/v1/environments/{prod}");
    let message = |r: &Resp| {
        r.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    // Junk, a well-formed unknown key, and a right id with a wrong secret look alike.
    let real = key_of(
        &new_key(
            &s,
            &owner,
            &prod,
            json!({"name": "k", "scopes": ["read_only"]}),
        )
        .await,
    );
    let wrong_secret = format!("{}{}", &real[..35], "0".repeat(64));
    let unknown = format!("ek_live_01m7y1mvvm720aw1bq259a443y_{}", "a".repeat(64));
    for junk in ["junk", "ek_live_", unknown.as_str(), wrong_secret.as_str()] {
        let r = as_key(&s, junk, &path).await;
        r.expect_error(401, "UNAUTHORIZED");
        assert_eq!(message(&r), "invalid API key", "{junk}");
    }
    as_key(&s, &real, &path).await.expect(200);

    // Not from an allowed address.
    let fenced = key_of(
        &new_key(
            &s,
            &owner,
            &prod,
            json!({"name": "f", "scopes": ["read_only"], "ip_allowlist": ["10.0.0.0/8"]}),
        )
        .await,
    );
    let r = as_key(&s, &fenced, &path).await;
    r.expect_error(401, "UNAUTHORIZED");
    assert!(message(&r).contains("IP address"), "{}", message(&r));
    let local = key_of(
        &new_key(
            &s,
            &owner,
            &prod,
            json!({"name": "l", "scopes": ["read_only"], "ip_allowlist": ["127.0.0.0/8", "::1"]}),
        )
        .await,
    );
    as_key(&s, &local, &path).await.expect(200);

    // Suspended environment: refused; resumed: accepted again — each on the next request.
    s.post(&format!("{path}/suspend"), Some(&owner), json!({}))
        .await
        .expect(200);
    let r = as_key(&s, &real, &path).await;
    r.expect_error(401, "UNAUTHORIZED");
    assert!(message(&r).contains("suspended"));
    s.post(&format!("{path}/resume"), Some(&owner), json!({}))
        .await
        .expect(200);
    as_key(&s, &real, &path).await.expect(200);

    // Expired: a key whose expiry has passed (written before its first use).
    let short = new_key(
        &s,
        &owner,
        &prod,
        json!({"name": "s", "scopes": ["read_only"], "expires_in_days": 1}),
    )
    .await;
    let short_id = short["key_id"].as_str().unwrap();
    sql(
        &db,
        "UPDATE api_keys SET expires_at = 1 WHERE id = $1",
        Some(short_id),
    )
    .await;
    let r = as_key(&s, &key_of(&short), &path).await;
    r.expect_error(401, "UNAUTHORIZED");
    assert!(message(&r).contains("expired"), "{}", message(&r));
    let listed = s
        .get(
            &format!("{}/{}", keys_path(&prod), short["key_id"].as_str().unwrap()),
            &owner,
        )
        .await;
    assert_eq!(listed.body["status"], "expired");
    s.stop().await;
}

/// Runs one statement with one bound id on the test database directly — to write what only
/// time would otherwise do — or, with `fetch`, returns the text of every row it selects.
async fn sql(db: &Db, statement: &str, id: Option<&str>) -> Vec<String> {
    use sqlx::Connection;
    if db.is_postgres() {
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        match id {
            Some(id) => {
                sqlx::query(statement)
                    .bind(id)
                    .execute(&mut c)
                    .await
                    .unwrap();
                vec![]
            }
            None => sqlx::query_scalar(statement)
                .fetch_all(&mut c)
                .await
                .unwrap(),
        }
    } else {
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        match id {
            Some(id) => {
                sqlx::query(statement)
                    .bind(id)
                    .execute(&mut c)
                    .await
                    .unwrap();
                vec![]
            }
            None => sqlx::query_scalar(statement)
                .fetch_all(&mut c)
                .await
                .unwrap(),
        }
    }
}

async fn rotation_and_revocation(db: Db) {
    let Env { s, owner, prod, .. } = setup(&db).await;
    let path = format!("/v1/environments/{prod}");
    let old = new_key(
        &s,
        &owner,
        &prod,
        json!({"name": "svc", "scopes": ["read_only"], "ip_allowlist": ["127.0.0.1"], "expires_in_days": 30}),
    )
    .await;
    let old_key = key_of(&old);
    let old_id = old["key_id"].as_str().unwrap();
    as_key(&s, &old_key, &path).await.expect(200);

    // Rotate (no body: default grace 24 h): both work; the new one has the same settings.
    let r = s
        .raw(s.request(
            Method::POST,
            &format!("{}/{old_id}/rotate", keys_path(&prod)),
            Some(&owner),
        ))
        .await;
    r.expect(201);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let new = r.body;
    assert_ne!(new["key_id"], old["key_id"]);
    for f in ["name", "scopes", "ip_allowlist", "role"] {
        assert_eq!(new[f], old[f], "{f}");
    }
    assert!(new["expires_at"].is_string());
    let new_key_text = key_of(&new);
    as_key(&s, &new_key_text, &path).await.expect(200);
    as_key(&s, &old_key, &path).await.expect(200);
    let o = s
        .get(&format!("{}/{old_id}", keys_path(&prod)), &owner)
        .await;
    assert_eq!(o.body["status"], "rotating");
    assert_eq!(o.body["rotated_to"], new["key_id"]);
    let grace =
        chrono::DateTime::parse_from_rfc3339(o.body["grace_expires_at"].as_str().unwrap()).unwrap();
    let hours = (grace.timestamp() - chrono::Utc::now().timestamp()) as f64 / 3600.0;
    assert!((23.9..=24.1).contains(&hours), "{hours}");
    // A rotating key cannot be rotated again.
    s.post(
        &format!("{}/{old_id}/rotate", keys_path(&prod)),
        Some(&owner),
        json!({}),
    )
    .await
    .expect_error(409, "CONFLICT");

    // Grace 0: the old key stops at once.
    let new_id = new["key_id"].as_str().unwrap();
    let third = s
        .post(
            &format!("{}/{new_id}/rotate", keys_path(&prod)),
            Some(&owner),
            json!({"grace_period_hours": 0}),
        )
        .await;
    third.expect(201);
    let r = as_key(&s, &new_key_text, &path).await;
    r.expect_error(401, "UNAUTHORIZED");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    let third_key = key_of(&third.body);
    as_key(&s, &third_key, &path).await.expect(200);

    // Revoke: refused from the next request; revoking twice is 409.
    let third_id = third.body["key_id"].as_str().unwrap();
    s.delete(&format!("{}/{third_id}", keys_path(&prod)), &owner)
        .await
        .expect(204);
    let r = as_key(&s, &third_key, &path).await;
    r.expect_error(401, "UNAUTHORIZED");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    s.delete(&format!("{}/{third_id}", keys_path(&prod)), &owner)
        .await
        .expect_error(409, "CONFLICT");
    let listed = s.get(&keys_path(&prod), &owner).await;
    let statuses: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["revoked", "expired", "rotating"]);
    s.stop().await;
}

async fn quota_per_environment(db: Db) {
    let Env {
        s,
        owner,
        prod,
        dev,
        ..
    } = setup(&db).await;
    let mut last = Value::Null;
    for i in 0..50 {
        last = new_key(
            &s,
            &owner,
            &prod,
            json!({"name": format!("k{i}"), "scopes": ["agent"]}),
        )
        .await;
    }
    let over = s
        .post(
            &keys_path(&prod),
            Some(&owner),
            json!({"name": "k50", "scopes": ["agent"]}),
        )
        .await;
    over.expect_error(429, "QUOTA_EXCEEDED");
    assert_eq!(
        over.body["error"]["details"]["quota"],
        "max_api_keys_per_environment"
    );
    // Per environment: another one still has room; a revoked key frees a place.
    new_key(&s, &owner, &dev, json!({"name": "d", "scopes": ["agent"]})).await;
    s.delete(
        &format!("{}/{}", keys_path(&prod), last["key_id"].as_str().unwrap()),
        &owner,
    )
    .await
    .expect(204);
    new_key(
        &s,
        &owner,
        &prod,
        json!({"name": "again", "scopes": ["agent"]}),
    )
    .await;
    let page = s
        .get(&format!("{}?limit=20", keys_path(&prod)), &owner)
        .await;
    assert_eq!(page.body["pagination"]["total"], 51);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 20);
    assert_eq!(page.body["pagination"]["has_more"], true);
    s.stop().await;
}

async fn first_key_with_a_new_environment(db: Db) {
    let mut args = db.args();
    args.default_tier = Some("enterprise".into());
    let s = Server::start(args).await;
    let owner = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let r = s
        .post(
            &format!("/v1/organizations/{org}/environments"),
            Some(&owner),
            json!({"name": "Preview 9", "create_api_key": {"name": "preview ci", "scopes": ["developer"]}}),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.body["slug"], "preview-9");
    let key = r.body["api_key"]["key"].as_str().unwrap();
    assert!(key.starts_with("ek_test_"));
    assert_eq!(r.body["api_key"]["env_id"], r.body["env_id"]);
    let me = s.keyed(Method::GET, "/v1/auth/me", key, None).await;
    assert_eq!(me.body["key"]["env_id"], r.body["env_id"]);
    // A bad key request creates no environment (an admin may not mint an owner key).
    let (_, admin) = s
        .add_member(&owner, &org, "admin@example.com", "admin")
        .await;
    let bad = s
        .post(
            &format!("/v1/organizations/{org}/environments"),
            Some(&admin),
            json!({"name": "Preview 10", "create_api_key": {"name": "x", "scopes": ["read_only"], "role": "owner"}}),
        )
        .await;
    bad.expect_error(403, "FORBIDDEN");
    let owner_key = s
        .post(
            &format!("/v1/organizations/{org}/environments"),
            Some(&owner),
            json!({"name": "Preview 10", "create_api_key": {"name": "x", "scopes": ["bogus"]}}),
        )
        .await;
    owner_key.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(
        owner_key.body["error"]["details"]["field"],
        "create_api_key.scopes[0]"
    );
    s.get(
        &format!("/v1/organizations/{org}/environments/preview-10"),
        &owner,
    )
    .await
    .expect_error(404, "NOT_FOUND");
    s.stop().await;
}

/// The real binary with debug logging: after keys are created, used every way, rotated and
/// listed, no key secret is in the database, the logs, or any later response.
async fn secrets_never_stored_or_logged(db: Db) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_enclave"))
        .arg("serve")
        .env_clear()
        .env("ENCLAVE_DATA_DIR", db.data_dir())
        .env("ENCLAVE_HTTP_ADDR", "127.0.0.1:0")
        .env("ENCLAVE_GATEWAY_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", &db.url)
        .env("ENCLAVE_BOOTSTRAP_EMAIL", OWNER_EMAIL)
        .env("ENCLAVE_BOOTSTRAP_PASSWORD", OWNER_PASSWORD)
        .env("ENCLAVE_LOG_FORMAT", "json")
        .env("ENCLAVE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all).await;
        all
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("server exited before listening");
        printed += &line;
        if let Some(url) = line.strip_prefix("Enclave control plane listening on ") {
            break url.trim().to_string();
        }
    };
    let printed_rest = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(l)) = lines.next_line().await {
            rest += &l;
        }
        rest
    });
    let s = Server::attach(&url);
    let owner = s.owner_token().await;
    let org = s.login_as(OWNER_EMAIL, OWNER_PASSWORD, None).await["org"]["org_id"]
        .as_str()
        .unwrap()
        .to_string();
    let env = s
        .get(&format!("/v1/organizations/{org}/environments"), &owner)
        .await
        .body["data"][0]["env_id"]
        .as_str()
        .unwrap()
        .to_string();
    let k1 = new_key(
        &s,
        &owner,
        &env,
        json!({"name": "a", "scopes": ["read_only"]}),
    )
    .await;
    let key1 = key_of(&k1);
    let path = format!("/v1/environments/{env}");
    as_key(&s, &key1, &path).await.expect(200);
    s.get(&path, &key1).await.expect(200);
    s.raw(
        s.client
            .get(format!("{url}{path}"))
            .header("authorization", format!("ApiKey {key1}")),
    )
    .await
    .expect(200);
    let rotated = s
        .post(
            &format!(
                "{}/{}/rotate",
                keys_path(&env),
                k1["key_id"].as_str().unwrap()
            ),
            Some(&owner),
            json!({}),
        )
        .await;
    let key2 = key_of(&rotated.body);
    as_key(&s, &key2, &path).await.expect(200);
    as_key(&s, &format!("{}{}", &key2[..40], "f".repeat(59)), &path)
        .await
        .expect(401);
    let mut later = String::new();
    for p in [keys_path(&env), "/v1/auth/me".to_string()] {
        later += &s.get(&p, &owner).await.body.to_string();
        later += &as_key(&s, &key2, &p).await.body.to_string();
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let logs = logs.await.unwrap() + &printed + &printed_rest.await.unwrap();
    // The request log was on and saw the key-authenticated requests.
    assert!(logs.contains("/api-keys"), "no request log lines: {logs}");

    for key in [&key1, &key2] {
        let secret = &key[35..];
        assert_eq!(secret.len(), 64);
        assert!(!logs.contains(secret), "a key secret is in the logs");
        assert!(
            !later.contains(secret),
            "a key secret is in a later response"
        );
        if db.is_postgres() {
            let dump = sql(
                &db,
                "SELECT CAST(row_to_json(k) AS TEXT) FROM api_keys k",
                None,
            )
            .await;
            assert!(!dump.is_empty());
            assert!(
                !dump.concat().contains(secret),
                "a key secret is in PostgreSQL"
            );
        } else {
            for entry in std::fs::read_dir(db.data_dir()).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains(secret),
                    "a key secret is in the data directory"
                );
            }
        }
    }
}

/// Two nodes on one PostgreSQL: a key revoked (or its environment suspended) through one is
/// refused by the other within a second, though the other had it in its verified cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_every_node() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let Env {
        s: a, owner, prod, ..
    } = setup(&db).await;
    let b = Server::start(db.args()).await;
    let path = format!("/v1/environments/{prod}");
    let refused_on_b_within_a_second = |key: String| {
        let (b, path) = (&b, path.clone());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while as_key(b, &key, &path).await.status != 401 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "node b still accepts the key after 1 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let k = new_key(
        &a,
        &owner,
        &prod,
        json!({"name": "k", "scopes": ["read_only"]}),
    )
    .await;
    let key = key_of(&k);
    as_key(&b, &key, &path).await.expect(200); // verified and cached on b
    a.delete(
        &format!("{}/{}", keys_path(&prod), k["key_id"].as_str().unwrap()),
        &owner,
    )
    .await
    .expect(204);
    refused_on_b_within_a_second(key).await;

    let k2 = key_of(
        &new_key(
            &a,
            &owner,
            &prod,
            json!({"name": "k2", "scopes": ["read_only"]}),
        )
        .await,
    );
    as_key(&b, &k2, &path).await.expect(200);
    b.get(&path, &owner).await.expect(200); // the environment is in b's cache now
    a.post(&format!("{path}/suspend"), Some(&owner), json!({}))
        .await
        .expect(200);
    refused_on_b_within_a_second(k2.clone()).await;
    assert_eq!(b.get(&path, &owner).await.body["status"], "suspended");
    a.post(&format!("{path}/resume"), Some(&owner), json!({}))
        .await
        .expect(200);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while as_key(&b, &k2, &path).await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "node b still refuses after resume"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.stop().await;
    a.stop().await;
}
