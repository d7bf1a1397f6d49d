//! Just-in-time access through the real server: every rule and transition of a request, the
//! granted role on the control plane, over HTTP and on the wire (and not in another
//! environment), the audits naming the grant, the webhook events, the deadlines on a clock
//! the test moves, and a revocation reaching another node within a second.

use std::time::Duration;

use enclave_core::clock::Clock;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::common::{Db, Org, Resp, Server};
use crate::gateway::sqlstate;
use crate::receiver::Receiver;

crate::both!(
    a_grant_lifts_one_environment_until_it_ends,
    requests_follow_their_rules
);

const MINUTE: i64 = 60_000;

/// The organization on a server whose clock the test moves, with an analyst, a developer,
/// an admin and an auditor (their tokens), a table `orders` and a secret in development.
struct Fixture {
    o: Org,
    clock: Clock,
    dev: String,
    staging: String,
    analyst: String,
    analyst_id: String,
    developer: String,
    developer_id: String,
    admin: String,
    auditor: String,
}

const ANALYST: &str = "ana@example.com";

impl Fixture {
    /// What the analyst may do in `env`, as `GET …/permissions` answers.
    async fn permissions(&self, env: &str) -> Resp {
        let path = format!("/v1/environments/{env}/permissions");
        let r = self.o.s.get(&path, &self.analyst).await;
        r.expect(200);
        r
    }

    async fn start(db: &Db) -> Fixture {
        let clock = Clock::default();
        let s = Server::start_with_clock(crate::audit::walk_args(db), clock.clone()).await;
        let token = s.owner_token().await;
        let org = s.bootstrap_org.clone().unwrap();
        let o = Org { s, token, org };
        let (analyst_id, analyst) = o.s.add_member(&o.token, &o.org, ANALYST, "analyst").await;
        let (developer_id, developer) =
            o.s.add_member(&o.token, &o.org, "dev@example.com", "developer")
                .await;
        let (_, admin) =
            o.s.add_member(&o.token, &o.org, "adm@example.com", "admin")
                .await;
        let (_, auditor) =
            o.s.add_member(&o.token, &o.org, "aud@example.com", "auditor")
                .await;
        let dev = o.env("development").await;
        let staging = o.env("staging").await;
        for env in [&dev, &staging] {
            let r = query(
                &o.s,
                &o.token,
                env,
                "CREATE TABLE orders (id INT, total INT)",
            )
            .await;
            r.expect(200);
        }
        o.s.post(
            &format!("/v1/environments/{dev}/secrets"),
            Some(&o.token),
            json!({"key": "STRIPE_KEY", "value": "sk_test_1"}),
        )
        .await
        .expect(201);
        Fixture {
            o,
            clock,
            dev,
            staging,
            analyst,
            analyst_id,
            developer,
            developer_id,
            admin,
            auditor,
        }
    }

    fn base(&self) -> String {
        format!("/v1/environments/{}/jit-access", self.dev)
    }

    async fn ask(&self, token: &str, body: Value) -> Resp {
        self.o.s.post(&self.base(), Some(token), body).await
    }

    async fn ask_for_developer(&self, minutes: i64) -> String {
        let r = self
            .ask(
                &self.analyst,
                json!({"requested_role": "developer", "reason": "fix yesterday's orders",
                       "duration_minutes": minutes}),
            )
            .await;
        r.expect(201);
        r.body["request_id"].as_str().unwrap().to_string()
    }

    async fn act(&self, token: &str, id: &str, verb: &str, body: Value) -> Resp {
        let path = format!("{}/{id}/{verb}", self.base());
        self.o.s.post(&path, Some(token), body).await
    }

    async fn write(&self, token: &str, env: &str) -> Resp {
        query(&self.o.s, token, env, "INSERT INTO orders VALUES (1, 10)").await
    }

    async fn read_secret(&self, token: &str) -> Resp {
        let path = format!("/v1/environments/{}/secrets/STRIPE_KEY", self.dev);
        self.o.s.get(&path, token).await
    }
}

async fn query(s: &Server, token: &str, env: &str, sql: &str) -> Resp {
    s.post("/v1/query", Some(token), json!({"sql": sql, "env_id": env}))
        .await
}

#[track_caller]
fn refused(r: &Resp) {
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(sqlstate(r), "42501", "{}", r.body);
}

