//! Webhooks: CRUD and the secret shown once, deliveries a real local receiver verifies with
//! both signature schemes, retries with backoff, auto-disable, redelivery, durability across
//! a SIGKILL, several nodes sharing one outbox, and the SSRF rules.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::both;
use crate::common::{spawn_binary, Db, Server};
use crate::receiver::{enclave_signature_ok, standard_signature_ok, Receiver};

/// The binary's settings for the SIGKILL test: loopback receivers, quick retries, room to create.
const NODE_SETTINGS: &[(&str, &str)] = &[
    ("ENCLAVE_WEBHOOK_ALLOW_PRIVATE", "true"),
    ("ENCLAVE_WEBHOOK_RETRY_BASE_MS", "200"),
    ("ENCLAVE_ENVIRONMENT_QUOTAS", "free=unlimited"),
];

both!(
    signed_events_reach_a_real_receiver,
    crud_secret_once_and_permissions,
    failed_deliveries_are_retried_then_disable_the_endpoint,
    rotated_secret_keeps_signing_for_a_day,
    ssrf_rules_refuse_private_targets,
    pending_deliveries_survive_a_kill,
);

async fn hooks_path(s: &Server) -> String {
    format!(
        "/v1/organizations/{}/webhooks",
        s.bootstrap_org.clone().unwrap()
    )
}

/// Creates a webhook to `url` for `events`; returns (webhook_id, signing_secret).
async fn create_hook(s: &Server, token: &str, url: &str, events: Value) -> (String, String) {
    let r = s
        .post(
            &hooks_path(s).await,
            Some(token),
            json!({"url": url, "events": events}),
        )
        .await;
    r.expect(201);
    (
        r.body["webhook_id"].as_str().unwrap().to_string(),
        r.body["signing_secret"].as_str().unwrap().to_string(),
    )
}

