use serde_json::json;

use crate::both;
use crate::common::{spawn_binary, Db, Server, OWNER_EMAIL, OWNER_PASSWORD};

both!(
    self_hosted_defaults,
    create_list_get,
    update_delete_with_etags,
    cross_organization_is_not_found,
    transfer_ownership
);

fn org_body(slug: &str) -> serde_json::Value {
    json!({"name": format!("Org {slug}"), "slug": slug, "billing_email": "billing@example.com"})
}

/// A server run as shipped: its own organization is the operator's, not a SaaS free tier —
/// more environments than the free tier's 3, no low rate limit.
async fn self_hosted_defaults(db: Db) {
    let (_child, url) = spawn_binary(&db, &[("ENCLAVE_RATE_LIMITS", "")]).await;
    let s = Server::attach(&url);
    let login = s
        .post(
            "/v1/auth/login",
            None,
            json!({"email": OWNER_EMAIL, "password": OWNER_PASSWORD}),
        )
        .await;
    login.expect(200);
    let token = login.body["token"].as_str().unwrap();
    let org = login.body["org"]["org_id"].as_str().unwrap();
    assert_eq!(login.body["org"]["tier"], "enterprise");
    assert!(login.body["org"]["quotas"]["max_environments"].is_null());
    for i in 0..3 {
        s.post(
            &format!("/v1/organizations/{org}/environments"),
            Some(token),
            json!({"name": format!("Preview {i}")}),
        )
        .await
        .expect(201);
    }
    let me = s.get("/v1/auth/me", token).await;
    assert!(
        me.header("x-ratelimit-limit")
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 10_000
    );
}

async fn create_list_get(db: Db) {
    let s = db.start().await;
    let t = s.owner_token().await;

    let created = s
        .post(
            "/v1/organizations",
            Some(&t),
            json!({
                "name": " Acme ", "slug": "acme", "billing_email": "Billing@Acme.io",
                "cloud_region": "eu-west-1", "settings": {"theme": "dark"}
            }),
        )
        .await;
    created.expect(201);
    let org = &created.body;
    assert!(org["org_id"].as_str().unwrap().starts_with("org_"));
    assert_eq!(
        (org["name"].as_str(), org["billing_email"].as_str()),
        (Some("Acme"), Some("billing@acme.io"))
    );
    assert_eq!(
        (
            org["tier"].as_str(),
            org["status"].as_str(),
            org["version"].as_i64()
        ),
        (Some("free"), Some("active"), Some(1))
    );
    assert_eq!(org["quotas"]["max_environments"], 3);
    assert_eq!(org["settings"]["theme"], "dark");
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(
        created.header("location").unwrap(),
        format!("/v1/organizations/{}", org["org_id"].as_str().unwrap())
    );

    let dup = s
        .post("/v1/organizations", Some(&t), org_body("acme"))
        .await;
    dup.expect_error(409, "CONFLICT");
    assert_eq!(dup.error().1, "slug_taken");

    for (body, field, rule) in [
        (org_body("Acme"), "slug", "pattern"),
        (org_body("a"), "slug", "pattern"),
        (org_body("-acme"), "slug", "pattern"),
        (
            json!({"name": "x", "slug": "ok-slug", "billing_email": "nope"}),
            "billing_email",
            "email",
        ),
        (
            json!({"name": "x", "slug": "ok-slug", "billing_email": "a@b.io", "cloud_region": "EU WEST"}),
            "cloud_region",
            "pattern",
        ),
        (
            json!({"name": "x", "slug": "ok-slug", "billing_email": "a@b.io", "settings": [1]}),
            "settings",
            "type",
        ),
        (
            json!({"name": "x", "slug": "ok-slug", "billing_email": "a@b.io", "tier": "enterprise"}),
            "tier",
            "unknown_field",
        ),
        (
            json!({"name": "x", "billing_email": "a@b.io"}),
            "slug",
            "required",
        ),
        (
            json!({"name": 5, "slug": "ok-slug", "billing_email": "a@b.io"}),
            "name",
            "type",
        ),
    ] {
        let r = s.post("/v1/organizations", Some(&t), body.clone()).await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(
            (r.body["error"]["details"]["field"].as_str(), r.error().1),
            (Some(field), rule),
            "{body}"
        );
    }

    for i in 0..4 {
        s.post(
            "/v1/organizations",
            Some(&t),
            org_body(&format!("page-{i}")),
        )
        .await
        .expect(201);
    }
    // Six in all (bootstrap + acme + four): walk them two at a time.
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/organizations?limit=2&cursor={c}"),
            None => "/v1/organizations?limit=2".to_string(),
        };
        let page = s.get(&path, &t).await;
        page.expect(200);
        assert_eq!(page.body["pagination"]["total"], 6);
        seen.extend(
            page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["org_id"].as_str().unwrap().to_string()),
        );
        if !page.body["pagination"]["has_more"].as_bool().unwrap() {
            assert!(page.body["pagination"]["cursor"].is_null());
            break;
        }
        cursor = page.body["pagination"]["cursor"]
            .as_str()
            .map(str::to_string);
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        (seen.len(), sorted),
        (6, seen.clone()),
        "each once, in id order"
    );

    s.get("/v1/organizations?limit=201", &t)
        .await
        .expect_error(400, "VALIDATION_ERROR");
    s.get("/v1/organizations?limit=0", &t)
        .await
        .expect_error(400, "VALIDATION_ERROR");
    s.get("/v1/organizations?limit=abc", &t)
        .await
        .expect_error(400, "VALIDATION_ERROR");
    s.get("/v1/organizations?cursor=%21%21", &t)
        .await
        .expect_error(400, "VALIDATION_ERROR");
    let unknown = s.get("/v1/organizations?sort=name", &t).await;
    unknown.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(unknown.error().1, "unknown_parameter");

    let one = s
        .get(
            &format!("/v1/organizations/{}", org["org_id"].as_str().unwrap()),
            &t,
        )
        .await;
    one.expect(200);
    assert_eq!(one.header("etag"), Some("\"1\""));
}

