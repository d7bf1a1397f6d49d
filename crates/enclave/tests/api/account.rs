//! Account security: changing a password ends the other sessions, owner/admin reset links,
//! TOTP second factor with recovery codes, an organization requiring it (API and wire).

use enclave_api::auth::mfa;
use serde_json::{json, Value};

use crate::both;
use crate::common::{Db, Org, Server, OWNER_PASSWORD, PASSWORD};

both!(
    password_change_and_reset,
    totp_second_factor,
    organization_requires_second_factor
);

fn now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

/// The code the app shows `ahead` steps from now.
fn code(secret: &str, ahead: u64) -> String {
    mfa::code_at(secret, now() + 30 * ahead).unwrap()
}

/// The recovery codes of an answer.
fn recovery_codes(body: &Value) -> Vec<String> {
    body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// Turns a TOTP factor on for the session of `token`; returns the secret and the recovery
/// codes. The code of the current step is spent.
pub(crate) async fn enrol_totp(s: &Server, token: &str, password: &str) -> (String, Vec<String>) {
    let begun = s
        .post(
            "/v1/auth/mfa/totp",
            Some(token),
            json!({"password": password}),
        )
        .await;
    begun.expect(201);
    let secret = begun.body["secret"].as_str().unwrap().to_string();
    assert!(begun.body["otpauth_uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/Enclave%3A"));
    let confirmed = s
        .post(
            "/v1/auth/mfa/totp/confirm",
            Some(token),
            json!({"code": code(&secret, 0)}),
        )
        .await;
    confirmed.expect(200);
    let codes = recovery_codes(&confirmed.body);
    (secret, codes)
}

/// Signs in with the password (which must be right), then sends `second` (a code or a recovery
/// code) with the challenge; the answer to that second step.
async fn second_step(s: &Server, email: &str, password: &str, second: &str) -> crate::common::Resp {
    let first = s
        .post(
            "/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await;
    first.expect(202);
    assert_eq!(first.body["mfa_required"], true);
    s.post(
        "/v1/auth/login/mfa",
        None,
        json!({"mfa_token": first.body["mfa_token"], "code": second}),
    )
    .await
}

/// Signs in with the password and then `second` (a code or a recovery code).
pub(crate) async fn login_with(s: &Server, email: &str, password: &str, second: &str) -> Value {
    let r = second_step(s, email, password, second).await;
    r.expect(200);
    r.body
}

async fn actions(o: &Org) -> Vec<String> {
    let r =
        o.s.get(
            &format!("/v1/organizations/{}/audit/iam?limit=200", o.org),
            &o.token,
        )
        .await;
    r.expect(200);
    r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

async fn password_change_and_reset(db: Db) {
    let o = Org::start(&db).await;
    let (dev_id, _) =
        o.s.add_member(&o.token, &o.org, "dev@example.com", "developer")
            .await;
    let a = o.s.login_as("dev@example.com", PASSWORD, None).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let b = o.s.login_as("dev@example.com", PASSWORD, None).await["token"]
        .as_str()
        .unwrap()
        .to_string();

    // A wrong current password, a weak new one: refused, nothing changes.
    let wrong =
        o.s.post(
            "/v1/auth/password",
            Some(&a),
            json!({"current_password": "not-the-password-1", "new_password": "another-good-pass-77"}),
        )
        .await;
    wrong.expect_error(401, "UNAUTHORIZED");
    let weak =
        o.s.post(
            "/v1/auth/password",
            Some(&a),
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    weak.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(weak.body["error"]["details"]["field"], "new_password");
    o.s.get("/v1/auth/me", &b).await.expect(200);

    // Changing it ends every other session; this one stays.
    let changed =
        o.s.post(
            "/v1/auth/password",
            Some(&a),
            json!({"current_password": PASSWORD, "new_password": "another-good-pass-77"}),
        )
        .await;
    changed.expect(200);
    assert!(changed.body["sessions_ended"].as_u64().unwrap() >= 2);
    o.s.get("/v1/auth/me", &b).await.expect(401);
    o.s.get("/v1/auth/me", &a).await.expect(200);
    o.s.post(
        "/v1/auth/login",
        None,
        json!({"email": "dev@example.com", "password": PASSWORD}),
    )
    .await
    .expect(401);
    o.s.login_as("dev@example.com", "another-good-pass-77", None)
        .await;

    // An owner's reset link: once, hashed, ends every session.
    let users = format!("/v1/organizations/{}/users", o.org);
    let own =
        o.s.post(
            &format!("{users}/{}/password-reset", owner_id(&o).await),
            Some(&o.token),
            json!({}),
        )
        .await;
    own.expect_error(403, "FORBIDDEN");
    assert_eq!(own.body["error"]["details"]["rule"], "own_account");
    let link =
        o.s.post(
            &format!("{users}/{dev_id}/password-reset"),
            Some(&o.token),
            json!({}),
        )
        .await;
    link.expect(201);
    let token = link.body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("epr_"));
    let stored = crate::audit::sql(&db, "SELECT token_hash FROM password_resets")
        .await
        .unwrap();
    assert_ne!(stored, token, "only the token's hash is stored");
    let weak =
        o.s.post(
            "/v1/auth/reset-password",
            None,
            json!({"token": token, "new_password": "short"}),
        )
        .await;
    weak.expect_error(400, "VALIDATION_ERROR");
    o.s.post(
        "/v1/auth/reset-password",
        None,
        json!({"token": token, "new_password": "reset-good-pass-42"}),
    )
    .await
    .expect(204);
    o.s.get("/v1/auth/me", &a).await.expect(401);
    o.s.post(
        "/v1/auth/reset-password",
        None,
        json!({"token": token, "new_password": "reset-good-pass-43"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    o.s.login_as("dev@example.com", "reset-good-pass-42", None)
        .await;

    // An admin resets a developer, never the owner or another admin.
    let (admin_id, admin) =
        o.s.add_member(&o.token, &o.org, "admin@example.com", "admin")
            .await;
    let (_, admin2) =
        o.s.add_member(&o.token, &o.org, "admin2@example.com", "admin")
            .await;
    for (target, rule) in [
        (owner_id(&o).await, "owner_account"),
        (admin_id.clone(), "only_owner_manages_admins"),
    ] {
        let r =
            o.s.post(
                &format!("{users}/{target}/password-reset"),
                Some(&admin2),
                json!({}),
            )
            .await;
        r.expect_error(403, "FORBIDDEN");
        assert_eq!(r.body["error"]["details"]["rule"], rule);
    }
    o.s.post(
        &format!("{users}/{dev_id}/password-reset"),
        Some(&admin),
        json!({}),
    )
    .await
    .expect(201);
    // A developer may not reset anyone; an unknown member is 404.
    let dev =
        o.s.login_as("dev@example.com", "reset-good-pass-42", None)
            .await["token"]
            .as_str()
            .unwrap()
            .to_string();
    o.s.post(
        &format!("{users}/{admin_id}/password-reset"),
        Some(&dev),
        json!({}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    o.s.post(
        &format!("{users}/usr_01h0000000000000000000000/password-reset"),
        Some(&o.token),
        json!({}),
    )
    .await
    .expect_error(404, "NOT_FOUND");

    // An account that also belongs to another organization is only its own to recover.
    let other =
        o.s.post(
            "/v1/organizations",
            Some(&dev),
            json!({"name": "Side", "slug": "side-project", "billing_email": "dev@example.com"}),
        )
        .await;
    other.expect(201);
    let r =
        o.s.post(
            &format!("{users}/{dev_id}/password-reset"),
            Some(&o.token),
            json!({}),
        )
        .await;
    r.expect_error(409, "CONFLICT");
    assert_eq!(
        r.body["error"]["details"]["rule"],
        "user_in_other_organizations"
    );

    let trail = actions(&o).await;
    for action in [
        "user.password_changed",
        "user.password_reset_started",
        "user.password_reset",
    ] {
        assert!(trail.iter().any(|a| a == action), "{action} in {trail:?}");
    }
}

async fn owner_id(o: &Org) -> String {
    let me = o.s.get("/v1/auth/me", &o.token).await;
    me.body["user"]["user_id"].as_str().unwrap().to_string()
}

async fn totp_second_factor(db: Db) {
    let o = Org::start(&db).await;
    let (dev_id, dev) =
        o.s.add_member(&o.token, &o.org, "dev@example.com", "developer")
            .await;
    let status = o.s.get("/v1/auth/mfa", &dev).await;
    status.expect(200);
    assert_eq!(status.body["totp_enabled"], false);

    // Enrolment asks for the password, then a first code; a wrong code changes nothing.
    o.s.post(
        "/v1/auth/mfa/totp",
        Some(&dev),
        json!({"password": "wrong-password-123"}),
    )
    .await
    .expect_error(401, "UNAUTHORIZED");
    o.s.post(
        "/v1/auth/mfa/totp/confirm",
        Some(&dev),
        json!({"code": "123456"}),
    )
    .await
    .expect_error(409, "CONFLICT");
    let begun =
        o.s.post(
            "/v1/auth/mfa/totp",
            Some(&dev),
            json!({"password": PASSWORD}),
        )
        .await;
    begun.expect(201);
    let secret = begun.body["secret"].as_str().unwrap().to_string();
    let wrong = if code(&secret, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    o.s.post(
        "/v1/auth/mfa/totp/confirm",
        Some(&dev),
        json!({"code": wrong}),
    )
    .await
    .expect_error(401, "UNAUTHORIZED");
    let first = code(&secret, 0);
    let confirmed =
        o.s.post(
            "/v1/auth/mfa/totp/confirm",
            Some(&dev),
            json!({"code": first}),
        )
        .await;
    confirmed.expect(200);
    let recovery = recovery_codes(&confirmed.body);
    assert_eq!(recovery.len(), 10);
    let status = o.s.get("/v1/auth/mfa", &dev).await;
    assert_eq!(
        (
            &status.body["totp_enabled"],
            &status.body["recovery_codes_left"]
        ),
        (&json!(true), &json!(10))
    );
    let member =
        o.s.get(
            &format!("/v1/organizations/{}/users/{dev_id}", o.org),
            &o.token,
        )
        .await;
    assert_eq!(member.body["mfa_enabled"], true);
    // Sealed at rest, never the secret itself.
    let stored = crate::audit::sql(
        &db,
        "SELECT mfa_secret FROM users WHERE mfa_secret IS NOT NULL",
    )
    .await
    .unwrap();
    assert!(
        stored.starts_with("sealed:v1:") && !stored.contains(&secret),
        "{stored}"
    );

    // The password alone gives no tokens: a challenge, which is no access token.
    let challenge =
        o.s.post(
            "/v1/auth/login",
            None,
            json!({"email": "dev@example.com", "password": PASSWORD}),
        )
        .await;
    challenge.expect(202);
    let mfa_token = challenge.body["mfa_token"].as_str().unwrap().to_string();
    assert!(challenge.body.get("token").is_none());
    o.s.get("/v1/auth/me", &mfa_token).await.expect(401);
    // A wrong code, the code already used at enrolment, a forged challenge: refused.
    for (token, c) in [
        (mfa_token.as_str(), wrong),
        (mfa_token.as_str(), first.as_str()),
        ("eyJhbGciOiJFZERTQSJ9.e30.AAAA", first.as_str()),
    ] {
        o.s.post(
            "/v1/auth/login/mfa",
            None,
            json!({"mfa_token": token, "code": c}),
        )
        .await
        .expect_error(401, "UNAUTHORIZED");
    }
    let signed =
        o.s.post(
            "/v1/auth/login/mfa",
            None,
            json!({"mfa_token": mfa_token, "code": code(&secret, 1)}),
        )
        .await;
    signed.expect(200);
    o.s.get("/v1/auth/me", signed.body["token"].as_str().unwrap())
        .await
        .expect(200);

    // A recovery code works once, in any case and spacing.
    let typed = recovery[0].to_uppercase().replace('-', " ");
    login_with(&o.s, "dev@example.com", PASSWORD, &typed).await;
    second_step(&o.s, "dev@example.com", PASSWORD, &recovery[0])
        .await
        .expect_error(401, "UNAUTHORIZED");
    let status = o.s.get("/v1/auth/mfa", &dev).await;
    assert_eq!(status.body["recovery_codes_left"], 9);

    // New recovery codes replace the old ones.
    let fresh =
        o.s.post(
            "/v1/auth/mfa/recovery-codes",
            Some(&dev),
            json!({"password": PASSWORD}),
        )
        .await;
    fresh.expect(200);
    let fresh = recovery_codes(&fresh.body);
    second_step(&o.s, "dev@example.com", PASSWORD, &recovery[1])
        .await
        .expect_error(401, "UNAUTHORIZED");

    // Joining another organization with an account that has a factor asks for it too.
    let invite =
        o.s.post(
            "/v1/organizations",
            Some(&o.token),
            json!({"name": "Second", "slug": "second-org", "billing_email": "o@example.com"}),
        )
        .await;
    invite.expect(201);
    let second = invite.body["org_id"].as_str().unwrap().to_string();
    let inv =
        o.s.post(
            &format!("/v1/organizations/{second}/users"),
            Some(&o.token),
            json!({"email": "dev@example.com", "role": "analyst"}),
        )
        .await;
    inv.expect(201);
    let joined =
        o.s.post(
            "/v1/auth/accept-invite",
            None,
            json!({"token": inv.body["invitation"]["token"], "password": PASSWORD}),
        )
        .await;
    joined.expect(202);
    assert!(joined.body.get("token").is_none());

    // Turning it off needs the password and a code; the owner can turn it off for them.
    o.s.post(
        "/v1/auth/mfa/totp/disable",
        Some(&dev),
        json!({"password": PASSWORD, "code": wrong}),
    )
    .await
    .expect_error(401, "UNAUTHORIZED");
    o.s.post(
        "/v1/auth/mfa/totp/disable",
        Some(&dev),
        json!({"password": PASSWORD, "code": fresh[0]}),
    )
    .await
    .expect(204);
    o.s.login_as("dev@example.com", PASSWORD, None).await;
    o.s.delete(
        &format!("/v1/organizations/{}/users/{dev_id}/mfa", o.org),
        &o.token,
    )
    .await
    .expect_error(409, "CONFLICT");

    let trail = actions(&o).await;
    for action in [
        "user.mfa_enabled",
        "user.recovery_code_used",
        "user.recovery_codes_replaced",
        "user.mfa_disabled",
    ] {
        assert!(trail.iter().any(|a| a == action), "{action} in {trail:?}");
    }
}

async fn organization_requires_second_factor(db: Db) {
    let o = Org::start(&db).await;
    let (analyst_id, analyst) =
        o.s.add_member(&o.token, &o.org, "analyst@example.com", "analyst")
            .await;
    let org_path = format!("/v1/organizations/{}", o.org);

    // Typed, and only by someone who has a factor themselves.
    let bad =
        o.s.patch(
            &org_path,
            &o.token,
            json!({"settings": {"mfa_required": "yes"}}),
        )
        .await;
    bad.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(
        bad.body["error"]["details"]["field"],
        "settings.mfa_required"
    );
    let first =
        o.s.patch(
            &org_path,
            &o.token,
            json!({"settings": {"mfa_required": true}}),
        )
        .await;
    first.expect_error(409, "CONFLICT");
    assert_eq!(first.body["error"]["details"]["rule"], "enrol_first");
    enrol_totp(&o.s, &o.token, OWNER_PASSWORD).await;
    o.s.patch(
        &org_path,
        &o.token,
        json!({"settings": {"mfa_required": true}}),
    )
    .await
    .expect(200);

    // A member without a factor is held at the door of the organization — API and wire —
    // but may still enrol.
    let envs = format!("{org_path}/environments");
    let held = o.s.get(&envs, &analyst).await;
    held.expect_error(403, "FORBIDDEN");
    assert_eq!(held.body["error"]["details"]["rule"], "mfa_required");
    o.s.get("/v1/auth/me", &analyst).await.expect(200);
    let sql = ["-A", "-t", "-c", "SELECT 1"];
    let (ok, _, err) = crate::gateway::psql_with(
        &o,
        "analyst@example.com",
        &analyst,
        "development",
        &sql,
        "prefer",
    )
    .await;
    assert!(!ok && err.contains("two-factor"), "{err}");
    let (secret, _) = enrol_totp(&o.s, &analyst, PASSWORD).await;
    o.s.get(&envs, &analyst).await.expect(200);
    let (ok, out, err) = crate::gateway::psql_with(
        &o,
        "analyst@example.com",
        &analyst,
        "development",
        &sql,
        "prefer",
    )
    .await;
    assert!(ok && out.trim() == "1", "{err}");
    // A sign-in with both factors passes too; the factor cannot be turned off while required.
    let signed = login_with(&o.s, "analyst@example.com", PASSWORD, &code(&secret, 1)).await;
    let token = signed["token"].as_str().unwrap();
    o.s.get(&envs, token).await.expect(200);
    let off =
        o.s.post(
            "/v1/auth/mfa/totp/disable",
            Some(token),
            json!({"password": PASSWORD, "code": "000000"}),
        )
        .await;
    off.expect_error(409, "CONFLICT");
    assert_eq!(
        off.body["error"]["details"]["rule"],
        "mfa_required_by_organization"
    );
    // The owner resets a lost device: the member is held again until they enrol anew.
    o.s.delete(&format!("{org_path}/users/{analyst_id}/mfa"), &o.token)
        .await
        .expect(204);
    let plain = o.s.login_as("analyst@example.com", PASSWORD, None).await;
    let held = o.s.get(&envs, plain["token"].as_str().unwrap()).await;
    assert_eq!(held.body["error"]["details"]["rule"], "mfa_required");
}
