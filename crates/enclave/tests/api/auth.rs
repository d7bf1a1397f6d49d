use reqwest::Method;
use serde_json::json;

use crate::both;
use crate::common::{Db, Server, OWNER_EMAIL, OWNER_PASSWORD};

both!(
    login_me_and_jwks,
    refresh_rotation_and_reuse,
    logout_revokes,
    signup_rules,
    signup_can_be_disabled
);

async fn login_me_and_jwks(db: Db) {
    let s = db.start().await;
    let org_id = s
        .bootstrap_org
        .clone()
        .expect("first start bootstraps an owner");

    s.post(
        "/v1/auth/login",
        None,
        json!({"email": OWNER_EMAIL, "password": "wrong-password-123"}),
    )
    .await
    .expect_error(401, "UNAUTHORIZED");
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "nobody@example.com", "password": OWNER_PASSWORD}),
    )
    .await
    .expect_error(401, "UNAUTHORIZED");
    let bad = s
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "not-an-email", "password": "x"}),
        )
        .await;
    bad.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(bad.body["error"]["details"]["field"], "email");

    let login = s.login_as(OWNER_EMAIL, OWNER_PASSWORD, None).await;
    assert_eq!(
        (login["expires_in"].as_i64(), login["role"].as_str()),
        (Some(3600), Some("owner"))
    );
    assert_eq!(login["org"]["org_id"], org_id.as_str());
    let token = login["token"].as_str().unwrap();

    let me = s.get("/v1/auth/me", token).await;
    me.expect(200);
    assert_eq!(
        (me.body["type"].as_str(), me.body["user"]["email"].as_str()),
        (Some("user"), Some(OWNER_EMAIL))
    );
    assert_eq!(
        (
            me.body["org"]["org_id"].as_str(),
            me.body["org"]["role"].as_str()
        ),
        (Some(org_id.as_str()), Some("owner"))
    );

    // The token verifies against the published key.
    let jwks = s
        .raw(s.client.get(format!("{}/.well-known/jwks.json", s.url)))
        .await;
    jwks.expect(200);
    let key = &jwks.body["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    use base64::Engine;
    let header_b64 = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header_b64)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], key["kid"]);
    assert_eq!(header["alg"], "EdDSA");

    // Anything but a valid token of ours is refused.
    for bad in ["", "garbage", &format!("{token}x")] {
        let r = s
            .raw(
                s.request(Method::GET, "/v1/auth/me", None)
                    .header("authorization", format!("Bearer {bad}")),
            )
            .await;
        r.expect_error(401, "UNAUTHORIZED");
    }
    s.raw(
        s.request(Method::GET, "/v1/auth/me", None)
            .header("authorization", "Basic abc"),
    )
    .await
    .expect_error(401, "UNAUTHORIZED");
    s.raw(s.request(Method::GET, "/v1/auth/me", None))
        .await
        .expect_error(401, "UNAUTHORIZED");
}

async fn refresh_rotation_and_reuse(db: Db) {
    let s = db.start().await;
    let login = s.login_as(OWNER_EMAIL, OWNER_PASSWORD, None).await;
    let r1 = login["refresh_token"].as_str().unwrap();

    let second = s
        .post("/v1/auth/refresh", None, json!({"refresh_token": r1}))
        .await;
    second.expect(200);
    let r2 = second.body["refresh_token"].as_str().unwrap();
    let access2 = second.body["token"].as_str().unwrap();
    assert_ne!(r1, r2, "rotated on every use");
    s.get("/v1/auth/me", access2).await.expect(200);

    // Using r1 again is theft or a bug: the whole session family is revoked.
    let reuse = s
        .post("/v1/auth/refresh", None, json!({"refresh_token": r1}))
        .await;
    reuse.expect_error(401, "UNAUTHORIZED");
    assert_eq!(reuse.error().1, "refresh_token_reused");
    s.post("/v1/auth/refresh", None, json!({"refresh_token": r2}))
        .await
        .expect_error(401, "UNAUTHORIZED");
    s.get("/v1/auth/me", access2)
        .await
        .expect_error(401, "UNAUTHORIZED");

    s.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": "ert_unknown"}),
    )
    .await
    .expect_error(401, "UNAUTHORIZED");
    s.post("/v1/auth/refresh", None, json!({}))
        .await
        .expect_error(400, "VALIDATION_ERROR");

    // Switching organization on refresh: only to one the user belongs to.
    let login = s.login_as(OWNER_EMAIL, OWNER_PASSWORD, None).await;
    let token = login["token"].as_str().unwrap();
    let org = s
        .post(
            "/v1/organizations",
            Some(token),
            json!({"name": "Second", "slug": "second", "billing_email": "b@example.com"}),
        )
        .await;
    org.expect(201);
    let org_id = org.body["org_id"].as_str().unwrap();
    let switched = s
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": login["refresh_token"], "org_id": org_id}),
        )
        .await;
    switched.expect(200);
    assert_eq!(switched.body["org"]["org_id"], org_id);
    let me = s
        .get("/v1/auth/me", switched.body["token"].as_str().unwrap())
        .await;
    assert_eq!(me.body["org"]["org_id"], org_id);
    let nowhere = s.post("/v1/auth/refresh", None, json!({"refresh_token": switched.body["refresh_token"], "org_id": "org_01jxxxxxxxxxxxxxxxxxxxxxxx"})).await;
    nowhere.expect_error(404, "NOT_FOUND");
}

