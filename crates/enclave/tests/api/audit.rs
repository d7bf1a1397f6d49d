//! The IAM audit trail: every mutating operation of the OpenAPI document leaves exactly one
//! entry; the chain holds under concurrent writers; tampering in the database is named by
//! verify; an edited export fails the offline `enclave audit verify`; filters, permissions,
//! redaction.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::{Db, Server, OWNER_EMAIL, OWNER_PASSWORD, PASSWORD};
use crate::receiver::Receiver;

both!(
    every_mutating_operation_leaves_one_entry,
    chain_holds_under_concurrent_writers,
    tampering_is_found_and_named,
    export_verifies_offline_and_edits_do_not,
    listing_filters_permissions_and_redaction,
);

/// Operations that change nothing in any organization's trail, and why.
const EXEMPT: &[(&str, &str)] = &[
    (
        "POST /v1/auth/signup",
        "creates an account that belongs to no organization yet: there is no trail to write to",
    ),
    (
        "POST /v1/environments/{env_id}/policies/evaluate",
        "answers what policies would do and changes nothing (a POST for its request body)",
    ),
    (
        "POST /v1/environments/{env_id}/tables/{table}/import",
        "loads rows into the environment's data: recorded in the environment's query audit (tests/api/gateway.rs), not the IAM trail",
    ),
    (
        "POST /v1/auth/mfa/totp",
        "keeps an enrolment that does nothing until its first code confirms it; the confirmation is audited (user.mfa_enabled)",
    ),
    (
        "POST /v1/query",
        "runs SQL on the environment's data: recorded in the environment's query audit (tests/api/gateway.rs), not the IAM trail",
    ),
    (
        "POST /v1/query/arrow",
        "runs SQL on the environment's data: recorded in the environment's query audit (tests/api/gateway.rs), not the IAM trail",
    ),
];

/// A request to make, and whose trail it must grow (`None`: the organization it creates).
struct Call {
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<Value>,
    org: Option<String>,
}

struct Ctx<'a> {
    s: &'a Server,
    token: String,
    org: String,
    hook_url: String,
    n: std::sync::atomic::AtomicUsize,
    /// Environments moved onto the managed engine: deleted at the end (their databases go).
    moved: std::sync::Mutex<Vec<String>>,
}

