//! The API contract, checked from outside: `scripts/contract` runs schemathesis against a real
//! server's `/openapi.json` — the documented examples, boundary values, random valid and
//! invalid requests, and chains through the operations' links — asserting that every answer is
//! documented (status, content type, headers, schema), that schema-invalid input is refused
//! with a 4xx, that `Allow` and 405 are right, and that nothing answers 5xx.
//!
//! The run signs in as the owner of the bootstrapped organization and gets real identifiers
//! (an environment, a member, an API key, a policy, a secret, a webhook) so that generated
//! requests reach the handlers, not only the 404 of an unknown id. The seed is fixed so a
//! failure reproduces; `ENCLAVE_CONTRACT_SEED` and `ENCLAVE_CONTRACT_EXAMPLES` widen a run.

use serde_json::json;

use crate::common::{Db, Org, OWNER_EMAIL, OWNER_PASSWORD};
use crate::gateway::test_client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_as_its_openapi_document_says() {
    if test_client("ENCLAVE_TEST_PYTHON").is_none() {
        return;
    }
    let db = Db::sqlite();
    let o = Org::start(&db).await;
    let env = o.env("development").await;
    let (user, _) =
        o.s.add_member(&o.token, &o.org, "dev@example.com", "developer")
            .await;
    let key =
        o.s.post(
            &format!("/v1/environments/{env}/api-keys"),
            Some(&o.token),
            json!({"name": "contract", "scopes": ["read_only"]}),
        )
        .await;
    key.expect(201);
    let policy =
        o.s.post(
            &format!("/v1/environments/{env}/policies"),
            Some(&o.token),
            json!({"name": "mask", "type": "column_masking",
                   "rules": [{"table": "t", "column": "c", "function": "full"}]}),
        )
        .await;
    policy.expect(201);
    o.s.post(
        &format!("/v1/environments/{env}/secrets"),
        Some(&o.token),
        json!({"key": "CONTRACT_SECRET", "value": "v"}),
    )
    .await
    .expect(201);
    let hook =
        o.s.post(
            &format!("/v1/organizations/{}/webhooks", o.org),
            Some(&o.token),
            json!({"url": "http://127.0.0.1:9/hook", "events": ["webhook.test"]}),
        )
        .await;
    hook.expect(201);

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let examples = std::env::var("ENCLAVE_CONTRACT_EXAMPLES").unwrap_or_else(|_| "8".into());
    let seed = std::env::var("ENCLAVE_CONTRACT_SEED").unwrap_or_else(|_| "18".into());
    let out = tokio::process::Command::new(root.join("scripts/contract"))
        .args([&o.s.url, OWNER_EMAIL, OWNER_PASSWORD, &o.org, &env])
        .args(["--max-examples", &examples, "--seed", &seed])
        .env("ENCLAVE_CONTRACT_USER", &user)
        .env("ENCLAVE_CONTRACT_KEY", key.body["key_id"].as_str().unwrap())
        .env(
            "ENCLAVE_CONTRACT_POLICY",
            policy.body["policy_id"].as_str().unwrap(),
        )
        .env("ENCLAVE_CONTRACT_SECRET", "CONTRACT_SECRET")
        .env(
            "ENCLAVE_CONTRACT_WEBHOOK",
            hook.body["webhook_id"].as_str().unwrap(),
        )
        .output()
        .await
        .expect("scripts/contract runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found contract failures:\n{stdout}\n{stderr}"
    );
    // It ran: operations tested, cases generated, none failed.
    assert!(stdout.contains("Tested: "), "{stdout}");
    assert!(stdout.contains(" passed"), "{stdout}");
}