async fn update_delete_with_etags(db: Db) {
    let s = db.start().await;
    let owner = s.owner_token().await;
    let org = s
        .post("/v1/organizations", Some(&owner), org_body("acme"))
        .await;
    let id = org.body["org_id"].as_str().unwrap().to_string();
    let path = format!("/v1/organizations/{id}");
    // Read first, so the change below has a cached copy to invalidate.
    assert_eq!(s.get(&path, &owner).await.body["version"], 1);

    let stale = s
        .raw(
            s.request(reqwest::Method::PATCH, &path, Some(&owner))
                .header("if-match", "\"7\"")
                .json(&json!({"name": "X"})),
        )
        .await;
    stale.expect_error(412, "PRECONDITION_FAILED");
    let ok = s
        .raw(
            s.request(reqwest::Method::PATCH, &path, Some(&owner))
                .header("if-match", "\"1\"")
                .json(&json!({"name": "Acme 2", "settings": {"a": 1}})),
        )
        .await;
    ok.expect(200);
    assert_eq!(
        (
            ok.body["name"].as_str(),
            ok.body["version"].as_i64(),
            ok.header("etag")
        ),
        (Some("Acme 2"), Some(2), Some("\"2\""))
    );
    s.patch(&path, &owner, json!({"billing_email": "bad"}))
        .await
        .expect_error(400, "VALIDATION_ERROR");
    s.patch(&path, &owner, json!({"slug": "new-slug"}))
        .await
        .expect_error(400, "VALIDATION_ERROR");
    let read = s.get(&path, &owner).await;
    let seen = (read.body["version"].as_i64(), read.body["name"].as_str());
    assert_eq!(
        seen,
        (Some(2), Some("Acme 2")),
        "fresh after the change; refused patches changed nothing"
    );

    let (_, admin) = s
        .add_member(&owner, &id, "admin@example.com", "admin")
        .await;
    let (_, dev) = s
        .add_member(&owner, &id, "dev@example.com", "developer")
        .await;
    s.patch(&path, &admin, json!({"name": "By admin"}))
        .await
        .expect(200);
    let r = s.patch(&path, &dev, json!({"name": "By dev"})).await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(r.error().1, "permission:manage_organization");
    s.get(&path, &dev).await.expect(200);
    s.delete(&path, &admin).await.expect_error(403, "FORBIDDEN");

    let stale = s
        .raw(
            s.request(reqwest::Method::DELETE, &path, Some(&owner))
                .header("if-match", "\"1\""),
        )
        .await;
    stale.expect_error(412, "PRECONDITION_FAILED");
    s.delete(&path, &owner).await.expect(204);
    s.get(&path, &owner).await.expect_error(404, "NOT_FOUND");
    // The removed organization's members lose access with it.
    s.get(&path, &dev).await.expect_error(404, "NOT_FOUND");
}

