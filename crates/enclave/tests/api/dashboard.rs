//! The dashboard (`/`): Debian's chromium, driven by playwright-core, logs in, reads the
//! environments and logs out, and the page asks nothing of another origin; a page without a
//! session leads to the log-in page; a form posted without its CSRF token is refused and
//! changes nothing.

use reqwest::Method;
use serde_json::Value;

use crate::common::{Db, Org, OWNER_EMAIL, OWNER_PASSWORD};
use crate::gateway::test_client;

crate::both!(
    a_person_logs_in_reads_and_logs_out,
    forms_need_their_csrf_token,
    the_second_factor_is_asked
);

async fn a_person_logs_in_reads_and_logs_out(db: Db) {
    let o = Org::start(&db).await;
    let Some(modules) = test_client("ENCLAVE_TEST_NODE_PATH") else {
        return;
    };
    let Some(chromium) = test_client("ENCLAVE_TEST_CHROMIUM") else {
        return;
    };
    // `ENCLAVE_UPDATE_SCREENSHOTS=1` writes the screenshots docs/dashboard.md shows.
    let update = std::env::var_os("ENCLAVE_UPDATE_SCREENSHOTS").is_some() && !db.is_postgres();
    let shots = match update {
        true => concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/dashboard").to_string(),
        false => tempfile_dir(),
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/dashboard_browser.js"
    );
    let out = tokio::process::Command::new("node")
        .arg(script)
        .args([&o.s.url, OWNER_EMAIL, OWNER_PASSWORD, &shots])
        .env("NODE_PATH", modules)
        .env("CHROMIUM", chromium)
        .output()
        .await
        .expect("node is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["unauthenticated"], "/login", "{seen}");
    assert!(
        seen["wrong_password"].as_str().unwrap().contains("invalid"),
        "{seen}"
    );
    assert_eq!(seen["heading"], "Environments", "{seen}");
    assert_eq!(
        seen["slugs"],
        serde_json::json!(["development", "staging", "production"]),
        "{seen}"
    );
    assert!(
        seen["header"]
            .as_str()
            .unwrap()
            .contains(&format!("{OWNER_EMAIL} · owner")),
        "{seen}"
    );
    assert!(
        seen["env_heading"]
            .as_str()
            .unwrap()
            .starts_with("Development (development, dev, active)"),
        "{seen}"
    );
    assert!(
        seen["psql"]
            .as_str()
            .unwrap()
            .contains(&format!("dbname=development user={OWNER_EMAIL}")),
        "{seen}"
    );
    assert!(
        seen["secret"].as_str().unwrap().starts_with("ek_"),
        "{seen}"
    );
    assert_eq!(
        seen["copy_button"], "Copied",
        "the page's script ran: {seen}"
    );
    assert_eq!(seen["clipboard"], seen["secret"], "{seen}");
    assert_eq!(seen["query_with_key"], 200, "{seen}");
    assert_eq!(seen["secret_after_reload"], 0, "the secret is shown once");
    assert!(
        seen["no_scope_error"].as_str().unwrap().contains("scopes"),
        "{seen}"
    );
    assert!(
        seen["after_revoke"].as_str().unwrap().contains("revoked"),
        "{seen}"
    );
    assert_eq!(seen["query_after_revoke"], 401, "{seen}");
    assert_eq!(seen["narrow_rows"], 3, "{seen}");
    assert_eq!(seen["after_logout"], "/login", "{seen}");
    assert_eq!(
        seen["foreign"],
        serde_json::json!([]),
        "no request leaves the origin"
    );
    assert_eq!(seen["console_errors"], serde_json::json!([]), "{seen}");
    for shot in ["environments", "environment"] {
        let size = std::fs::metadata(format!("{shots}/{shot}.png"))
            .unwrap()
            .len();
        assert!(size > 1000, "{shot}");
    }
    if !update {
        std::fs::remove_dir_all(&shots).ok();
    }
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("enclave-dashboard-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}

/// The `name=value` of `name` among a response's `Set-Cookie` headers.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_string())
}

async fn forms_need_their_csrf_token(db: Db) {
    let o = Org::start(&db).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", o.s.url);
    // Pages without a session lead to the log-in page; the log-in page sets the CSRF cookie.
    for path in ["/", "/environments"] {
        let r = http.get(url(path)).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/login");
    }
    let r = http.get(url("/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self'"));
    let csrf = set_cookie(&r, "enclave_csrf").unwrap();
    let token = csrf.split_once('=').unwrap().1.to_string();
    let login = |field: Option<&str>| {
        let mut form = vec![("email", OWNER_EMAIL), ("password", OWNER_PASSWORD)];
        if let Some(f) = field {
            form.push(("csrf", f));
        }
        http.post(url("/login"))
            .header("cookie", &csrf)
            .form(&form)
            .send()
    };
    // Without the token, or with another one: refused, no session.
    for field in [None, Some("0000")] {
        let r = login(field).await.unwrap();
        assert_eq!(r.status(), 403, "{field:?}");
        assert!(set_cookie(&r, "enclave_session").is_none());
    }
    // With it: a session.
    let r = login(Some(&token)).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/environments");
    let session = set_cookie(&r, "enclave_session").unwrap();
    let access = session.split_once('=').unwrap().1.to_string();
    let cookies = format!("{csrf}; {session}");
    // Making a key without the token is refused and makes none.
    let env = o.env("development").await;
    let r = http
        .post(url(&format!("/environments/{env}/keys")))
        .header("cookie", &cookies)
        .form(&[("csrf", "wrong"), ("name", "forged"), ("scopes", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let keys =
        o.s.get(&format!("/v1/environments/{env}/api-keys"), &o.token)
            .await;
    assert!(!keys.body.to_string().contains("forged"), "{:?}", keys.body);
    // Another organization's environment, or no id at all: not found, nothing asked of the API.
    for path in [
        "/environments/env_01jzzzzzzzzzzzzzzzzzzzzzzz",
        "/environments/..%2Fv1",
    ] {
        let r = http
            .get(url(path))
            .header("cookie", &cookies)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // A role that may not manage keys is shown no key section (and the API refuses anyway).
    o.s.add_member(&o.token, &o.org, "ana@example.com", "analyst")
        .await;
    let r = http.get(url("/login")).send().await.unwrap();
    let analyst_csrf = set_cookie(&r, "enclave_csrf").unwrap();
    let analyst_token = analyst_csrf.split_once('=').unwrap().1.to_string();
    let r = http
        .post(url("/login"))
        .header("cookie", &analyst_csrf)
        .form(&[
            ("csrf", analyst_token.as_str()),
            ("email", "ana@example.com"),
            ("password", crate::common::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let analyst = set_cookie(&r, "enclave_session").unwrap();
    let page = http
        .get(url(&format!("/environments/{env}")))
        .header("cookie", format!("{analyst_csrf}; {analyst}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Connect"), "{page}");
    assert!(
        !page.contains("API keys") && !page.contains("Create key"),
        "{page}"
    );
    // Logging out without the token is refused and leaves the session alive.
    let r = http
        .post(url("/logout"))
        .header("cookie", &cookies)
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    o.s.get("/v1/auth/me", &access).await.expect(200);
    let r = http
        .request(Method::POST, url("/logout"))
        .header("cookie", &cookies)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    o.s.get("/v1/auth/me", &access).await.expect(401);
}

/// The `value` of the form field `name` in a page.
fn field<'a>(html: &'a str, name: &str) -> &'a str {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no field {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    &rest[..rest.find('"').unwrap()]
}

async fn the_second_factor_is_asked(db: Db) {
    let o = Org::start(&db).await;
    let (_, recovery) = crate::account::enrol_totp(&o.s, &o.token, OWNER_PASSWORD).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", o.s.url);
    let r = http.get(url("/login")).send().await.unwrap();
    let csrf = set_cookie(&r, "enclave_csrf").unwrap();
    let token = csrf.split_once('=').unwrap().1.to_string();
    let r = http
        .post(url("/login"))
        .header("cookie", &csrf)
        .form(&[
            ("csrf", token.as_str()),
            ("email", OWNER_EMAIL),
            ("password", OWNER_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the password alone is not enough");
    assert!(set_cookie(&r, "enclave_session").is_none());
    let page = r.text().await.unwrap();
    assert!(page.contains("Second factor"), "{page}");
    let mfa_token = field(&page, "mfa_token").to_string();
    let second = |code: String| {
        http.post(url("/login/mfa"))
            .header("cookie", &csrf)
            .form(&[
                ("csrf", token.clone()),
                ("mfa_token", mfa_token.clone()),
                ("code", code),
            ])
            .send()
    };
    // A wrong code: the form again, with the API's reason.
    let r = second("000000".into()).await.unwrap();
    assert!(set_cookie(&r, "enclave_session").is_none());
    assert!(r.text().await.unwrap().contains("role=\"alert\""));
    // A recovery code signs in.
    let r = second(recovery[0].clone()).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/environments");
    assert!(set_cookie(&r, "enclave_session").is_some());
}