/// The analyst on the wire as themselves: e-mail, access token, the environment's slug.
async fn wire_as(gateway: &str, email: &str, token: &str, slug: &str) -> sqlx::PgConnection {
    let (host, port) = gateway.rsplit_once(':').unwrap();
    let options = sqlx::postgres::PgConnectOptions::new()
        .host(host)
        .port(port.parse().unwrap())
        .username(email)
        .password(token)
        .database(slug)
        .ssl_mode(sqlx::postgres::PgSslMode::Disable)
        .statement_cache_capacity(0);
    sqlx::PgConnection::connect_with(&options).await.unwrap()
}

async fn a_grant_lifts_one_environment_until_it_ends(db: Db) {
    let f = Fixture::start(&db).await;
    let rx = Receiver::start().await;
    let hooks = format!("/v1/organizations/{}/webhooks", f.o.org);
    let events = [
        "jit.requested",
        "jit.approved",
        "jit.denied",
        "jit.revoked",
        "jit.expired",
    ];
    f.o.s
        .post(
            &hooks,
            Some(&f.o.token),
            json!({"url": rx.url(), "events": events}),
        )
        .await
        .expect(201);
    let mut wire = wire_as(&f.o.s.gateway, ANALYST, &f.analyst, "development").await;
    let insert = "INSERT INTO orders VALUES (2, 20)";

    // Before: an analyst neither writes nor reads secret values.
    refused(&f.write(&f.analyst, &f.dev).await);
    f.read_secret(&f.analyst)
        .await
        .expect_error(403, "FORBIDDEN");
    let e = sqlx::query(insert).execute(&mut wire).await.unwrap_err();
    assert!(
        e.to_string().contains("42501") || format!("{e:?}").contains("42501"),
        "{e}"
    );

    let may = f.permissions(&f.dev).await;
    assert_eq!(may.body["role"], "analyst", "{}", may.body);
    assert!(may.body["jit_request_id"].is_null());
    let names = may.body["permissions"].to_string();
    assert!(names.contains("execute_queries") && names.contains("read_secrets"));
    assert!(!names.contains("write_data") && !names.contains("read_secret_values"));

    let id = f.ask_for_developer(60).await;
    let approved = f
        .act(&f.admin, &id, "approve", json!({"comment": "until noon"}))
        .await;
    approved.expect(200);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(approved.body["comment"], "until noon");
    let decided =
        chrono::DateTime::parse_from_rfc3339(approved.body["decided_at"].as_str().unwrap())
            .unwrap();
    let ends = chrono::DateTime::parse_from_rfc3339(approved.body["expires_at"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        (ends - decided).num_minutes(),
        60,
        "the clock starts at approval"
    );

    // During: the developer role, on the control plane, over HTTP and on the wire (the same
    // session, from its next statement) — in development only.
    f.write(&f.analyst, &f.dev).await.expect(200);
    f.read_secret(&f.analyst).await.expect(200);
    // What the analyst may do here, as a client asks it: the grant's role, in development only.
    let may = f.permissions(&f.dev).await;
    assert_eq!(may.body["role"], "developer", "{}", may.body);
    assert_eq!(may.body["jit_request_id"], id.as_str());
    let names = may.body["permissions"].to_string();
    assert!(names.contains("write_data") && names.contains("read_secret_values"));
    assert_eq!(f.permissions(&f.staging).await.body["role"], "analyst");
    let me = f.o.s.get("/v1/auth/me", &f.analyst).await;
    assert!(!me.body["org"]["permissions"]
        .to_string()
        .contains("write_data"));
    sqlx::query(insert).execute(&mut wire).await.unwrap();
    refused(&f.write(&f.analyst, &f.staging).await);
    let mut staging = wire_as(&f.o.s.gateway, ANALYST, &f.analyst, "staging").await;
    assert!(sqlx::query(insert).execute(&mut staging).await.is_err());
    // The query audit says where the role came from.
    let trail =
        f.o.s
            .get(
                &format!(
                    "/v1/environments/{}/audit/queries?principal_id={}",
                    f.dev, f.analyst_id
                ),
                &f.o.token,
            )
            .await;
    trail.expect(200);
    let entries = trail.body["data"].as_array().unwrap();
    let granted: Vec<&Value> = entries
        .iter()
        .filter(|e| e["outcome"] == "ok" && e["statement_kind"] == "write")
        .collect();
    assert_eq!(granted.len(), 2, "{}", trail.body);
    for e in &granted {
        assert_eq!(e["principal"]["role"], "developer");
        assert_eq!(e["principal"]["grant"], id.as_str());
    }
    assert!(entries
        .iter()
        .filter(|e| e["outcome"] == "refused")
        .all(|e| e["principal"]["role"] == "analyst" && e["principal"].get("grant").is_none()));

    // The analyst ends it early: their own role is back at once, on both doors.
    f.act(&f.analyst, &id, "revoke", json!({}))
        .await
        .expect(200);
    refused(&f.write(&f.analyst, &f.dev).await);
    f.read_secret(&f.analyst)
        .await
        .expect_error(403, "FORBIDDEN");
    assert!(sqlx::query(insert).execute(&mut wire).await.is_err());

    // A grant that runs out: refused at its deadline, before housekeeping has written it.
    let id2 = f.ask_for_developer(15).await;
    f.act(&f.admin, &id2, "approve", json!({}))
        .await
        .expect(200);
    f.write(&f.analyst, &f.dev).await.expect(200);
    f.clock.advance(15 * MINUTE - 1_000);
    f.write(&f.analyst, &f.dev).await.expect(200);
    f.clock.advance(1_000);
    refused(&f.write(&f.analyst, &f.dev).await);
    assert!(sqlx::query(insert).execute(&mut wire).await.is_err());
    let r = f.o.s.get(&format!("{}/{id2}", f.base()), &f.admin).await;
    assert_eq!(r.body["status"], "expired");

    // An IAM change made with a granted role names the grant: the developer, made admin in
    // development, changes a secret there.
    let r = f.ask_for(&f.developer, "admin", 30).await;
    r.expect(201);
    let admin_grant = r.body["request_id"].as_str().unwrap().to_string();
    f.act(&f.admin, &admin_grant, "approve", json!({}))
        .await
        .expect(200);
    f.o.s
        .post(
            &format!("/v1/environments/{}/secrets", f.dev),
            Some(&f.developer),
            json!({"key": "FEATURE_FLAG", "value": "on"}),
        )
        .await
        .expect(201);
    // … but it mints no API key that would outlive the grant, and reaches no other
    // environment.
    let r =
        f.o.s
            .post(
                &format!("/v1/environments/{}/api-keys", f.dev),
                Some(&f.developer),
                json!({"name": "mine", "scopes": ["read_only"]}),
            )
            .await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(r.error().1, "jit:lasting_credentials");
    f.o.s
        .post(
            &format!("/v1/environments/{}/secrets", f.staging),
            Some(&f.developer),
            json!({"key": "FEATURE_FLAG", "value": "on"}),
        )
        .await
        .expect_error(403, "FORBIDDEN");
    let audit =
        f.o.s
            .get(
                &format!(
                    "/v1/organizations/{}/audit/iam?actor_id={}&limit=200",
                    f.o.org, f.developer_id
                ),
                &f.o.token,
            )
            .await;
    audit.expect(200);
    let made: Vec<&Value> = audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource_type"] == "secret")
        .collect();
    assert_eq!(made.len(), 1, "{}", audit.body);
    assert_eq!(made[0]["via_grant"], admin_grant.as_str());
    let requested: Vec<&Value> = audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "jit.requested")
        .collect();
    assert!(requested.iter().all(|e| e.get("via_grant").is_none()));
    let verify =
        f.o.s
            .get(
                &format!("/v1/organizations/{}/audit/iam/verify", f.o.org),
                &f.o.token,
            )
            .await;
    assert_eq!(verify.body["chain_valid"], true, "{}", verify.body);

    // A denial, and housekeeping writing the expiry (what it does every minute).
    let id3 = f.ask_for_developer(30).await;
    f.act(
        &f.admin,
        &id3,
        "deny",
        json!({"comment": "use the fix script"}),
    )
    .await
    .expect(200);
    let store = enclave::server::open_store(&db.url).await.unwrap();
    let expired = store.expire_jit_requests(f.clock.now_ms()).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id.as_str(), id2);

    let got = rx
        .wait_for("every jit event", |g| {
            events.iter().all(|t| !Receiver::of_type(g, t).is_empty())
        })
        .await;
    let approvals = Receiver::of_type(&got, "jit.approved");
    assert_eq!(approvals.len(), 3);
    let first = approvals
        .iter()
        .map(|r| r.json())
        .find(|e| e["data"]["request_id"] == id.as_str())
        .unwrap();
    assert_eq!(first["env_id"], f.dev.as_str());
    assert_eq!(first["data"]["requested_role"], "developer");
    assert_eq!(first["data"]["status"], "approved");
    let denial = Receiver::of_type(&got, "jit.denied")[0].json();
    assert_eq!(denial["data"]["comment"], "use the fix script");
    let expiry = Receiver::of_type(&got, "jit.expired")[0].json();
    assert_eq!(expiry["data"]["request_id"], id2.as_str());
    let _ = wire.close().await;
}

