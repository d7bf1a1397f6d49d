//! The dashboard (`/`): Debian's chromium, driven by playwright-core, walks the flows people use
//! it for — log in, create, lock and delete an environment, make a key and see it once, set and
//! import secrets, run SQL, mask a column and see the mask as an analyst, promote after a dry
//! run, read and verify the audit, log out — and the page asks nothing of another origin; a
//! page without a session leads to the log-in page; a form posted without its CSRF token is
//! refused and changes nothing.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{Db, Org, OWNER_EMAIL, OWNER_PASSWORD};
use crate::gateway::test_client;
use crate::receiver::Receiver;

crate::both!(
    a_person_logs_in_reads_and_logs_out,
    the_organization_pages_work,
    forms_need_their_csrf_token,
    the_second_factor_is_asked
);

async fn a_person_logs_in_reads_and_logs_out(db: Db) {
    let o = Org::start(&db).await;
    o.s.add_member(&o.token, &o.org, ANALYST, "analyst").await;
    let (shots, update) = screenshots(&db);
    let args = [
        o.s.url.as_str(),
        OWNER_EMAIL,
        OWNER_PASSWORD,
        ANALYST,
        crate::common::PASSWORD,
        &shots,
    ];
    let Some(seen) = browse("dashboard_browser.js", &args).await else {
        return;
    };
    let text = |field: &str| seen_text(&seen, field);
    let has = |field: &str, part: &str| seen_has(&seen, field, part);
    // Signing in.
    assert_eq!(seen["unauthenticated"], "/login", "{seen}");
    has("wrong_password", "invalid");
    assert_eq!(seen["heading"], "Environments", "{seen}");
    let slugs = json!(["development", "staging", "production"]);
    assert_eq!(seen["slugs"], slugs, "{seen}");
    has("header", &format!("{OWNER_EMAIL} · owner"));
    // An environment created with its fields, locked, refused while locked, deleted after
    // its impact preview; the order changed and restored.
    has("created", "created");
    has("created_heading", "Preview 7 (preview-7, custom, active)");
    has("created_timeout", "5000 ms");
    has("locked_heading", "locked");
    has("suspend_while_locked", "locked");
    has("impact", "0 API keys");
    assert_eq!(seen["after_delete"], slugs, "{seen}");
    let moved = json!(["development", "production", "staging"]);
    assert_eq!(seen["moved"], moved, "{seen}");
    // Keys.
    has("env_heading", "Development (development, dev, active)");
    has("psql", &format!("dbname=development user={OWNER_EMAIL}"));
    assert!(text("secret").starts_with("ek_"), "{seen}");
    assert_eq!(seen["copy_button"], "Copied", "the page's script ran");
    assert_eq!(seen["clipboard"], seen["secret"], "{seen}");
    assert_eq!(seen["query_with_key"], 200, "{seen}");
    assert_eq!(seen["secret_after_reload"], 0, "the secret is shown once");
    has("no_scope_error", "scopes");
    has("after_revoke", "revoked");
    assert_eq!(seen["query_after_revoke"], 401, "{seen}");
    // Secrets: hidden until revealed; the import previewed, then done; the export.
    has("secret_hidden", "DB_URL");
    assert!(!text("secret_hidden").contains("db.internal"), "{seen}");
    has("secret_revealed", "postgres://db.internal/app");
    has("import_preview", "nothing changed yet");
    has("import_preview", "New API_HOST");
    has("import_preview", "DB_URL");
    has("import_done", "Import done");
    has("export", "API_HOST=");
    has("export", "DB_URL=");
    has("export_disposition", "development.env");
    // The console, the mask and what the analyst sees.
    has("create_table", "CREATE TABLE");
    has("insert", "2 rows");
    has("owner_select", "2 rows");
    has("owner_select", "credits");
    assert_eq!(
        seen["owner_cells"],
        json!(["1", "ana@example.com", "2", "bo@example.com"]),
        "{seen}"
    );
    let types = text("column_types").to_lowercase();
    assert!(types.contains("id int4"), "{seen}");
    assert!(
        types.contains("email text") || types.contains("email varchar"),
        "{seen}"
    );
    has("syntax_error", "42601");
    has("policies", "customers.email → partial (4)");
    has("edited", "version 2");
    has("bad_edit", "rules");
    has("restored", "customers.email → partial (4)");
    has("restored", "v3");
    has("explained", "customers.email: partial");
    has("bad_filter", "filter");
    assert_eq!(
        seen["analyst_cells"],
        json!(["1", "***.com", "2", "***.com"]),
        "{seen}"
    );
    has("analyst_write", "42501");
    assert_eq!(seen["analyst_policy_forms"], 0, "{seen}");
    assert_eq!(seen["analyst_policy_buttons"], 0, "{seen}");
    assert_eq!(seen["analyst_key_forms"], 0, "{seen}");
    assert_eq!(seen["analyst_lifecycle"], 0, "{seen}");
    // Promotion: the dry run names the changes; the real one is in the history.
    has("dry_run", "mask-email");
    has("dry_run", "created");
    has("history", "Development");
    has("history", "Staging");
    has("history", "mask-email");
    let staging = o.env("staging").await;
    let promoted =
        o.s.get(&format!("/v1/environments/{staging}/policies"), &o.token)
            .await;
    assert!(promoted.body.to_string().contains("mask-email"));
    // The audit, filtered and verified.
    let actions = seen["audit_actions"].as_array().unwrap();
    assert!(!actions.is_empty(), "{seen}");
    assert!(actions.iter().all(|a| a == "policy.created"), "{seen}");
    has("verdict", "Chain intact");
    has("query_verdict", "Chain intact");
    assert!(seen["query_audit_rows"].as_u64().unwrap() >= 4, "{seen}");
    // A narrow window; logging out; nothing from another origin; a clean console.
    assert_eq!(seen["narrow_rows"], 3, "{seen}");
    assert_eq!(seen["after_logout"], "/login", "{seen}");
    assert_eq!(seen["foreign"], json!([]), "no request leaves the origin");
    assert_eq!(seen["console_errors"], json!([]), "{seen}");
    screenshots_taken(&shots, &SCREENSHOTS, update);
}

