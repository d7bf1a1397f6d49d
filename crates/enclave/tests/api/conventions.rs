use reqwest::Method;
use serde_json::json;

use crate::both;
use crate::common::{Db, Server};

both!(
    malformed_and_oversize_bodies,
    idempotency_key_replay,
    rate_limits_per_identity
);

async fn malformed_and_oversize_bodies(db: Db) {
    let s = db.start().await;
    let t = s.owner_token().await;
    let post_raw = |body: String, ct: &str| {
        s.request(Method::POST, "/v1/organizations", Some(&t))
            .header("content-type", ct)
            .body(body)
    };

    let r = s
        .raw(post_raw("{\"name\": ".into(), "application/json"))
        .await;
    r.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(
        (r.body["error"]["details"]["field"].as_str(), r.error().1),
        (Some("body"), "json")
    );
    let r = s
        .raw(post_raw(
            "name=acme".into(),
            "application/x-www-form-urlencoded",
        ))
        .await;
    r.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(r.error().1, "json");

    let huge = json!({"name": "x", "slug": "big", "billing_email": "a@b.io", "settings": {"blob": "x".repeat(100_000)}}).to_string();
    let r = s.raw(post_raw(huge.clone(), "application/json")).await;
    r.expect_error(413, "VALIDATION_ERROR");
    assert_eq!(r.error().1, "max_bytes");
    // Without a Content-Length (chunked), the limit holds all the same.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(huge.into_bytes())]);
    let r = s
        .raw(
            s.request(Method::POST, "/v1/organizations", Some(&t))
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await;
    r.expect_error(413, "VALIDATION_ERROR");
    let list = s.get("/v1/organizations", &t).await;
    assert_eq!(list.body["pagination"]["total"], 1, "nothing was created");
}

async fn idempotency_key_replay(db: Db) {
    let s = db.start().await;
    let t = s.owner_token().await;
    let create = |key: &str, slug: &str| {
        s.request(Method::POST, "/v1/organizations", Some(&t))
            .header("idempotency-key", key)
            .json(&json!({"name": "Acme", "slug": slug, "billing_email": "a@b.io"}))
    };
    let first = s.raw(create("key-1", "acme")).await;
    first.expect(201);
    assert_eq!(first.header("idempotency-replayed"), Some("false"));
    let again = s.raw(create("key-1", "acme")).await;
    again.expect(201);
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    assert_eq!(
        again.body, first.body,
        "the stored response, not a second organization"
    );
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(again.header("location"), first.header("location"));

    let other = s.raw(create("key-1", "other")).await;
    other.expect(422);
    assert_eq!(
        other.error(),
        ("VALIDATION_ERROR", "reused_with_different_request")
    );
    // Errors are replayed as well (a 4xx is a final answer).
    let dup = s.raw(create("key-2", "acme")).await;
    dup.expect_error(409, "CONFLICT");
    s.raw(create("key-2", "acme"))
        .await
        .expect_error(409, "CONFLICT");
    // The key is the caller's own: another user's same key is a different request.
    let eve_token = &s.signup("eve@example.com", "eve-password-1234").await;
    let theirs = s
        .raw(
            s.request(Method::POST, "/v1/organizations", Some(eve_token))
                .header("idempotency-key", "key-1")
                .json(&json!({"name": "Eve", "slug": "eve-org", "billing_email": "e@b.io"})),
        )
        .await;
    theirs.expect(201);
    assert_eq!(theirs.header("idempotency-replayed"), Some("false"));
    let bad = s.raw(create(&"k".repeat(300), "acme3")).await;
    bad.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(
        s.get("/v1/organizations", &t).await.body["pagination"]["total"],
        2,
        "bootstrap + acme only"
    );
}

async fn rate_limits_per_identity(db: Db) {
    let mut args = db.args();
    args.rate_limits = Some("free=60/3".into());
    args.anonymous_rate_limit = Some("60/2".into());
    let s = Server::start(args).await;
    let t = s.owner_token().await;
    let other = s.signup("o@example.com", "other-password-123").await;
    let mut statuses = vec![];
    for _ in 0..4 {
        let r = s.get("/v1/auth/me", &t).await;
        assert_eq!(r.header("x-ratelimit-limit"), Some("60"));
        assert!(
            r.header("x-ratelimit-remaining").is_some() && r.header("x-ratelimit-reset").is_some()
        );
        statuses.push(r.status);
        if r.status == 429 {
            r.expect_error(429, "RATE_LIMITED");
            assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
            assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
            assert_eq!(
                r.body["error"]["details"]["setting"],
                "rate_limits (--rate-limits)"
            );
        }
    }
    assert_eq!(statuses, vec![200, 200, 200, 429], "burst of 3");
    // Another identity has its own bucket.
    s.get("/v1/auth/me", &other).await.expect(200);
    // Probes are never limited.
    for _ in 0..5 {
        s.raw(s.client.get(format!("{}/health", s.url)))
            .await
            .expect(200);
    }
}
