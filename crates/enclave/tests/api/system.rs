use serde_json::Value;

use crate::both;
use crate::common::Db;

both!(probes_metrics_and_openapi);

async fn probes_metrics_and_openapi(db: Db) {
    let s = db.start().await;
    let health = s.raw(s.client.get(format!("{}/health", s.url))).await;
    health.expect(200);
    assert!(health.header("x-request-id").unwrap().starts_with("req_"));
    assert!(
        health.header("x-ratelimit-limit").is_none(),
        "probes are not rate limited"
    );

    let ready = s.raw(s.client.get(format!("{}/ready", s.url))).await;
    ready.expect(200);
    assert_eq!(
        ready.body["storage"],
        if db.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    );

    // A sane client request id is kept; a hostile one is replaced.
    let echoed = s
        .raw(
            s.client
                .get(format!("{}/health", s.url))
                .header("x-request-id", "trace-42"),
        )
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("trace-42"));
    let replaced = s
        .raw(
            s.client
                .get(format!("{}/health", s.url))
                .header("x-request-id", "a b\"c"),
        )
        .await;
    assert!(replaced.header("x-request-id").unwrap().starts_with("req_"));

    let metrics = s.raw(s.client.get(format!("{}/metrics", s.url))).await;
    metrics.expect(200);
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains(
            "enclave_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(text.contains("enclave_http_request_duration_seconds_bucket"));

    let doc = s.raw(s.client.get(format!("{}/openapi.json", s.url))).await;
    doc.expect(200);
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/v1/auth/login",
        "/v1/auth/me",
        "/v1/organizations/{org_id}",
        "/v1/organizations/{org_id}/users/{user_id}/role",
        "/v1/organizations/{org_id}/environments",
        "/v1/organizations/{org_id}/environments/reorder",
        "/v1/organizations/{org_id}/environments/{slug}",
        "/v1/environments/{env_id}",
        "/v1/environments/{env_id}/suspend",
        "/v1/environments/{env_id}/resume",
        "/v1/environments/{env_id}/promote",
        "/v1/environments/{env_id}/promotions",
        "/v1/environments/{env_id}/clone",
        "/v1/environments/{env_id}/diff",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc.body["components"]["schemas"]["Organization"].is_object());

    let missing = s.raw(s.client.get(format!("{}/v1/nope", s.url))).await;
    missing.expect_error(404, "NOT_FOUND");
    let wrong_method = s
        .raw(s.client.delete(format!("{}/v1/auth/login", s.url)))
        .await;
    wrong_method.expect_error(405, "VALIDATION_ERROR");
    let _: Value = missing.body;
}