impl Fixture {
    async fn ask_for(&self, token: &str, role: &str, minutes: i64) -> Resp {
        self.ask(
            token,
            json!({"requested_role": role, "reason": "on call", "duration_minutes": minutes}),
        )
        .await
    }
}

async fn requests_follow_their_rules(db: Db) {
    let f = Fixture::start(&db).await;
    let rule = |r: &Resp| r.error().1.to_string();
    // What may be asked for.
    for (body, field, why) in [
        (
            json!({"requested_role": "owner", "reason": "x", "duration_minutes": 60}),
            "requested_role",
            "not_requestable",
        ),
        (
            json!({"requested_role": "service_account", "reason": "x", "duration_minutes": 60}),
            "requested_role",
            "not_requestable",
        ),
        (
            json!({"requested_role": "analyst", "reason": "x", "duration_minutes": 60}),
            "requested_role",
            "above_current_role",
        ),
        (
            json!({"requested_role": "developer", "reason": "x", "duration_minutes": 14}),
            "duration_minutes",
            "range",
        ),
        (
            json!({"requested_role": "developer", "reason": "x", "duration_minutes": 1441}),
            "duration_minutes",
            "range",
        ),
        (
            json!({"requested_role": "developer", "reason": " ", "duration_minutes": 60}),
            "reason",
            "required",
        ),
    ] {
        let r = f.ask(&f.analyst, body.clone()).await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["field"], field, "{body}");
        assert_eq!(rule(&r), why, "{body}");
    }
    let r = f
        .ask(&f.analyst, json!({"requested_role": "developer", "reason": "x", "duration_minutes": 60, "extra": 1}))
        .await;
    r.expect_error(400, "VALIDATION_ERROR");
    let r = f
        .ask(
            &f.analyst,
            json!({"requested_role": "wizard", "reason": "x", "duration_minutes": 60}),
        )
        .await;
    r.expect_error(400, "VALIDATION_ERROR");
    // Only people ask: an API key is refused; so is a stranger (the environment is not found).
    let key =
        f.o.s
            .post(
                &format!("/v1/environments/{}/api-keys", f.dev),
                Some(&f.o.token),
                json!({"name": "k", "scopes": ["read_only"]}),
            )
            .await;
    let key = key.body["key"].as_str().unwrap().to_string();
    let body = json!({"requested_role": "developer", "reason": "x", "duration_minutes": 60});
    let r =
        f.o.s
            .keyed(Method::POST, &f.base(), &key, Some(body.clone()))
            .await;
    r.expect_error(403, "FORBIDDEN");
    let stranger =
        f.o.s
            .signup("eve@example.net", crate::common::PASSWORD)
            .await;
    f.ask(&stranger, body).await.expect_error(404, "NOT_FOUND");

    let id = f.ask_for_developer(60).await;
    let r = f.o.s.get(&format!("{}/{id}", f.base()), &f.analyst).await;
    r.expect(200);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["current_role"], "analyst");
    assert_eq!(r.body["requester_id"], f.analyst_id.as_str());
    assert!(r.body["expires_at"].is_null() && r.body["answer_by"].is_string());
    let again = f.ask_for(&f.analyst, "admin", 60).await;
    again.expect_error(409, "CONFLICT");
    assert_eq!(rule(&again), "jit_already_open");

    // Who sees what: the requester their own; owners, admins and auditors everyone's.
    let own = f.ask_for(&f.developer, "admin", 30).await;
    own.expect(201);
    let dev_request = own.body["request_id"].as_str().unwrap().to_string();
    let count = |token: String, query: &'static str| {
        let (s, base) = (&f.o.s, f.base());
        async move {
            let r = s.get(&format!("{base}{query}"), &token).await;
            r.expect(200);
            r.body["pagination"]["total"].as_i64().unwrap()
        }
    };
    assert_eq!(count(f.analyst.clone(), "").await, 1);
    assert_eq!(count(f.developer.clone(), "").await, 1);
    assert_eq!(count(f.admin.clone(), "").await, 2);
    assert_eq!(count(f.auditor.clone(), "?status=pending").await, 2);
    assert_eq!(count(f.o.token.clone(), "?status=approved").await, 0);
    f.o.s
        .get(&format!("{}?status=granted", f.base()), &f.admin)
        .await
        .expect_error(400, "VALIDATION_ERROR");
    f.o.s
        .get(&format!("{}/{dev_request}", f.base()), &f.analyst)
        .await
        .expect_error(404, "NOT_FOUND");
    f.o.s
        .get(
            &format!("{}/jit_01jzzzzzzzzzzzzzzzzzzzzzzz", f.base()),
            &f.admin,
        )
        .await
        .expect_error(404, "NOT_FOUND");

    // Who decides: an owner or admin, never the requester — nor an admin through a grant.
    let r = f.act(&f.analyst, &id, "approve", json!({})).await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(rule(&r), "jit:self_approval");
    let r = f.act(&f.developer, &id, "approve", json!({})).await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(rule(&r), "jit:decider");
    let r = f.act(&f.auditor, &id, "deny", json!({})).await;
    assert_eq!(rule(&r), "jit:decider");
    let long = "x".repeat(1001);
    f.act(&f.admin, &id, "approve", json!({"comment": long}))
        .await
        .expect_error(400, "VALIDATION_ERROR");
    f.act(&f.admin, &id, "approve", json!({"note": "x"}))
        .await
        .expect_error(400, "VALIDATION_ERROR");
    f.act(&f.admin, &dev_request, "approve", json!({}))
        .await
        .expect(200);
    let r = f.act(&f.developer, &id, "approve", json!({})).await;
    assert_eq!(rule(&r), "jit:decider", "an admin by grant decides nothing");
    // Approved once, with no body at all.
    let r =
        f.o.s
            .raw(f.o.s.request(
                Method::POST,
                &format!("{}/{id}/approve", f.base()),
                Some(&f.o.token),
            ))
            .await;
    r.expect(200);
    let r = f.act(&f.admin, &id, "deny", json!({})).await;
    r.expect_error(409, "CONFLICT");
    assert_eq!(rule(&r), "jit_not_pending");

    // Who revokes: an owner, an admin, or the requester.
    let r = f.act(&f.auditor, &id, "revoke", json!({})).await;
    assert_eq!(rule(&r), "jit:revoker");
    f.act(&f.admin, &id, "revoke", json!({})).await.expect(200);
    let r = f.act(&f.analyst, &id, "revoke", json!({})).await;
    r.expect_error(409, "CONFLICT");
    assert_eq!(rule(&r), "jit_not_approved");

    // An unanswered request expires after 24 hours: too late to approve.
    let late = f.ask_for_developer(60).await;
    f.clock.advance(24 * 60 * MINUTE);
    let r = f.o.s.get(&format!("{}/{late}", f.base()), &f.analyst).await;
    assert_eq!(r.body["status"], "expired");
    let r = f.act(&f.admin, &late, "approve", json!({})).await;
    assert_eq!(rule(&r), "jit_not_pending");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    // … and the developer's grant (30 minutes) ended long ago.
    assert_eq!(count(f.admin.clone(), "?status=expired").await, 2);
}

