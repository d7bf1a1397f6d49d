use serde_json::json;

use crate::both;
use crate::common::{Db, PASSWORD};

both!(
    invite_accept_list,
    member_updates_and_suspension,
    role_rules,
    invitation_edge_cases
);

async fn invite_accept_list(db: Db) {
    let s = db.start().await;
    let owner = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let users = format!("/v1/organizations/{org}/users");

    let inv = s
        .post(
            &users,
            Some(&owner),
            json!({"email": "Dev@Example.com", "name": "Dev One", "role": "developer"}),
        )
        .await;
    inv.expect(201);
    assert_eq!(
        (
            inv.body["status"].as_str(),
            inv.body["role"].as_str(),
            inv.body["email"].as_str()
        ),
        (Some("invited"), Some("developer"), Some("dev@example.com"))
    );
    let token = inv.body["invitation"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token.starts_with("inv_"));
    assert!(inv.body["invitation"]["expires_at"].is_string());

    for (body, field, rule) in [
        (
            json!({"email": "bad", "role": "developer"}),
            "email",
            "email",
        ),
        (
            json!({"email": "x@example.com", "role": "wizard"}),
            "role",
            "type",
        ),
        (
            json!({"email": "x@example.com", "role": "owner"}),
            "role",
            "not_owner",
        ),
        (json!({"email": "x@example.com"}), "role", "required"),
    ] {
        let r = s.post(&users, Some(&owner), body.clone()).await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(
            (r.body["error"]["details"]["field"].as_str(), r.error().1),
            (Some(field), rule),
            "{body}"
        );
    }
    let dup = s
        .post(
            &users,
            Some(&owner),
            json!({"email": "dev@example.com", "role": "analyst"}),
        )
        .await;
    dup.expect_error(409, "CONFLICT");

    // The invitation is listed until accepted, without its token: only its hash is kept,
    // and the token was shown once.
    let listed = s.get(&format!("{users}?status=invited"), &owner).await;
    assert!(listed.body["data"][0]["invitation"]["expires_at"].is_string());
    assert!(listed.body["data"][0]["invitation"]["token"].is_null());

    let weak = s
        .post(
            "/v1/auth/accept-invite",
            None,
            json!({"token": token, "password": "short"}),
        )
        .await;
    weak.expect_error(400, "VALIDATION_ERROR");
    let accepted = s
        .post(
            "/v1/auth/accept-invite",
            None,
            json!({"token": token, "password": PASSWORD}),
        )
        .await;
    accepted.expect(200);
    assert_eq!(
        (
            accepted.body["role"].as_str(),
            accepted.body["org"]["org_id"].as_str()
        ),
        (Some("developer"), Some(org.as_str()))
    );
    s.post(
        "/v1/auth/accept-invite",
        None,
        json!({"token": token, "password": PASSWORD}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    s.login_as("dev@example.com", PASSWORD, None).await;

    for (email, role) in [
        ("a1@example.com", "analyst"),
        ("a2@example.com", "analyst"),
        ("au@example.com", "auditor"),
    ] {
        s.add_member(&owner, &org, email, role).await;
    }
    let analysts = s.get(&format!("{users}?role=analyst"), &owner).await;
    assert_eq!(analysts.body["pagination"]["total"], 2);
    assert!(analysts.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["role"] == "analyst" && m["invitation"].is_null()));
    let active = s
        .get(&format!("{users}?status=active&limit=2"), &owner)
        .await;
    assert_eq!(
        (
            active.body["pagination"]["total"].as_i64(),
            active.body["pagination"]["has_more"].as_bool()
        ),
        (Some(5), Some(true))
    );
    let next = s
        .get(
            &format!(
                "{users}?status=active&limit=2&cursor={}",
                active.body["pagination"]["cursor"].as_str().unwrap()
            ),
            &owner,
        )
        .await;
    assert!(next.body["data"][0]["user_id"].as_str() > active.body["data"][1]["user_id"].as_str());
    s.get(&format!("{users}?status=gone"), &owner)
        .await
        .expect_error(400, "VALIDATION_ERROR");
    s.get(&format!("{users}?role=wizard"), &owner)
        .await
        .expect_error(400, "VALIDATION_ERROR");
    s.get(&format!("{users}?limit=500"), &owner)
        .await
        .expect_error(400, "VALIDATION_ERROR");

    // Only owners and admins manage users.
    let (_, dev) = s
        .add_member(&owner, &org, "dev2@example.com", "developer")
        .await;
    let r = s.get(&users, &dev).await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(r.error().1, "permission:manage_users");
    s.post(
        &users,
        Some(&dev),
        json!({"email": "z@example.com", "role": "analyst"}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
}

async fn member_updates_and_suspension(db: Db) {
    let s = db.start().await;
    let owner = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let (dev_id, dev) = s
        .add_member(&owner, &org, "dev@example.com", "developer")
        .await;
    let path = format!("/v1/organizations/{org}/users/{dev_id}");

    let got = s.get(&path, &owner).await;
    got.expect(200);
    let etag = got.header("etag").unwrap().to_string();
    let patched = s
        .raw(
            s.request(reqwest::Method::PATCH, &path, Some(&owner))
                .header("if-match", &etag)
                .json(
                    &json!({"name": "Dev", "attributes": {"department": "sales", "region": "eu"}}),
                ),
        )
        .await;
    patched.expect(200);
    assert_eq!(
        (
            patched.body["attributes"]["department"].as_str(),
            patched.body["name"].as_str()
        ),
        (Some("sales"), Some("Dev"))
    );
    let stale = s
        .raw(
            s.request(reqwest::Method::PATCH, &path, Some(&owner))
                .header("if-match", &etag)
                .json(&json!({"name": "X"})),
        )
        .await;
    stale.expect_error(412, "PRECONDITION_FAILED");
    let bad = s
        .patch(&path, &owner, json!({"attributes": {"bad key": "x"}}))
        .await;
    bad.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(bad.error().1, "key_pattern");
    s.patch(&path, &owner, json!({"role": "admin"}))
        .await
        .expect_error(400, "VALIDATION_ERROR");
    s.patch(&path, &owner, json!({"status": "invited"}))
        .await
        .expect_error(400, "VALIDATION_ERROR");

    // Suspension takes effect at once, on the very next request.
    s.get("/v1/auth/me", &dev).await.expect(200);
    s.patch(&path, &owner, json!({"status": "suspended"}))
        .await
        .expect(200);
    s.get("/v1/auth/me", &dev)
        .await
        .expect_error(401, "UNAUTHORIZED");
    s.get(&format!("/v1/organizations/{org}"), &dev)
        .await
        .expect_error(401, "UNAUTHORIZED");
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "dev@example.com", "password": PASSWORD, "org_id": org}),
    )
    .await
    .expect_error(401, "UNAUTHORIZED");
    let suspended = s
        .get(
            &format!("/v1/organizations/{org}/users?status=suspended"),
            &owner,
        )
        .await;
    assert_eq!(suspended.body["pagination"]["total"], 1);
    s.patch(&path, &owner, json!({"status": "active"}))
        .await
        .expect(200);
    s.get("/v1/auth/me", &dev).await.expect(200);

    s.delete(&path, &owner).await.expect(204);
    s.get(&format!("/v1/organizations/{org}"), &dev)
        .await
        .expect_error(404, "NOT_FOUND");
    s.get(&path, &owner).await.expect_error(404, "NOT_FOUND");
}