impl Ctx<'_> {
    fn unique(&self, prefix: &str) -> String {
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}-{n}")
    }

    async fn env(&self) -> String {
        let r = self
            .s
            .post(
                &format!("/v1/organizations/{}/environments", self.org),
                Some(&self.token),
                json!({"name": self.unique("walk")}),
            )
            .await;
        r.expect(201);
        r.body["env_id"].as_str().unwrap().to_string()
    }

    async fn key(&self, env_id: &str) -> String {
        let r = self
            .s
            .post(
                &format!("/v1/environments/{env_id}/api-keys"),
                Some(&self.token),
                json!({"name": self.unique("key"), "scopes": ["read_only"]}),
            )
            .await;
        r.expect(201);
        r.body["key_id"].as_str().unwrap().to_string()
    }

    async fn member(&self, org: &str) -> String {
        let email = format!("{}@example.com", self.unique("member"));
        self.s
            .add_member(&self.token, org, &email, "developer")
            .await
            .0
    }

    /// A new member of `org` (`email`, its user id, a token of theirs).
    async fn person(&self, org: &str) -> (String, String, String) {
        let email = format!("{}@example.com", self.unique("person"));
        let (user_id, token) = self
            .s
            .add_member(&self.token, org, &email, "developer")
            .await;
        (email, user_id, token)
    }

    /// A pending just-in-time request of a new developer for admin in an environment:
    /// (env id, request id, the requester's token).
    async fn jit_request(&self) -> (String, String, String) {
        let e = self.env().await;
        let (_, _, token) = self.person(&self.org).await;
        let r = self
            .s
            .post(
                &format!("/v1/environments/{e}/jit-access"),
                Some(&token),
                jit_request(),
            )
            .await;
        (e, r.body["request_id"].as_str().unwrap().to_string(), token)
    }

    /// A new member of `org` with a TOTP factor on: (email, user id, token, secret).
    async fn person_with_totp(&self, org: &str) -> (String, String, String, String) {
        let (email, user_id, token) = self.person(org).await;
        let (secret, _) = crate::account::enrol_totp(self.s, &token, PASSWORD).await;
        (email, user_id, token, secret)
    }

    async fn org(&self) -> String {
        let r = self
            .s
            .post(
                "/v1/organizations",
                Some(&self.token),
                json!({"name": "Walk", "slug": self.unique("walk-org"), "billing_email": "b@example.com", "default_environments": false}),
            )
            .await;
        r.expect(201);
        r.body["org_id"].as_str().unwrap().to_string()
    }

    async fn webhook(&self) -> String {
        let r = self
            .s
            .post(
                &format!("/v1/organizations/{}/webhooks", self.org),
                Some(&self.token),
                json!({"url": self.hook_url, "events": ["webhook.test"]}),
            )
            .await;
        r.expect(201);
        r.body["webhook_id"].as_str().unwrap().to_string()
    }

    /// A policy in `env_id` under `kind` (`policies` or `abac-policies`).
    async fn policy(&self, env_id: &str, kind: &str) -> String {
        let body = if kind == "policies" {
            json!({"name": self.unique("mask"), "type": "column_masking",
                   "rules": [{"table": "t", "column": "c", "function": "full"}]})
        } else {
            json!({"name": self.unique("deny"), "effect": "deny", "actions": ["export"], "resources": ["*"]})
        };
        let r = self
            .s
            .post(
                &format!("/v1/environments/{env_id}/{kind}"),
                Some(&self.token),
                body,
            )
            .await;
        r.expect(201);
        r.body["policy_id"].as_str().unwrap().to_string()
    }

    async fn policy_recipe(&self, op: &str) -> Option<Call> {
        let kind = if op.contains("/abac-policies") {
            "abac-policies"
        } else {
            "policies"
        };
        let e = self.env().await;
        if op.ends_with(&format!("/{kind}")) {
            let p = self.policy(&e, kind).await;
            let body = self
                .s
                .get(&format!("/v1/environments/{e}/{kind}/{p}"), &self.token)
                .await
                .body;
            let mut copy = body.clone();
            for field in [
                "policy_id",
                "env_id",
                "version",
                "created_by",
                "created_at",
                "updated_at",
                "type",
            ] {
                copy.as_object_mut().unwrap().remove(field);
            }
            if kind == "policies" {
                copy["type"] = body["type"].clone();
            }
            copy["name"] = json!(self.unique("copy"));
            return self.call(Method::POST, format!("/v1/environments/{e}/{kind}"), copy);
        }
        let p = self.policy(&e, kind).await;
        let path = format!("/v1/environments/{e}/{kind}/{p}");
        if op.starts_with("PATCH") {
            self.call(Method::PATCH, path, json!({"description": "patched"}))
        } else if op.starts_with("PUT") {
            let mut whole = self.s.get(&path, &self.token).await.body;
            for field in [
                "policy_id",
                "env_id",
                "version",
                "created_by",
                "created_at",
                "updated_at",
            ] {
                whole.as_object_mut().unwrap().remove(field);
            }
            if kind == "abac-policies" {
                whole.as_object_mut().unwrap().remove("type");
            }
            whole["description"] = json!("replaced");
            self.call(Method::PUT, path, whole)
        } else if op.starts_with("DELETE") {
            self.call(Method::DELETE, path, json!(null))
        } else {
            self.s
                .patch(&path, &self.token, json!({"enabled": false}))
                .await
                .expect(200);
            self.call(
                Method::POST,
                format!("{path}/versions/1/restore"),
                json!({}),
            )
        }
    }

    /// Secrets: one entry per secret a request writes (the walk writes one each time).
    async fn secret_recipe(&self, op: &str) -> Option<Call> {
        let e = self.env().await;
        let base = format!("/v1/environments/{e}/secrets");
        if op == "POST /v1/environments/{env_id}/secrets" {
            return self.call(Method::POST, base, json!({"key": "NEW_KEY", "value": "v"}));
        }
        if op.ends_with("/import") {
            return self.call(
                Method::POST,
                format!("{base}/import"),
                json!({"IMPORTED": "x"}),
            );
        }
        self.s
            .post(
                &base,
                Some(&self.token),
                json!({"key": "WALKED", "value": "one"}),
            )
            .await
            .expect(201);
        let path = format!("{base}/WALKED");
        if op.starts_with("PATCH") {
            self.call(Method::PATCH, path, json!({"value": "two"}))
        } else if op.starts_with("DELETE") {
            self.call(Method::DELETE, path, json!(null))
        } else {
            self.s
                .patch(&path, &self.token, json!({"value": "two"}))
                .await
                .expect(200);
            self.call(
                Method::POST,
                format!("{path}/versions/1/restore"),
                json!({}),
            )
        }
    }

    async fn login(&self) -> Value {
        self.s
            .login_as(OWNER_EMAIL, OWNER_PASSWORD, Some(&self.org))
            .await
    }

    fn call(&self, method: Method, path: String, body: Value) -> Option<Call> {
        Some(Call {
            method,
            path,
            token: Some(self.token.clone()),
            body: Some(body),
            org: Some(self.org.clone()),
        })
    }

    /// How to make `op` succeed (after whatever set-up it needs); `None` for exempt ones.
    /// An operation with no recipe fails the test: add one, and audit the endpoint.
    async fn recipe(&self, op: &str) -> Option<Call> {
        let o = &self.org;
        let post = Method::POST;
        match op {
            "POST /v1/auth/login" => Some(Call {
                token: None,
                ..self.call(post, "/v1/auth/login".into(), json!({"email": OWNER_EMAIL, "password": OWNER_PASSWORD, "org_id": o}))?
            }),
            "POST /v1/auth/refresh" => {
                let refresh = self.login().await["refresh_token"].clone();
                Some(Call { token: None, ..self.call(post, "/v1/auth/refresh".into(), json!({"refresh_token": refresh}))? })
            }
            "POST /v1/auth/logout" => {
                let token = self.login().await["token"].as_str().unwrap().to_string();
                Some(Call { token: Some(token), ..self.call(post, "/v1/auth/logout".into(), json!({}))? })
            }
            "POST /v1/auth/accept-invite" => {
                let email = format!("{}@example.com", self.unique("invitee"));
                let inv = self
                    .s
                    .post(&format!("/v1/organizations/{o}/users"), Some(&self.token), json!({"email": email, "role": "analyst"}))
                    .await;
                let token = inv.body["invitation"]["token"].clone();
                Some(Call {
                    token: None,
                    ..self.call(post, "/v1/auth/accept-invite".into(), json!({"token": token, "password": PASSWORD}))?
                })
            }
            "POST /v1/auth/login/mfa" => {
                let (email, _, _, secret) = self.person_with_totp(o).await;
                let first = self
                    .s
                    .post("/v1/auth/login", None, json!({"email": email, "password": PASSWORD, "org_id": o}))
                    .await;
                let code = next_code(&secret);
                Some(Call {
                    token: None,
                    ..self.call(post, "/v1/auth/login/mfa".into(), json!({"mfa_token": first.body["mfa_token"], "code": code}))?
                })
            }
            "POST /v1/auth/password" => {
                let (_, _, token) = self.person(o).await;
                Some(Call {
                    token: Some(token),
                    ..self.call(post, "/v1/auth/password".into(), json!({"current_password": PASSWORD, "new_password": "a-new-walk-password-9"}))?
                })
            }
            "POST /v1/auth/reset-password" => {
                let (_, u, _) = self.person(o).await;
                let link = self.s.post(&format!("/v1/organizations/{o}/users/{u}/password-reset"), Some(&self.token), json!({})).await;
                Some(Call {
                    token: None,
                    ..self.call(post, "/v1/auth/reset-password".into(), json!({"token": link.body["token"], "new_password": "a-reset-walk-password-9"}))?
                })
            }
            "POST /v1/auth/mfa/totp/confirm" => {
                let (_, _, token) = self.person(o).await;
                let begun = self.s.post("/v1/auth/mfa/totp", Some(&token), json!({"password": PASSWORD})).await;
                let code = enclave_api::auth::mfa::code_at(begun.body["secret"].as_str().unwrap(), chrono::Utc::now().timestamp() as u64).unwrap();
                Some(Call { token: Some(token), ..self.call(post, "/v1/auth/mfa/totp/confirm".into(), json!({"code": code}))? })
            }
            "POST /v1/auth/mfa/totp/disable" => {
                let (_, _, token, secret) = self.person_with_totp(o).await;
                let code = next_code(&secret);
                Some(Call { token: Some(token), ..self.call(post, "/v1/auth/mfa/totp/disable".into(), json!({"password": PASSWORD, "code": code}))? })
            }
            "POST /v1/auth/mfa/recovery-codes" => {
                let (_, _, token, _) = self.person_with_totp(o).await;
                Some(Call { token: Some(token), ..self.call(post, "/v1/auth/mfa/recovery-codes".into(), json!({"password": PASSWORD}))? })
            }
            "POST /v1/organizations/{org_id}/users/{user_id}/password-reset" => {
                let (_, u, _) = self.person(o).await;
                self.call(post, format!("/v1/organizations/{o}/users/{u}/password-reset"), json!({}))
            }
            "DELETE /v1/organizations/{org_id}/users/{user_id}/mfa" => {
                let (_, u, _, _) = self.person_with_totp(o).await;
                self.call(Method::DELETE, format!("/v1/organizations/{o}/users/{u}/mfa"), json!(null))
            }
            "POST /v1/organizations" => Some(Call {
                org: None,
                ..self.call(post, "/v1/organizations".into(), json!({"name": "New", "slug": self.unique("new-org"), "billing_email": "b@example.com"}))?
            }),
            "PATCH /v1/organizations/{org_id}" => {
                self.call(Method::PATCH, format!("/v1/organizations/{o}"), json!({"name": "Renamed"}))
            }
            "PATCH /v1/organizations/{org_id}/billing/quotas" => {
                self.call(Method::PATCH, format!("/v1/organizations/{o}/billing/quotas"), json!({"max_users": 50}))
            }
            "DELETE /v1/organizations/{org_id}" => {
                let doomed = self.org().await;
                Some(Call { org: Some(doomed.clone()), ..self.call(Method::DELETE, format!("/v1/organizations/{doomed}"), json!(null))? })
            }
            "POST /v1/organizations/{org_id}/transfer-ownership" => {
                let other = self.org().await;
                let user = self.member(&other).await;
                Some(Call {
                    org: Some(other.clone()),
                    ..self.call(post, format!("/v1/organizations/{other}/transfer-ownership"), json!({"user_id": user}))?
                })
            }
            "POST /v1/organizations/{org_id}/users" => self.call(
                post,
                format!("/v1/organizations/{o}/users"),
                json!({"email": format!("{}@example.com", self.unique("invited")), "role": "developer"}),
            ),
            "PATCH /v1/organizations/{org_id}/users/{user_id}" => {
                let u = self.member(o).await;
                self.call(Method::PATCH, format!("/v1/organizations/{o}/users/{u}"), json!({"name": "Renamed Member"}))
            }
            "DELETE /v1/organizations/{org_id}/users/{user_id}" => {
                let u = self.member(o).await;
                self.call(Method::DELETE, format!("/v1/organizations/{o}/users/{u}"), json!(null))
            }
            "PUT /v1/organizations/{org_id}/users/{user_id}/role" => {
                let u = self.member(o).await;
                self.call(Method::PUT, format!("/v1/organizations/{o}/users/{u}/role"), json!({"role": "analyst"}))
            }
            "POST /v1/organizations/{org_id}/environments" => {
                self.call(post, format!("/v1/organizations/{o}/environments"), json!({"name": self.unique("made")}))
            }
            "POST /v1/organizations/{org_id}/environments/reorder" => {
                let list = self.s.get(&format!("/v1/organizations/{o}/environments?limit=200"), &self.token).await;
                let mut order: Vec<Value> = list.body["data"].as_array().unwrap().iter().map(|e| e["env_id"].clone()).collect();
                order.reverse();
                self.call(
                    post,
                    format!("/v1/organizations/{o}/environments/reorder"),
                    json!({"order": order, "expected_version": list.body["order_version"]}),
                )
            }
            "PATCH /v1/environments/{env_id}" => {
                let e = self.env().await;
                self.call(Method::PATCH, format!("/v1/environments/{e}"), json!({"description": "patched"}))
            }
            "PUT /v1/environments/{env_id}" => {
                let e = self.env().await;
                self.call(Method::PUT, format!("/v1/environments/{e}"), json!({"description": "replaced"}))
            }
            "DELETE /v1/environments/{env_id}" => {
                let e = self.env().await;
                self.call(Method::DELETE, format!("/v1/environments/{e}"), json!(null))
            }
            "POST /v1/environments/{env_id}/suspend" => {
                let e = self.env().await;
                self.call(post, format!("/v1/environments/{e}/suspend"), json!({}))
            }
            "POST /v1/environments/{env_id}/resume" => {
                let e = self.env().await;
                self.s.post(&format!("/v1/environments/{e}/suspend"), Some(&self.token), json!({})).await.expect(200);
                self.call(post, format!("/v1/environments/{e}/resume"), json!({}))
            }
            "POST /v1/environments/{env_id}/promote" => {
                let (from, to) = (self.env().await, self.env().await);
                self.s
                    .patch(&format!("/v1/environments/{from}"), &self.token, json!({"settings": {"query_timeout_ms": 5000}}))
                    .await
                    .expect(200);
                self.call(post, format!("/v1/environments/{from}/promote"), json!({"target_env_id": to}))
            }
            "POST /v1/environments/{env_id}/clone" => {
                let e = self.env().await;
                self.call(post, format!("/v1/environments/{e}/clone"), json!({"name": self.unique("clone")}))
            }
            "POST /v1/environments/{env_id}/api-keys" => {
                let e = self.env().await;
                self.call(post, format!("/v1/environments/{e}/api-keys"), json!({"name": "k", "scopes": ["read_only"]}))
            }
            "PATCH /v1/environments/{env_id}/api-keys/{key_id}" => {
                let e = self.env().await;
                let k = self.key(&e).await;
                self.call(Method::PATCH, format!("/v1/environments/{e}/api-keys/{k}"), json!({"name": "renamed"}))
            }
            "DELETE /v1/environments/{env_id}/api-keys/{key_id}" => {
                let e = self.env().await;
                let k = self.key(&e).await;
                self.call(Method::DELETE, format!("/v1/environments/{e}/api-keys/{k}"), json!(null))
            }
            "POST /v1/environments/{env_id}/api-keys/{key_id}/rotate" => {
                let e = self.env().await;
                let k = self.key(&e).await;
                self.call(post, format!("/v1/environments/{e}/api-keys/{k}/rotate"), json!({}))
            }
            "POST /v1/environments/{env_id}/agents/{agent_id}/capabilities" => {
                let e = self.env().await;
                self.call(post, format!("/v1/environments/{e}/agents/walker/capabilities"), json!({"allowed_actions": ["query"]}))
            }
            "DELETE /v1/environments/{env_id}/agents/{agent_id}/capabilities" => {
                let e = self.env().await;
                let path = format!("/v1/environments/{e}/agents/walker/capabilities");
                self.s.post(&path, Some(&self.token), json!({"allowed_actions": ["query"]})).await;
                self.call(Method::DELETE, path, json!(null))
            }
            "POST /v1/environments/{env_id}/engine" => {
                let e = self.env().await;
                self.moved.lock().unwrap().push(e.clone());
                self.call(post, format!("/v1/environments/{e}/engine"), json!({"engine": "postgres"}))
            }
            "POST /v1/environments/{env_id}/shadow" => {
                let (from, to) = (self.env().await, self.env().await);
                self.call(post, format!("/v1/environments/{from}/shadow"), json!({"target_env_id": to, "sample_rate": 0.5}))
            }
            "DELETE /v1/environments/{env_id}/shadow" => {
                let (from, to) = (self.env().await, self.env().await);
                let path = format!("/v1/environments/{from}/shadow");
                self.s.post(&path, Some(&self.token), json!({"target_env_id": to, "sample_rate": 0.5})).await;
                self.call(Method::DELETE, path, json!(null))
            }
            "POST /v1/environments/{env_id}/jit-access" => {
                let e = self.env().await;
                let (_, _, token) = self.person(o).await;
                Some(Call { token: Some(token), ..self.call(post, format!("/v1/environments/{e}/jit-access"), jit_request())? })
            }
            "POST /v1/environments/{env_id}/jit-access/{request_id}/approve" => {
                let (e, id, _) = self.jit_request().await;
                self.call(post, format!("/v1/environments/{e}/jit-access/{id}/approve"), json!({"comment": "ok"}))
            }
            "POST /v1/environments/{env_id}/jit-access/{request_id}/deny" => {
                let (e, id, _) = self.jit_request().await;
                self.call(post, format!("/v1/environments/{e}/jit-access/{id}/deny"), json!({}))
            }
            "POST /v1/environments/{env_id}/jit-access/{request_id}/revoke" => {
                let (e, id, token) = self.jit_request().await;
                self.s.post(&format!("/v1/environments/{e}/jit-access/{id}/approve"), Some(&self.token), json!({})).await;
                Some(Call { token: Some(token), ..self.call(post, format!("/v1/environments/{e}/jit-access/{id}/revoke"), json!({}))? })
            }
            "POST /v1/organizations/{org_id}/webhooks" => self.call(
                post,
                format!("/v1/organizations/{o}/webhooks"),
                json!({"url": self.hook_url, "events": ["*"]}),
            ),
            "PATCH /v1/organizations/{org_id}/webhooks/{webhook_id}" => {
                let w = self.webhook().await;
                self.call(Method::PATCH, format!("/v1/organizations/{o}/webhooks/{w}"), json!({"description": "d"}))
            }
            "DELETE /v1/organizations/{org_id}/webhooks/{webhook_id}" => {
                let w = self.webhook().await;
                self.call(Method::DELETE, format!("/v1/organizations/{o}/webhooks/{w}"), json!(null))
            }
            "POST /v1/organizations/{org_id}/webhooks/{webhook_id}/rotate-secret" => {
                let w = self.webhook().await;
                self.call(post, format!("/v1/organizations/{o}/webhooks/{w}/rotate-secret"), json!({}))
            }
            "POST /v1/organizations/{org_id}/webhooks/{webhook_id}/test" => {
                let w = self.webhook().await;
                self.call(post, format!("/v1/organizations/{o}/webhooks/{w}/test"), json!({}))
            }
            "POST /v1/organizations/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver" => {
                let w = self.webhook().await;
                let t = self.s.post(&format!("/v1/organizations/{o}/webhooks/{w}/test"), Some(&self.token), json!({})).await;
                let d = t.body["delivery_id"].as_str().unwrap();
                self.call(post, format!("/v1/organizations/{o}/webhooks/{w}/deliveries/{d}/redeliver"), json!({}))
            }
            op if op.contains("/policies") || op.contains("/abac-policies") => self.policy_recipe(op).await,
            op if op.contains("/secrets") => self.secret_recipe(op).await,
            other => panic!("no recipe for `{other}`: add one to audit.rs (and audit the endpoint)"),
        }
    }
}