async fn cross_organization_is_not_found(db: Db) {
    let s = db.start().await;
    let owner = s.owner_token().await;
    let theirs = s
        .post("/v1/organizations", Some(&owner), org_body("theirs"))
        .await
        .body["org_id"]
        .as_str()
        .unwrap()
        .to_string();
    let eve = s.signup("eve@example.com", "eve-password-1234").await;

    for path in [
        format!("/v1/organizations/{theirs}"),
        format!("/v1/organizations/{theirs}/users"),
        "/v1/organizations/org_01jzzzzzzzzzzzzzzzzzzzzzzz".to_string(),
        "/v1/organizations/not-an-id".to_string(),
    ] {
        let r = s.get(&path, &eve).await;
        r.expect_error(404, "NOT_FOUND");
    }
    s.patch(
        &format!("/v1/organizations/{theirs}"),
        &eve,
        json!({"name": "pwned"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    s.delete(&format!("/v1/organizations/{theirs}"), &eve)
        .await
        .expect_error(404, "NOT_FOUND");
    s.post(
        &format!("/v1/organizations/{theirs}/users"),
        Some(&eve),
        json!({"email": "x@example.com", "role": "admin"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    let list = s.get("/v1/organizations", &eve).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 0);
    // Logging in to an organization one does not belong to is the same 404.
    let r = s
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "eve@example.com", "password": "eve-password-1234", "org_id": theirs}),
        )
        .await;
    r.expect_error(404, "NOT_FOUND");
}

async fn transfer_ownership(db: Db) {
    let s = db.start().await;
    let owner = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let (admin_id, admin) = s
        .add_member(&owner, &org, "admin@example.com", "admin")
        .await;
    let (dev_id, _) = s
        .add_member(&owner, &org, "dev@example.com", "developer")
        .await;
    let path = format!("/v1/organizations/{org}/transfer-ownership");

    let r = s
        .post(&path, Some(&admin), json!({"user_id": dev_id}))
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(r.error().1, "owner_only");
    let invited = s
        .post(
            &format!("/v1/organizations/{org}/users"),
            Some(&owner),
            json!({"email": "new@example.com", "role": "analyst"}),
        )
        .await;
    let r = s
        .post(
            &path,
            Some(&owner),
            json!({"user_id": invited.body["user_id"]}),
        )
        .await;
    r.expect_error(409, "CONFLICT");
    s.post(
        &path,
        Some(&owner),
        json!({"user_id": "usr_01jzzzzzzzzzzzzzzzzzzzzzzz"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");

    s.post(&path, Some(&owner), json!({"user_id": admin_id}))
        .await
        .expect(200);
    let users = s
        .get(&format!("/v1/organizations/{org}/users?role=owner"), &admin)
        .await;
    assert_eq!(users.body["data"][0]["user_id"], admin_id.as_str());
    assert_eq!(users.body["pagination"]["total"], 1, "exactly one owner");
    // The old owner is an admin now, at once, with the same token.
    let r = s.delete(&format!("/v1/organizations/{org}"), &owner).await;
    r.expect_error(403, "FORBIDDEN");
    let me = s.get("/v1/auth/me", &owner).await;
    assert_eq!(me.body["org"]["role"], "admin");
}