async fn role_rules(db: Db) {
    let s = db.start().await;
    let owner = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let owner_id = s.get("/v1/auth/me", &owner).await.body["user"]["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (admin_id, admin) = s
        .add_member(&owner, &org, "admin@example.com", "admin")
        .await;
    let (admin2_id, _) = s
        .add_member(&owner, &org, "admin2@example.com", "admin")
        .await;
    let (dev_id, dev) = s
        .add_member(&owner, &org, "dev@example.com", "developer")
        .await;
    let role = |id: &str| format!("/v1/organizations/{org}/users/{id}/role");
    let member = |id: &str| format!("/v1/organizations/{org}/users/{id}");
    let rule = |r: &crate::common::Resp| r.error().1.to_string();

    // Nobody changes their own role.
    let r = s
        .put(&role(&admin_id), &admin, json!({"role": "developer"}))
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(rule(&r), "own_role");
    // Only the owner grants admin.
    let r = s
        .put(&role(&dev_id), &admin, json!({"role": "admin"}))
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(rule(&r), "only_owner_grants_admin");
    s.post(
        &format!("/v1/organizations/{org}/users"),
        Some(&admin),
        json!({"email": "x@example.com", "role": "admin"}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    // …and only the owner takes it away, suspends or removes an admin.
    let r = s
        .put(&role(&admin2_id), &admin, json!({"role": "developer"}))
        .await;
    assert_eq!(
        (r.status, rule(&r)),
        (403, "only_owner_manages_admins".to_string())
    );
    s.patch(&member(&admin2_id), &admin, json!({"status": "suspended"}))
        .await
        .expect_error(403, "FORBIDDEN");
    s.delete(&member(&admin2_id), &admin)
        .await
        .expect_error(403, "FORBIDDEN");
    // The owner is fixed but for a transfer.
    for r in [
        s.put(&role(&owner_id), &admin, json!({"role": "developer"}))
            .await,
        s.patch(&member(&owner_id), &admin, json!({"status": "suspended"}))
            .await,
        s.delete(&member(&owner_id), &admin).await,
    ] {
        r.expect_error(409, "CONFLICT");
        assert_eq!(rule(&r), "single_owner");
    }
    let r = s
        .put(&role(&dev_id), &owner, json!({"role": "owner"}))
        .await;
    r.expect_error(400, "VALIDATION_ERROR");
    s.put(&role(&dev_id), &owner, json!({"role": "emperor"}))
        .await
        .expect_error(400, "VALIDATION_ERROR");
    // Developers manage nobody.
    s.put(&role(&admin_id), &dev, json!({"role": "analyst"}))
        .await
        .expect_error(403, "FORBIDDEN");

    // What is allowed works, and takes effect at once.
    let ok = s
        .put(&role(&dev_id), &admin, json!({"role": "analyst"}))
        .await;
    ok.expect(200);
    assert_eq!(ok.body["role"], "analyst");
    assert_eq!(
        s.get("/v1/auth/me", &dev).await.body["org"]["role"],
        "analyst"
    );
    s.put(&role(&dev_id), &owner, json!({"role": "admin"}))
        .await
        .expect(200);
    s.get(&format!("/v1/organizations/{org}/users"), &dev)
        .await
        .expect(200);
    s.put(&role(&admin2_id), &owner, json!({"role": "auditor"}))
        .await
        .expect(200);
    // An admin may leave.
    s.delete(&member(&admin_id), &admin).await.expect(204);
}

async fn invitation_edge_cases(db: Db) {
    let s = db.start().await;
    let owner = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    // Inviting someone who already has an account: accepting needs their own password, so an
    // invitation token can never take over an account.
    s.signup("kim@example.com", "kims-own-password").await;
    let inv = s
        .post(
            &format!("/v1/organizations/{org}/users"),
            Some(&owner),
            json!({"email": "kim@example.com", "role": "analyst"}),
        )
        .await;
    let token = inv.body["invitation"]["token"].as_str().unwrap();
    s.post(
        "/v1/auth/accept-invite",
        None,
        json!({"token": token, "password": "attacker-chosen-pw"}),
    )
    .await
    .expect_error(401, "UNAUTHORIZED");
    s.post(
        "/v1/auth/accept-invite",
        None,
        json!({"token": token, "password": "kims-own-password"}),
    )
    .await
    .expect(200);
    s.login_as("kim@example.com", "kims-own-password", Some(&org))
        .await;
    s.post(
        "/v1/auth/accept-invite",
        None,
        json!({"token": "inv_nope", "password": "whatever-password"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    s.post(
        "/v1/auth/accept-invite",
        None,
        json!({"token": "x", "password": "whatever-password", "role": "owner"}),
    )
    .await
    .expect_error(400, "VALIDATION_ERROR");
}