const ANALYST: &str = "ana@example.com";

/// The pages docs/dashboard.md shows, as the browser test saw them.
const SCREENSHOTS: [&str; 8] = [
    "environments",
    "environment",
    "keys",
    "secrets",
    "policies",
    "promote",
    "audit",
    "console",
];

/// Runs one of the browser scripts with `args` after the base URL; what it saw.
async fn browse(script: &str, args: &[&str]) -> Option<Value> {
    let modules = test_client("ENCLAVE_TEST_NODE_PATH")?;
    let chromium = test_client("ENCLAVE_TEST_CHROMIUM")?;
    let script = format!("{}/tests/api/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
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
    Some(serde_json::from_str(stdout.trim()).unwrap())
}

/// A text field of what a browser run saw.
fn seen_text(seen: &Value, field: &str) -> String {
    seen[field].as_str().unwrap_or_default().to_string()
}

#[track_caller]
fn seen_has(seen: &Value, field: &str, part: &str) {
    let text = seen_text(seen, field);
    assert!(text.contains(part), "{field} lacks {part:?}: {seen}")
}

/// Where screenshots go: docs/dashboard with `ENCLAVE_UPDATE_SCREENSHOTS=1` (SQLite runs
/// only), else a directory of the test's own; and whether it is docs/dashboard.
fn screenshots(db: &Db) -> (String, bool) {
    let update = std::env::var_os("ENCLAVE_UPDATE_SCREENSHOTS").is_some() && !db.is_postgres();
    match update {
        true => (
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/dashboard").to_string(),
            true,
        ),
        false => (tempfile_dir(), false),
    }
}

fn screenshots_taken(shots: &str, names: &[&str], update: bool) {
    for shot in names {
        let size = std::fs::metadata(format!("{shots}/{shot}.png"))
            .unwrap()
            .len();
        assert!(size > 1000, "{shot}");
    }
    if !update {
        std::fs::remove_dir_all(shots).ok();
    }
}

async fn the_organization_pages_work(db: Db) {
    let o = Org::start(&db).await;
    o.s.add_member(&o.token, &o.org, ANALYST, "analyst").await;
    // An agent seen in development: a statement sent with its name.
    let dev = o.env("development").await;
    let key = o.query_key(&dev, &["query:read"], "analyst").await;
    let r =
        o.s.raw(
            o.s.request(Method::POST, "/v1/query", None)
                .header("x-api-key", &key)
                .header("x-agent-id", "support-bot")
                .header("x-agent-framework", "langchain")
                .json(&json!({"sql": "SELECT 1"})),
        )
        .await;
    r.expect(200);
    let rx = Receiver::start().await;
    let (shots, update) = screenshots(&db);
    let args = [
        o.s.url.as_str(),
        OWNER_EMAIL,
        OWNER_PASSWORD,
        ANALYST,
        crate::common::PASSWORD,
        &rx.url(),
        &shots,
    ];
    let Some(seen) = browse("dashboard_org_browser.js", &args).await else {
        return;
    };
    let text = |field: &str| seen_text(&seen, field);
    let has = |field: &str, part: &str| seen_has(&seen, field, part);
    // Members: the invitation's link once, the invitee in with their role.
    has("invitation_link", "/invite#");
    has("invited_row", "invited");
    assert_eq!(seen["link_after_reload"], 0, "the link is shown once");
    has("attributes_row", "department=sales");
    assert_eq!(seen["token_filled"], true, "{seen}");
    has("invitee_header", "new@example.com · developer");
    // Webhooks: a secret once; the test event delivered, signed with it.
    assert!(text("signing_secret").starts_with("whsec_"), "{seen}");
    has("deliveries", "webhook.test");
    has("deliveries", "succeeded");
    let got = rx
        .wait_for("the test event", |got| {
            !Receiver::of_type(got, "webhook.test").is_empty()
        })
        .await;
    let test = &Receiver::of_type(&got, "webhook.test")[0];
    assert!(crate::receiver::standard_signature_ok(
        test,
        &text("signing_secret")
    ));
    // Usage.
    has("usage_summary", "credits");
    assert!(seen["usage_bars"].as_u64().unwrap() >= 28, "{seen}");
    has("usage_environments", "Development");
    // Just-in-time access, and the page following what the API says the analyst may do.
    assert_eq!(seen["reveal_before"], 0, "{seen}");
    has("asked", "pending");
    has("asked", "fix the monthly report");
    assert_eq!(seen["analyst_decides"], 0, "{seen}");
    has("approved", "approved");
    assert_eq!(seen["reveal_after"], 1, "{seen}");
    assert_eq!(seen["analyst_invite_forms"], 0, "{seen}");
    // The analyst's header offers only the pages the API lets them use; a page asked for by
    // its address shows the API's refusal.
    assert_eq!(seen["analyst_nav"], "Environments", "{seen}");
    has("analyst_members", "may not");
    // Agents.
    has("agents", "support-bot");
    has("agents", "langchain");
    has("granted", "May query on orders");
    has("granted", "≤ 10 rows a statement");
    let grant =
        o.s.get(
            &format!("/v1/environments/{dev}/agents/support-bot/capabilities"),
            &o.token,
        )
        .await;
    grant.expect(200);
    assert_eq!(grant.body["max_rows_per_query"], 10);
    assert_eq!(seen["foreign"], json!([]), "no request leaves the origin");
    assert_eq!(seen["console_errors"], json!([]), "{seen}");
    screenshots_taken(&shots, &["members", "webhooks", "usage", "access"], update);
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
        .get(url(&format!("/environments/{env}/keys")))
        .header("cookie", format!("{analyst_csrf}; {analyst}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("API keys: the analyst role may not"),
        "{page}"
    );
    assert!(!page.contains("Create key"), "{page}");
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
