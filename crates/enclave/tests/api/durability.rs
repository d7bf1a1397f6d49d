//! Restarts and crashes: a restart keeps all data; `kill -9` in the middle of writes loses no
//! committed request and corrupts nothing; several nodes on one PostgreSQL see each other's
//! changes at once.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::both;
use crate::common::{spawn_binary, Db, Server, OWNER_EMAIL, OWNER_PASSWORD};

both!(
    restart_keeps_data,
    kill_nine_loses_no_committed_write,
    unfinished_lifecycle_steps_finish_at_start
);

async fn restart_keeps_data(db: Db) {
    let s = db.start().await;
    let t = s.owner_token().await;
    let org = s
        .post(
            "/v1/organizations",
            Some(&t),
            json!({"name": "Keep", "slug": "keep", "billing_email": "a@b.io"}),
        )
        .await;
    let org_id = org.body["org_id"].as_str().unwrap().to_string();
    let jwks = s
        .raw(s.client.get(format!("{}/.well-known/jwks.json", s.url)))
        .await
        .body;
    s.stop().await;

    let s = db.start().await;
    assert!(s.bootstrap_org.is_none(), "bootstrap happens only once");
    // Tokens issued before the restart still verify: the signing key persisted.
    s.get(&format!("/v1/organizations/{org_id}"), &t)
        .await
        .expect(200);
    assert_eq!(
        s.raw(s.client.get(format!("{}/.well-known/jwks.json", s.url)))
            .await
            .body,
        jwks
    );
    let t2 = s.owner_token().await;
    assert_eq!(
        s.get("/v1/organizations", &t2).await.body["pagination"]["total"],
        2
    );
}

/// Starts the real binary, writes from several clients, kills it with SIGKILL mid-stream,
/// restarts it, and checks that every write that was answered 201 is there.
async fn kill_nine_loses_no_committed_write(db: Db) {
    let (mut child, url) = spawn_binary(&db, &[]).await;
    let client = reqwest::Client::new();
    let login = client
        .post(format!("{url}/v1/auth/login"))
        .json(&json!({"email": OWNER_EMAIL, "password": OWNER_PASSWORD}))
        .send()
        .await
        .unwrap();
    let token = login.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Writers count what was answered 201; the kill comes once several have committed (and
    // while they keep writing), however fast this machine creates organizations.
    let answered = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            let answered = answered.clone();
            tokio::spawn(async move {
                let mut committed = vec![];
                for i in 0.. {
                    let body = json!({"name": "crash", "slug": format!("crash-{w}-{i}"), "billing_email": "a@b.io"});
                    match client.post(format!("{url}/v1/organizations")).bearer_auth(&token).json(&body).send().await {
                        Ok(r) if r.status() == 201 => {
                            committed.push(r.json::<serde_json::Value>().await.map(|b| b["org_id"].as_str().unwrap().to_string()));
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break,
                    }
                }
                committed.into_iter().filter_map(Result::ok).collect::<Vec<_>>()
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::SeqCst) < 12 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let mut committed = vec![];
    for w in writers {
        committed.extend(w.await.unwrap());
    }
    assert!(
        committed.len() > 5,
        "the writers got going before the kill ({} writes)",
        committed.len()
    );

    let (mut child, url) = spawn_binary(&db, &[]).await;
    let s = Server::attach(&url);
    let token = s.owner_token().await;
    for org_id in &committed {
        s.get(&format!("/v1/organizations/{org_id}"), &token)
            .await
            .expect(200);
    }
    // Every answered write is there; at most the in-flight ones beyond them.
    let total = s.get("/v1/organizations", &token).await.body["pagination"]["total"]
        .as_u64()
        .unwrap() as usize;
    let expected = committed.len() + 1..=committed.len() + 1 + 4;
    assert!(
        expected.contains(&total),
        "{total} organizations, {} answered 201",
        committed.len()
    );
    if !db.is_postgres() {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(check, "ok");
    }
    child.start_kill().unwrap();
}

/// Two nodes on one PostgreSQL: what one changes, the other enforces within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_invalidations() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let a = db.start().await;
    let b = Server::start(db.args()).await;
    let owner = a.owner_token().await;
    let org = a.bootstrap_org.clone().unwrap();
    let (dev_id, dev) = a
        .add_member(&owner, &org, "dev@example.com", "developer")
        .await;
    b.get("/v1/auth/me", &dev).await.expect(200); // cached on node b now

    a.patch(
        &format!("/v1/organizations/{org}/users/{dev_id}"),
        &owner,
        json!({"status": "suspended"}),
    )
    .await
    .expect(200);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        if b.get("/v1/auth/me", &dev).await.status == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node b still accepts a suspended member after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Logout on b ends the session on a.
    let login = b.login_as(OWNER_EMAIL, OWNER_PASSWORD, None).await;
    let t = login["token"].as_str().unwrap();
    a.get("/v1/auth/me", t).await.expect(200);
    b.post("/v1/auth/logout", Some(t), json!({}))
        .await
        .expect(204);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while a.get("/v1/auth/me", t).await.status != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "node a still accepts a logged-out session after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

both!(migrate_then_sigterm_exits_cleanly);

/// `enclave migrate` prepares the database without serving; `enclave serve` then exits 0 on
/// SIGTERM, and what it wrote is there on the next start.
async fn migrate_then_sigterm_exits_cleanly(db: Db) {
    let bin = env!("CARGO_BIN_EXE_enclave");
    let migrate = tokio::process::Command::new(bin)
        .args(["migrate", "--database-url", &db.url])
        .arg("--data-dir")
        .arg(db.data_dir())
        .output()
        .await
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    assert!(String::from_utf8_lossy(&migrate.stdout).contains("migrations applied"));

    let mut child = tokio::process::Command::new(bin)
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--gateway-addr",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
            "--log-format",
            "json",
        ])
        .arg("--data-dir")
        .arg(db.data_dir())
        .env("ENCLAVE_BOOTSTRAP_EMAIL", OWNER_EMAIL)
        .env("ENCLAVE_BOOTSTRAP_PASSWORD", OWNER_PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(u) = line.strip_prefix("Enclave control plane listening on ") {
            url = Some(u.trim().to_string());
        }
        if line.starts_with("Log in:") {
            break;
        }
    }
    let s = Server::attach(&url.expect("listening line"));
    let t = s.owner_token().await;
    s.post(
        "/v1/organizations",
        Some(&t),
        json!({"name": "T", "slug": "term", "billing_email": "a@b.io"}),
    )
    .await
    .expect(201);

    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "clean exit, got {status}");

    let s = db.start().await;
    let t = s.owner_token().await;
    assert_eq!(
        s.get("/v1/organizations", &t).await.body["pagination"]["total"],
        2
    );
}