async fn logout_revokes(db: Db) {
    let s = db.start().await;
    let login = s.login_as(OWNER_EMAIL, OWNER_PASSWORD, None).await;
    let token = login["token"].as_str().unwrap();
    s.get("/v1/auth/me", token).await.expect(200);
    s.post("/v1/auth/logout", Some(token), json!({}))
        .await
        .expect(204);
    s.get("/v1/auth/me", token)
        .await
        .expect_error(401, "UNAUTHORIZED");
    s.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": login["refresh_token"]}),
    )
    .await
    .expect_error(401, "UNAUTHORIZED");
    s.post("/v1/auth/logout", None, json!({}))
        .await
        .expect_error(401, "UNAUTHORIZED");
}

async fn signup_rules(db: Db) {
    let s = db.start().await;
    let signup = |email: &str, password: &str| json!({"email": email, "password": password, "name": "Grace"});
    let cases = [
        (signup("grace@navy", "a-long-enough-pass"), "email", "email"),
        (signup("grace@navy.mil", "short"), "password", "min_length"),
        (
            signup("grace@navy.mil", "aaaaaaaaaaaaaaaaaa"),
            "password",
            "weak",
        ),
        (
            signup("grace@navy.mil", "grace-rules-99!"),
            "password",
            "weak",
        ),
        (
            json!({"email": "grace@navy.mil", "password": "a-long-enough-pass"}),
            "name",
            "required",
        ),
        (
            json!({"email": "grace@navy.mil", "password": "a-long-enough-pass", "name": "G", "admin": true}),
            "admin",
            "unknown_field",
        ),
        (
            json!({"email": "grace@navy.mil", "password": "a-long-enough-pass", "name": "   "}),
            "name",
            "required",
        ),
    ];
    for (body, field, rule) in cases {
        let r = s.post("/v1/auth/signup", None, body.clone()).await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(
            (r.body["error"]["details"]["field"].as_str(), r.error().1),
            (Some(field), rule),
            "{body}"
        );
    }
    let ok = s
        .post(
            "/v1/auth/signup",
            None,
            signup("Grace@Navy.mil", "a-long-enough-pass"),
        )
        .await;
    ok.expect(201);
    assert_eq!(
        ok.body["user"]["email"], "grace@navy.mil",
        "e-mail normalised"
    );
    assert!(ok.body["org"].is_null());
    s.get("/v1/auth/me", ok.body["token"].as_str().unwrap())
        .await
        .expect(200);
    let dup = s
        .post(
            "/v1/auth/signup",
            None,
            signup("grace@navy.mil", "another-long-pass"),
        )
        .await;
    dup.expect_error(409, "CONFLICT");
    assert_eq!(dup.error().1, "email_taken");
    // No organization membership yet: an empty list.
    let orgs = s
        .get("/v1/organizations", ok.body["token"].as_str().unwrap())
        .await;
    assert_eq!(orgs.body["pagination"]["total"], 0);
}

async fn signup_can_be_disabled(db: Db) {
    let mut args = db.args();
    args.open_signup = Some(false);
    let s = Server::start(args).await;
    let r = s
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": "a@example.com", "password": "a-long-enough-pass", "name": "A"}),
        )
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(r.error().1, "signup_disabled");
}