/// Two nodes on one PostgreSQL store: a grant revoked through one stops on the other within
/// a second — on its control plane and on its wire door — though the other had it cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_another_node() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let f = Fixture::start(&db).await;
    // Node b shares the store, the signing key and the master key, not the data directory
    // (each node's embedded engine keeps its own files).
    let own_dir = enclave_store::testing::TempSqlite::create();
    let mut args = crate::audit::walk_args(&db);
    args.jwt_key_file = Some(db.data_dir().join("jwt-signing-key.pk8"));
    args.master_key_file = Some(db.data_dir().join("master.key"));
    args.data_dir = Some(own_dir.dir.clone());
    let b = Server::start(args).await;
    let id = f.ask_for_developer(60).await;
    f.act(&f.admin, &id, "approve", json!({})).await.expect(200);
    let secret = format!("/v1/environments/{}/secrets/STRIPE_KEY", f.dev);
    b.get(&secret, &f.analyst).await.expect(200); // the grant is cached on b
    let mut wire = wire_as(&b.gateway, ANALYST, &f.analyst, "development").await;
    // A write the grant allows gets past authorization on b (the table is not in b's files,
    // which is another matter); refused, it is 42501.
    let write = "INSERT INTO missing_on_b VALUES (1)";
    let code = |e: sqlx::Error| match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.to_string()).unwrap_or_default(),
        other => panic!("{other}"),
    };
    let allowed = code(sqlx::query(write).execute(&mut wire).await.unwrap_err());
    assert_ne!(allowed, "42501");

    f.act(&f.analyst, &id, "revoke", json!({}))
        .await
        .expect(200);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let http = b.get(&secret, &f.analyst).await.status;
        let on_wire = code(sqlx::query(write).execute(&mut wire).await.unwrap_err());
        if http == 403 && on_wire == "42501" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node b still honours the revoked grant after 1 s ({http}, {on_wire})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = wire.close().await;
}