pub fn walk_args(db: &Db) -> enclave::config::ServeArgs {
    let mut args = db.args();
    args.environment_quotas = Some("free=unlimited".into());
    args
}

async fn every_mutating_operation_leaves_one_entry(db: Db) {
    // With a managed engine to move an environment's data to.
    let s = Server::start(enclave::config::ServeArgs {
        engine_postgres_url: Some(enclave_store::testing::postgres_admin_url()),
        default_engine: Some("duckdb".into()),
        ..walk_args(&db)
    })
    .await;
    let store = enclave_store::connect(&db.url).await.unwrap();
    let rx = Receiver::start().await;
    let ctx = Ctx {
        s: &s,
        token: s.owner_token().await,
        org: s.bootstrap_org.clone().unwrap(),
        hook_url: rx.url(),
        n: Default::default(),
        moved: Default::default(),
    };
    let doc = s
        .raw(s.request(Method::GET, "/openapi.json", None))
        .await
        .body;
    let mut ops = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(
        ops.len() >= 30,
        "the document lists the mutating operations: {ops:?}"
    );
    let mut walked = 0;
    for op in &ops {
        if EXEMPT.iter().any(|(e, _)| e == op) {
            continue;
        }
        let call = ctx.recipe(op).await.unwrap();
        let count = |org: String| {
            let store = store.clone();
            async move {
                store
                    .audit_head(&enclave_core::id::OrgId::from(&org))
                    .await
                    .unwrap()
                    .map_or(0, |(seq, _)| seq)
            }
        };
        let before = match &call.org {
            Some(org) => count(org.clone()).await,
            None => 0,
        };
        let mut req = s.request(call.method.clone(), &call.path, call.token.as_deref());
        if let Some(body) = &call.body {
            if !body.is_null() {
                req = req.json(body);
            }
        }
        let resp = s.raw(req).await;
        assert!(
            (200..300).contains(&resp.status),
            "{op} answered {}: {}",
            resp.status,
            resp.body
        );
        let org = call
            .org
            .clone()
            .unwrap_or_else(|| resp.body["org_id"].as_str().unwrap().to_string());
        let after = count(org.clone()).await;
        assert_eq!(
            after - before,
            1,
            "{op} must leave exactly one audit entry in {org}"
        );
        let entry = &store
            .audit_chain(&enclave_core::id::OrgId::from(&org), after - 1, 1)
            .await
            .unwrap()[0];
        assert_eq!(
            entry.request_id.as_deref(),
            resp.header("x-request-id"),
            "{op}"
        );
        assert_eq!(entry.source_ip.as_deref(), Some("127.0.0.1"), "{op}");
        walked += 1;
    }
    assert_eq!(walked + EXEMPT.len(), ops.len());
    // Everything the walk wrote still verifies.
    let v = s
        .get(
            &format!("/v1/organizations/{}/audit/iam/verify", ctx.org),
            &ctx.token,
        )
        .await;
    v.expect(200);
    assert_eq!(v.body["chain_valid"], true, "{}", v.body);
    let moved = ctx.moved.lock().unwrap().clone();
    for env in moved {
        s.delete(&format!("/v1/environments/{env}"), &ctx.token)
            .await
            .expect(204);
    }
}