/// A node that died between an environment's lifecycle steps (created but not yet active;
/// marked for deletion but not yet removed) leaves them for the next start to finish.
async fn unfinished_lifecycle_steps_finish_at_start(db: Db) {
    let s = db.start().await;
    let t = s.owner_token().await;
    let org = s.bootstrap_org.clone().unwrap();
    s.stop().await;

    // What a crashed node leaves behind, written through the store as it would have.
    let store = enclave_store::connect(&db.url).await.unwrap();
    let env = |slug: &str| enclave_store::NewEnvironment {
        id: enclave_core::id::EnvId::generate(),
        org_id: enclave_core::id::OrgId::from(&org),
        name: slug.into(),
        slug: slug.into(),
        env_type: enclave_core::environment::EnvType::Custom,
        color: "#000000".into(),
        parent_env_id: None,
        description: String::new(),
        settings: Default::default(),
        policies: Vec::new(),
        capabilities: Vec::new(),
        required_keys: Vec::new(),
        secrets: None,
    };
    let half_made = store
        .create_environment(env("half-made"), None, &enclave_store::Origin::system())
        .await
        .unwrap();
    let half_gone = store
        .create_environment(env("half-gone"), None, &enclave_store::Origin::system())
        .await
        .unwrap();
    assert_eq!(half_made.status.as_str(), "provisioning");
    store
        .transition_environment(
            &half_gone.id,
            None,
            enclave_core::environment::Transition::Activate,
            &enclave_store::Origin::system(),
        )
        .await
        .unwrap();
    store
        .decommission_environment(&half_gone.id, None, &enclave_store::Origin::system())
        .await
        .unwrap();
    drop(store);

    let s = db.start().await;
    let made = s
        .get(&format!("/v1/environments/{}", half_made.id), &t)
        .await;
    made.expect(200);
    assert_eq!(made.body["status"], "active");
    s.get(&format!("/v1/environments/{}", half_gone.id), &t)
        .await
        .expect_error(404, "NOT_FOUND");
    let list = s
        .get(&format!("/v1/organizations/{org}/environments"), &t)
        .await;
    let idx: Vec<i64> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_i64().unwrap())
        .collect();
    assert_eq!(idx, [0, 1, 2, 3]);
    s.stop().await;
}