async fn signed_events_reach_a_real_receiver(db: Db) {
    let s = Server::start(crate::audit::walk_args(&db)).await;
    let token = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let rx = Receiver::start().await;
    let (hook_id, secret) = create_hook(
        &s,
        &token,
        &rx.url(),
        json!(["environment.created", "key.created", "key.revoked"]),
    )
    .await;
    assert!(secret.starts_with("whsec_"));

    let env = s
        .post(
            &format!("/v1/organizations/{org}/environments"),
            Some(&token),
            json!({"name": "Preview 1"}),
        )
        .await;
    env.expect(201);
    let env_id = env.body["env_id"].as_str().unwrap().to_string();
    let key = s
        .post(
            &format!("/v1/environments/{env_id}/api-keys"),
            Some(&token),
            json!({"name": "ci", "scopes": ["read_only"]}),
        )
        .await;
    key.expect(201);
    let plaintext = key.body["key"].as_str().unwrap().to_string();

    let got = rx
        .wait_for("environment.created and key.created", |g| {
            !Receiver::of_type(g, "environment.created").is_empty()
                && !Receiver::of_type(g, "key.created").is_empty()
        })
        .await;
    for r in &got {
        // Both schemes verify with the secret shown at creation.
        assert!(
            standard_signature_ok(r, &secret),
            "standard webhooks signature"
        );
        assert!(enclave_signature_ok(r, &secret), "X-Enclave-Signature");
        let body = r.json();
        assert_eq!(r.header("webhook-id"), body["id"]);
        assert_eq!(r.header("x-enclave-event-id"), body["id"]);
        assert_eq!(r.header("x-enclave-event-type"), body["type"]);
        assert_eq!(r.header("x-enclave-delivery-attempt"), "1");
        assert_eq!(r.header("content-type"), "application/json");
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
        assert_eq!(body["org_id"], org.as_str());
        assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
        // Nothing secret travels in an event.
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains(&plaintext) && !text.contains("argon2") && !text.contains("whsec_"));
    }
    let created = &Receiver::of_type(&got, "environment.created")[0].json();
    assert_eq!(created["env_id"], env_id.as_str());
    assert_eq!(created["data"]["slug"], "preview-1");
    let key_event = &Receiver::of_type(&got, "key.created")[0].json();
    assert_eq!(key_event["data"]["key_id"], key.body["key_id"]);
    // Not subscribed: environment.updated never arrives.
    s.patch(
        &format!("/v1/environments/{env_id}"),
        &token,
        json!({"description": "x"}),
    )
    .await
    .expect(200);
    // A test event on request.
    let t = s
        .post(
            &format!("{}/{hook_id}/test", hooks_path(&s).await),
            Some(&token),
            json!({}),
        )
        .await;
    t.expect(202);
    assert_eq!(t.body["event_type"], "webhook.test");
    rx.wait_for("webhook.test", |g| {
        !Receiver::of_type(g, "webhook.test").is_empty()
    })
    .await;
    assert!(Receiver::of_type(&rx.received(), "environment.updated").is_empty());

    // The delivery log: each delivery with its attempts (recorded just after the answer).
    let log_path = format!("{}/{hook_id}/deliveries", hooks_path(&s).await);
    let mut log = s.get(&log_path, &token).await;
    for _ in 0..100 {
        let data = log.body["data"].as_array().unwrap();
        if data.iter().all(|d| d["status"] == "succeeded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        log = s.get(&log_path, &token).await;
    }
    log.expect(200);
    let deliveries = log.body["data"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3, "{}", log.body);
    assert_eq!(deliveries[0]["event_type"], "webhook.test", "newest first");
    for d in deliveries {
        assert_eq!(d["status"], "succeeded");
        assert_eq!(d["attempts"][0]["attempt"], 1);
        assert_eq!(d["attempts"][0]["status_code"], 200);
        assert!(d["attempts"][0]["latency_ms"].as_i64().unwrap() >= 0);
    }
    // Redeliver sends the same event once more as attempt 2.
    let dlv = deliveries[2]["delivery_id"].as_str().unwrap();
    let event_id = deliveries[2]["event_id"].as_str().unwrap().to_string();
    s.post(
        &format!(
            "{}/{hook_id}/deliveries/{dlv}/redeliver",
            hooks_path(&s).await
        ),
        Some(&token),
        json!({}),
    )
    .await
    .expect(202);
    let got = rx
        .wait_for("the redelivery", |g| {
            g.iter()
                .filter(|r| r.header("webhook-id") == event_id)
                .count()
                == 2
        })
        .await;
    let again: Vec<_> = got
        .iter()
        .filter(|r| r.header("webhook-id") == event_id)
        .collect();
    assert_eq!(again[1].header("x-enclave-delivery-attempt"), "2");
    assert_eq!(
        again[0].body, again[1].body,
        "the same event, byte for byte"
    );
    s.post(
        &format!(
            "{}/{hook_id}/deliveries/dlv_00000000000000000000000000/redeliver",
            hooks_path(&s).await
        ),
        Some(&token),
        json!({}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
}

async fn crud_secret_once_and_permissions(db: Db) {
    let s = db.start().await;
    let token = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let path = hooks_path(&s).await;
    let rx = Receiver::start().await;
    let (id, _) = create_hook(&s, &token, &rx.url(), json!(["*"])).await;
    let one = s.get(&format!("{path}/{id}"), &token).await;
    one.expect(200);
    assert!(
        one.body.get("signing_secret").is_none(),
        "the secret is shown only once"
    );
    assert_eq!(one.body["events"], json!(["*"]));
    assert_eq!(one.body["status"], "active");
    let list = s.get(&path, &token).await;
    list.expect(200);
    assert_eq!(list.body["pagination"]["total"], 1);
    assert!(!list.body.to_string().contains("whsec_"));

    // Validation names the field and rule, and changes nothing.
    for (body, field, rule) in [
        (
            json!({"url": rx.url(), "events": []}),
            "events",
            "non_empty",
        ),
        (
            json!({"url": rx.url(), "events": ["nope.event"]}),
            "events[0]",
            "known_event",
        ),
        (json!({"url": "not a url", "events": ["*"]}), "url", "url"),
        (
            json!({"url": "ftp://example.com/x", "events": ["*"]}),
            "url",
            "https",
        ),
        (
            json!({"url": rx.url(), "events": ["*"], "description": "x".repeat(1025)}),
            "description",
            "max_length",
        ),
    ] {
        let r = s.post(&path, Some(&token), body).await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["field"], field, "{}", r.body);
        assert_eq!(r.body["error"]["details"]["rule"], rule, "{}", r.body);
    }
    let r = s.post(&path, Some(&token), json!({"url": rx.url()})).await;
    r.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(s.get(&path, &token).await.body["pagination"]["total"], 1);

    // PATCH with If-Match; disabling and re-enabling.
    let etag = one.header("etag").unwrap().to_string();
    let patch_if = |body: Value| {
        s.request(
            reqwest::Method::PATCH,
            &format!("{path}/{id}"),
            Some(&token),
        )
        .header("if-match", &etag)
        .json(&body)
    };
    let r = s
        .raw(patch_if(
            json!({"events": ["key.created", "key.revoked"], "status": "disabled"}),
        ))
        .await;
    r.expect(200);
    assert_eq!(r.body["status"], "disabled");
    assert_eq!(r.body["disabled_reason"], "disabled by a user");
    let stale = s.raw(patch_if(json!({"description": "late"}))).await;
    stale.expect_error(412, "PRECONDITION_FAILED");
    s.post(&format!("{path}/{id}/test"), Some(&token), json!({}))
        .await
        .expect_error(409, "CONFLICT");
    let r = s
        .patch(&format!("{path}/{id}"), &token, json!({"status": "active"}))
        .await;
    r.expect(200);
    assert!(r.body["disabled_reason"].is_null());

    // Only owner and admin manage webhooks; other organizations see nothing.
    let (_, dev) = s
        .add_member(&token, &org, "dev@example.com", "developer")
        .await;
    let (_, auditor) = s
        .add_member(&token, &org, "aud@example.com", "auditor")
        .await;
    for t in [&dev, &auditor] {
        s.get(&path, t).await.expect_error(403, "FORBIDDEN");
        s.post(&path, Some(t), json!({"url": rx.url(), "events": ["*"]}))
            .await
            .expect_error(403, "FORBIDDEN");
        s.delete(&format!("{path}/{id}"), t)
            .await
            .expect_error(403, "FORBIDDEN");
    }
    let other = s
        .post(
            "/v1/organizations",
            Some(&token),
            json!({"name": "Other", "slug": "other-org", "billing_email": "b@example.com", "default_environments": false}),
        )
        .await;
    other.expect(201);
    let other_org = other.body["org_id"].as_str().unwrap();
    s.get(
        &format!("/v1/organizations/{other_org}/webhooks/{id}"),
        &token,
    )
    .await
    .expect_error(404, "NOT_FOUND");
    s.get(&format!("{path}/wh_nope"), &token)
        .await
        .expect_error(404, "NOT_FOUND");

    s.delete(&format!("{path}/{id}"), &token).await.expect(204);
    s.get(&format!("{path}/{id}"), &token)
        .await
        .expect_error(404, "NOT_FOUND");
}

async fn failed_deliveries_are_retried_then_disable_the_endpoint(db: Db) {
    let mut args = db.args();
    args.webhook_max_attempts = Some(3);
    args.webhook_disable_after = Some(4);
    let s = Server::start(args).await;
    let token = s.owner_token().await;
    let rx = Receiver::start().await;
    let (id, _) = create_hook(
        &s,
        &token,
        &rx.url(),
        json!(["webhook.test", "environment.updated"]),
    )
    .await;
    let path = format!("{}/{id}", hooks_path(&s).await);

    // 500 then 200: attempt 2 succeeds after a backoff.
    rx.answer(&[500]);
    s.post(&format!("{path}/test"), Some(&token), json!({}))
        .await
        .expect(202);
    let got = rx.wait_for("a retry", |g| g.len() >= 2).await;
    assert_eq!(got[0].header("x-enclave-delivery-attempt"), "1");
    assert_eq!(got[1].header("x-enclave-delivery-attempt"), "2");
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    // The receiver has answered; the worker records the attempt a moment later.
    let mut log = s.get(&format!("{path}/deliveries"), &token).await;
    for _ in 0..100 {
        if log.body["data"][0]["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        log = s.get(&format!("{path}/deliveries"), &token).await;
    }
    let d = &log.body["data"][0];
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["attempt_count"], 2);
    assert_eq!(d["attempts"][0]["status_code"], 500);
    assert!(d["attempts"][0]["error"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
    assert_eq!(d["attempts"][1]["status_code"], 200);
    assert_eq!(s.get(&path, &token).await.body["consecutive_failures"], 0);

    // Always failing: 3 attempts, then `failed`; 4 failures in a row disable the endpoint.
    rx.answer(&[503; 10]);
    s.post(&format!("{path}/test"), Some(&token), json!({}))
        .await
        .expect(202);
    s.post(&format!("{path}/test"), Some(&token), json!({}))
        .await
        .expect(202);
    for _ in 0..200 {
        if s.get(&path, &token).await.body["status"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hook = s.get(&path, &token).await;
    assert_eq!(hook.body["status"], "disabled", "{}", hook.body);
    assert!(hook.body["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("consecutive failed"));
    let audit = s
        .get(
            &format!(
                "/v1/organizations/{}/audit/iam?action=webhook.disabled",
                s.bootstrap_org.clone().unwrap()
            ),
            &token,
        )
        .await;
    audit.expect(200);
    assert_eq!(audit.body["data"][0]["actor_type"], "system");
    assert_eq!(audit.body["data"][0]["resource_id"], id.as_str());
    // A disabled endpoint is not sent anything, even for events it subscribed to.
    let before = rx.received().len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rx.received().len(), before);
}

async fn rotated_secret_keeps_signing_for_a_day(db: Db) {
    let s = db.start().await;
    let token = s.owner_token().await;
    let rx = Receiver::start().await;
    let (id, old) = create_hook(&s, &token, &rx.url(), json!(["webhook.test"])).await;
    let path = format!("{}/{id}", hooks_path(&s).await);
    let r = s
        .post(&format!("{path}/rotate-secret"), Some(&token), json!({}))
        .await;
    r.expect(200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let new = r.body["signing_secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let until = chrono::DateTime::parse_from_rfc3339(
        r.body["previous_secret_expires_at"].as_str().unwrap(),
    )
    .unwrap();
    let hours =
        (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{hours}");
    s.post(&format!("{path}/test"), Some(&token), json!({}))
        .await
        .expect(202);
    let got = rx.wait_for("a delivery", |g| !g.is_empty()).await;
    for secret in [&old, &new] {
        assert!(standard_signature_ok(&got[0], secret));
        assert!(enclave_signature_ok(&got[0], secret));
    }
    assert!(!standard_signature_ok(
        &got[0],
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    ));
}

async fn ssrf_rules_refuse_private_targets(db: Db) {
    let mut args = db.args();
    args.webhook_allow_private = Some(false);
    let s = Server::start(args).await;
    let token = s.owner_token().await;
    let path = hooks_path(&s).await;
    for (url, rule) in [
        ("http://hooks.example.com/x", "https"),
        ("https://127.0.0.1/hook", "public_address"),
        ("https://10.0.0.8/hook", "public_address"),
        ("https://192.168.1.10:8443/hook", "public_address"),
        ("https://169.254.169.254/latest/meta-data", "public_address"),
        ("https://[::1]/hook", "public_address"),
        ("https://[::ffff:10.0.0.1]/hook", "public_address"),
        ("https://localhost/hook", "public_address"),
        ("https://user:pw@hooks.example.com/", "no_credentials"),
    ] {
        let r = s
            .post(&path, Some(&token), json!({"url": url, "events": ["*"]}))
            .await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["field"], "url");
        assert_eq!(
            r.body["error"]["details"]["rule"], rule,
            "{url}: {}",
            r.body
        );
    }
    assert_eq!(s.get(&path, &token).await.body["pagination"]["total"], 0);
}

/// The real binary, SIGKILLed with a delivery in the outbox, delivers it after a restart.
async fn pending_deliveries_survive_a_kill(db: Db) {
    // A port nothing listens on yet: the first attempt (if the worker gets to it) is refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hook_url = format!("http://127.0.0.1:{port}/hook");
    let mut child = spawn_binary(&db, NODE_SETTINGS).await;
    let url = child.1.clone();
    let s = Server::attach(&url);
    let token = s.owner_token().await;
    let org = s.get("/v1/auth/me", &token).await.body["org"]["org_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .post(
            &format!("/v1/organizations/{org}/webhooks"),
            Some(&token),
            json!({"url": hook_url, "events": ["environment.created"]}),
        )
        .await;
    r.expect(201);
    let env = s
        .post(
            &format!("/v1/organizations/{org}/environments"),
            Some(&token),
            json!({"name": "Queued"}),
        )
        .await;
    env.expect(201);
    child.0.start_kill().unwrap(); // SIGKILL
    child.0.wait().await.unwrap();

    let rx = Receiver::start_on(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let child = spawn_binary(&db, NODE_SETTINGS).await;
    let got = rx
        .wait_for("the delivery queued before the kill", |g| !g.is_empty())
        .await;
    let event = got[0].json();
    assert_eq!(event["type"], "environment.created");
    assert_eq!(event["env_id"], env.body["env_id"]);
    // Delivered once: no duplicate follows.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.received().len(), 1);
    drop(child);
}

/// Two nodes on one PostgreSQL database share the outbox: every event reaches the receiver
/// exactly once, though both workers poll it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_send_an_attempt_twice() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let a = db.start().await;
    let b = Server::start(db.args()).await;
    let token = a.owner_token().await;
    let rx = Receiver::start().await;
    let (_, _) = create_hook(
        &a,
        &token,
        &rx.url(),
        json!(["webhook.test", "environment.updated"]),
    )
    .await;
    let org = a.bootstrap_org.clone().unwrap();
    let envs = a
        .get(&format!("/v1/organizations/{org}/environments"), &token)
        .await;
    let env_id = envs.body["data"][0]["env_id"].as_str().unwrap().to_string();
    // 30 events, written through both nodes.
    for i in 0..30 {
        let node = if i % 2 == 0 { &a } else { &b };
        node.patch(
            &format!("/v1/environments/{env_id}"),
            &token,
            json!({"description": format!("rev {i}")}),
        )
        .await
        .expect(200);
    }
    let got = rx.wait_for("30 deliveries", |g| g.len() >= 30).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = if rx.received().len() > got.len() {
        rx.received()
    } else {
        got
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &got {
        *seen.entry(r.header("webhook-id").to_string()).or_default() += 1;
        assert_eq!(r.header("x-enclave-delivery-attempt"), "1");
    }
    assert_eq!(seen.len(), 30);
    assert!(
        seen.values().all(|n| *n == 1),
        "an event was sent twice: {seen:?}"
    );
}