async fn chain_holds_under_concurrent_writers(db: Db) {
    let s = Arc::new(Server::start(walk_args(&db)).await);
    let token = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let envs = s
        .get(&format!("/v1/organizations/{org}/environments"), &token)
        .await;
    let env_id = envs.body["data"][0]["env_id"].as_str().unwrap().to_string();
    let before = s
        .get(
            &format!("/v1/organizations/{org}/audit/iam?limit=1"),
            &token,
        )
        .await;
    let start = before.body["pagination"]["total"].as_i64().unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (s, token, org, env_id) = (s.clone(), token.clone(), org.clone(), env_id.clone());
            tokio::spawn(async move {
                let r = match i % 4 {
                    0 => {
                        s.post(
                            &format!("/v1/organizations/{org}/environments"),
                            Some(&token),
                            json!({"name": format!("c{i}")}),
                        )
                        .await
                    }
                    1 => {
                        s.patch(
                            &format!("/v1/environments/{env_id}"),
                            &token,
                            json!({"description": format!("d{i}")}),
                        )
                        .await
                    }
                    2 => {
                        s.post(
                            &format!("/v1/environments/{env_id}/api-keys"),
                            Some(&token),
                            json!({"name": format!("k{i}"), "scopes": ["read_only"]}),
                        )
                        .await
                    }
                    _ => {
                        s.patch(
                            &format!("/v1/organizations/{org}"),
                            &token,
                            json!({"name": format!("Org {i}")}),
                        )
                        .await
                    }
                };
                assert!((200..300).contains(&r.status), "{}", r.body);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let v = s
        .get(&format!("/v1/organizations/{org}/audit/iam/verify"), &token)
        .await;
    v.expect(200);
    assert_eq!(v.body["chain_valid"], true, "{}", v.body);
    assert_eq!(v.body["entry_count"].as_i64().unwrap(), start + 40);
    assert!(v.body.get("first_invalid_entry").is_none());
    // Sequence numbers are dense: no fork, no gap.
    let mut seqs = vec![];
    let mut cursor = String::new();
    loop {
        let page = s
            .get(
                &format!("/v1/organizations/{org}/audit/iam?limit=17&cursor={cursor}"),
                &token,
            )
            .await;
        page.expect(200);
        seqs.extend(
            page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_i64().unwrap()),
        );
        match page.body["pagination"]["cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seqs, (1..=start + 40).rev().collect::<Vec<_>>());
}

async fn tampering_is_found_and_named(db: Db) {
    let s = db.start().await;
    let token = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let envs = s
        .get(&format!("/v1/organizations/{org}/environments"), &token)
        .await;
    let env_id = envs.body["data"][0]["env_id"].as_str().unwrap().to_string();
    for i in 0..5 {
        s.patch(
            &format!("/v1/environments/{env_id}"),
            &token,
            json!({"description": format!("v{i}")}),
        )
        .await
        .expect(200);
    }
    let verify = || async {
        s.get(&format!("/v1/organizations/{org}/audit/iam/verify"), &token)
            .await
            .body
    };
    let good = verify().await;
    assert_eq!(good["chain_valid"], true, "{good}");
    let count = good["entry_count"].as_i64().unwrap();
    assert!(good["verified_at"].is_string() && good["first_entry_hash"].is_string());

    // Someone with database access removes the newest entry: caught against the head.
    sql(
        &db,
        &format!("DELETE FROM iam_audit WHERE org_id = '{org}' AND seq = {count}"),
    )
    .await;
    let bad = verify().await;
    assert_eq!(bad["chain_valid"], false, "{bad}");
    assert_eq!(bad["first_invalid_entry"]["reason"], "truncated");
    assert_eq!(bad["first_invalid_entry"]["position"], count);

    // … and edits one entry's `after`: verify names that entry.
    let victim_seq = 3;
    let victim = sql(
        &db,
        &format!("SELECT id FROM iam_audit WHERE org_id = '{org}' AND seq = {victim_seq}"),
    )
    .await
    .unwrap();
    sql(
        &db,
        &format!("UPDATE iam_audit SET after_json = '{{\"forged\":true}}' WHERE id = '{victim}'"),
    )
    .await;
    let bad = verify().await;
    assert_eq!(bad["chain_valid"], false);
    assert_eq!(
        bad["first_invalid_entry"]["entry_id"],
        victim.as_str(),
        "{bad}"
    );
    assert_eq!(bad["first_invalid_entry"]["position"], victim_seq);
    assert_eq!(bad["first_invalid_entry"]["reason"], "hash_mismatch");
    // The API serves the entry as stored, so the forgery is visible where it was made.
    let entry = s
        .get(
            &format!("/v1/organizations/{org}/audit/iam/{victim}"),
            &token,
        )
        .await;
    assert_eq!(entry.body["after"], json!({"forged": true}));

    // Re-hashing the edited entry does not help: the next link breaks.
    let forged: Value = entry.body.clone();
    let rehash = enclave_core::audit::entry_hash(&forged);
    sql(
        &db,
        &format!("UPDATE iam_audit SET entry_hash = '{rehash}' WHERE id = '{victim}'"),
    )
    .await;
    let bad = verify().await;
    assert_eq!(
        bad["first_invalid_entry"]["position"],
        victim_seq + 1,
        "{bad}"
    );
    assert_eq!(bad["first_invalid_entry"]["reason"], "broken_link");
}

/// Runs SQL on the test's database directly, as someone with database access could; the
/// first column of the first row, if the statement returns one.
pub(crate) async fn sql(db: &Db, sql: &str) -> Option<String> {
    if db.is_postgres() {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let v = sqlx::query_scalar(sql).fetch_optional(&pool).await.unwrap();
        pool.close().await;
        v
    } else {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let v = sqlx::query_scalar(sql).fetch_optional(&pool).await.unwrap();
        pool.close().await;
        v
    }
}

async fn export_verifies_offline_and_edits_do_not(db: Db) {
    let s = db.start().await;
    let token = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let envs = s
        .get(&format!("/v1/organizations/{org}/environments"), &token)
        .await;
    let env_id = envs.body["data"][0]["env_id"].as_str().unwrap().to_string();
    for i in 0..3 {
        s.patch(
            &format!("/v1/environments/{env_id}"),
            &token,
            json!({"description": format!("ünïcode {i} \"quoted\"")}),
        )
        .await
        .expect(200);
    }
    let resp = s
        .client
        .get(format!("{}/v1/organizations/{org}/audit/iam/export", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let api = s
        .get(&format!("/v1/organizations/{org}/audit/iam/verify"), &token)
        .await
        .body;
    assert_eq!(lines.len() as i64, api["entry_count"].as_i64().unwrap());
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["entry_hash"], api["last_entry_hash"]);

    let dir = db.data_dir();
    let file = dir.join("export.ndjson");
    std::fs::write(&file, &text).unwrap();
    let verify = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_enclave"))
            .args(["audit", "verify"])
            .arg(path)
            .env_remove("ENCLAVE_TOKEN")
            .output()
            .unwrap()
    };
    let ok = verify(&file);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains(&format!("entries checked: {}", lines.len()))
            && out.contains("chain valid: true"),
        "{out}"
    );

    // One edited field in one line: refused, naming that entry.
    let victim: Value = serde_json::from_str(lines[2]).unwrap();
    let edited = text.replacen(
        lines[2],
        &lines[2].replacen("\"environment.updated\"", "\"environment.deleted\"", 1),
        1,
    );
    assert_ne!(edited, text);
    let bad_file = dir.join("edited.ndjson");
    std::fs::write(&bad_file, &edited).unwrap();
    let bad = verify(&bad_file);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(victim["id"].as_str().unwrap())
            && err.contains("hash_mismatch")
            && err.contains("entry 3"),
        "{err}"
    );
    // A dropped line breaks the chain after it.
    let dropped: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| *l)
        .collect();
    std::fs::write(&bad_file, dropped.join("\n")).unwrap();
    let bad = verify(&bad_file);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("broken_link"));

    // The CLI's export is the API's, byte for byte.
    let cli_file = dir.join("cli.ndjson");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args(["audit", "export", "--out"])
        .arg(&cli_file)
        .env("ENCLAVE_URL", &s.url)
        .env("ENCLAVE_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&cli_file).unwrap(), text);
}

async fn listing_filters_permissions_and_redaction(db: Db) {
    let s = db.start().await;
    let token = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    let me = s.get("/v1/auth/me", &token).await.body["user"]["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let audit = format!("/v1/organizations/{org}/audit/iam");
    let envs = s
        .get(&format!("/v1/organizations/{org}/environments"), &token)
        .await;
    let env_id = envs.body["data"][0]["env_id"].as_str().unwrap().to_string();
    let key = s
        .post(
            &format!("/v1/environments/{env_id}/api-keys"),
            Some(&token),
            json!({"name": "ci", "scopes": ["admin"]}),
        )
        .await;
    key.expect(201);
    let plaintext = key.body["key"].as_str().unwrap().to_string();
    let key_id = key.body["key_id"].as_str().unwrap().to_string();
    let rx = Receiver::start().await;
    let hook = s
        .post(
            &format!("/v1/organizations/{org}/webhooks"),
            Some(&token),
            json!({"url": rx.url(), "events": ["*"]}),
        )
        .await;
    let secret = hook.body["signing_secret"].as_str().unwrap().to_string();
    let (dev_id, dev) = s
        .add_member(&token, &org, "dev@example.com", "developer")
        .await;
    let (_, auditor) = s
        .add_member(&token, &org, "auditor@example.com", "auditor")
        .await;
    s.put(
        &format!("/v1/organizations/{org}/users/{dev_id}/role"),
        &token,
        json!({"role": "analyst"}),
    )
    .await
    .expect(200);

    // Filters.
    let r = s.get(&format!("{audit}?action=key.created"), &token).await;
    r.expect(200);
    assert_eq!(r.body["pagination"]["total"], 1);
    let e = &r.body["data"][0];
    assert_eq!(
        (e["actor_type"].as_str(), e["actor_id"].as_str()),
        (Some("user"), Some(me.as_str()))
    );
    assert_eq!(e["resource_type"], "api_key");
    assert_eq!(e["resource_id"], key_id.as_str());
    assert_eq!(e["env_id"], env_id.as_str());
    assert!(e["before"].is_null());
    assert_eq!(e["after"]["name"], "ci");
    let r = s
        .get(&format!("{audit}?resource_id={dev_id}"), &token)
        .await;
    let actions: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["user.role_changed", "user.joined", "user.invited"]
    );
    let changed = &r.body["data"][0];
    assert_eq!(
        (
            changed["before"]["role"].as_str(),
            changed["after"]["role"].as_str()
        ),
        (Some("developer"), Some("analyst"))
    );
    let by_me = s
        .get(
            &format!("{audit}?actor_id={me}&resource_type=webhook"),
            &token,
        )
        .await;
    assert_eq!(by_me.body["data"][0]["action"], "webhook.created");
    assert_eq!(
        s.get(&format!("{audit}?env_id={env_id}"), &token)
            .await
            .body["pagination"]["total"],
        1
    );
    assert_eq!(
        s.get(&format!("{audit}?start_date=2999-01-01"), &token)
            .await
            .body["pagination"]["total"],
        0
    );
    let all = s
        .get(
            &format!("{audit}?start_date=2020-01-01T00:00:00Z&end_date=2999-01-01"),
            &token,
        )
        .await;
    assert!(all.body["pagination"]["total"].as_i64().unwrap() >= 7);
    for (q, field) in [
        ("start_date=yesterday", "start_date"),
        ("start_date=2025-02-01&end_date=2025-01-01", "end_date"),
        ("limit=0", "limit"),
        ("cursor=%%%", "cursor"),
        ("nonsense=1", "nonsense"),
    ] {
        let r = s.get(&format!("{audit}?{q}"), &token).await;
        r.expect_error(400, "VALIDATION_ERROR");
        let named = r.body["error"]["details"]["field"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| r.body["error"]["message"].to_string());
        assert!(named.contains(field), "{q}: {}", r.body);
    }
    let id = all.body["data"][0]["id"].as_str().unwrap();
    s.get(&format!("{audit}/{id}"), &token).await.expect(200);
    s.get(&format!("{audit}/aud_00000000000000000000000000"), &token)
        .await
        .expect_error(404, "NOT_FOUND");
    s.get(&format!("{audit}/nonsense"), &token)
        .await
        .expect_error(404, "NOT_FOUND");

    // Who may read: owner, admin, auditor; not a developer/analyst, not a key, not strangers.
    s.get(&audit, &auditor).await.expect(200);
    s.get(&format!("{audit}/verify"), &auditor)
        .await
        .expect(200);
    s.get(&audit, &dev).await.expect_error(403, "FORBIDDEN");
    s.get(&format!("{audit}/export"), &dev)
        .await
        .expect_error(403, "FORBIDDEN");
    let r = s.keyed(Method::GET, &audit, &plaintext, None).await;
    r.expect_error(403, "FORBIDDEN");
    let stranger = s.signup("stranger@example.com", PASSWORD).await;
    s.get(&audit, &stranger)
        .await
        .expect_error(404, "NOT_FOUND");
    // Nothing edits or deletes an entry through the API.
    for m in [Method::PUT, Method::PATCH, Method::DELETE] {
        let r = s
            .call(m, &format!("{audit}/{id}"), Some(&token), Some(json!({})))
            .await;
        assert_eq!(r.status, 405, "{}", r.body);
    }

    // No secret material in any entry.
    let export = s
        .client
        .get(format!("{}{audit}/export", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for secret in [
        plaintext.as_str(),
        secret.as_str(),
        "$argon2",
        "inv_",
        "ert_",
    ] {
        assert!(
            !export.contains(secret),
            "{secret} found in the audit trail"
        );
    }
}

/// The code of the step after the current one (the current one may be spent already).
fn next_code(secret: &str) -> String {
    enclave_api::auth::mfa::code_at(secret, chrono::Utc::now().timestamp() as u64 + 30).unwrap()
}

fn jit_request() -> Value {
    json!({"requested_role": "admin", "reason": "the walk", "duration_minutes": 15})
}
