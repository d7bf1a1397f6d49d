//! What secrets leave behind: no value in the data directory, the PostgreSQL database or the
//! server's log; a master key the database does not know stops the server; a rotation keeps
//! every value readable; a deleted environment's data key is gone from the files.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::both;
use crate::common::{binary, spawn_binary, spawn_binary_logging, Db, Org, Server};

both!(
    no_value_at_rest_or_in_logs,
    the_master_key_must_be_the_databases,
    rotation_keeps_every_value_readable,
    deleting_an_environment_erases_its_data_key,
    what_an_older_release_kept_in_clear_is_sealed_at_start,
);

/// A new webhook (to a loopback target) and an invitation of `email`: the answers that show
/// a signing secret and an invitation token, once.
async fn webhook_and_invitation(
    o: &Org,
    email: &str,
) -> (crate::common::Resp, crate::common::Resp) {
    let hook =
        o.s.post(
            &format!("/v1/organizations/{}/webhooks", o.org),
            Some(&o.token),
            json!({"url": "http://127.0.0.1:9/hook", "events": ["secret.changed"]}),
        )
        .await;
    hook.expect(201);
    let invite =
        o.s.post(
            &format!("/v1/organizations/{}/users", o.org),
            Some(&o.token),
            json!({"email": email, "role": "analyst"}),
        )
        .await;
    invite.expect(201);
    (hook, invite)
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

/// Every row of every table of a PostgreSQL database as text, bytea included (hex).
async fn postgres_rows(url: &str) -> String {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "secrets"));
    let mut all = String::new();
    for t in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT CAST(t AS TEXT) FROM \"{t}\" t"))
                .fetch_all(&pool)
                .await
                .unwrap();
        all.extend(rows);
    }
    pool.close().await;
    all
}

async fn no_value_at_rest_or_in_logs(db: Db) {
    let canary = format!("cnry{}", ulid::Ulid::new().to_string().to_lowercase());
    let comment = format!("comment{}", ulid::Ulid::new().to_string().to_lowercase());
    let log_dir = tempfile_dir();
    let log = std::fs::File::create(log_dir.join("server.log")).unwrap();
    let (child, url) = spawn_binary_logging(
        &db,
        &[
            ("ENCLAVE_LOG", "debug"),
            ("ENCLAVE_ENVIRONMENT_QUOTAS", "free=unlimited"),
            ("ENCLAVE_WEBHOOK_ALLOW_PRIVATE", "true"),
        ],
        Stdio::from(log),
    )
    .await;
    let s = Server::attach(&url);
    let token = s.owner_token().await;
    let org = s
        .login_as(
            crate::common::OWNER_EMAIL,
            crate::common::OWNER_PASSWORD,
            None,
        )
        .await["org"]["org_id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = Org { s, token, org };
    let (dev, stg) = (o.env("development").await, o.env("staging").await);
    let base = format!("/v1/environments/{dev}/secrets");
    // Every way a value comes in or goes out.
    o.s.post(
        &base,
        Some(&o.token),
        json!({"key": "ONE", "value": format!("{canary}-1"), "comment": comment}),
    )
    .await
    .expect(201);
    o.s.post(
        &base,
        Some(&o.token),
        json!({"secrets": [{"key": "TWO", "value": format!("{canary}-2")}]}),
    )
    .await
    .expect(201);
    let import =
        o.s.request(
            reqwest::Method::POST,
            &format!("{base}/import"),
            Some(&o.token),
        )
        .body(format!("THREE=\"{canary}-3\"\n"));
    o.s.raw(import).await.expect(200);
    o.s.patch(
        &format!("{base}/ONE"),
        &o.token,
        json!({"value": format!("{canary}-4")}),
    )
    .await
    .expect(200);
    o.s.post(
        &format!("{base}/ONE/versions/1/restore"),
        Some(&o.token),
        json!({}),
    )
    .await
    .expect(200);
    o.s.post(
        &format!("/v1/environments/{dev}/promote"),
        Some(&o.token),
        json!({"target_env_id": stg}),
    )
    .await
    .expect(200);
    o.s.post(
        &format!("/v1/environments/{dev}/clone"),
        Some(&o.token),
        json!({"name": "Copy"}),
    )
    .await
    .expect(201);
    let export =
        o.s.get(&format!("{base}/export?format=json"), &o.token)
            .await;
    assert_eq!(
        export.body["TWO"],
        format!("{canary}-2"),
        "the values are there to find"
    );
    o.s.get(&format!("{base}?reveal=true"), &o.token)
        .await
        .expect(200);
    o.s.get(
        &format!("/v1/environments/{dev}/diff?against={stg}"),
        &o.token,
    )
    .await
    .expect(200);
    // Refused requests carrying values.
    let bad =
        o.s.post(
            &base,
            Some(&o.token),
            json!({"key": "9bad", "value": format!("{canary}-5")}),
        )
        .await;
    assert!(!bad.body.to_string().contains(&canary));
    let bad =
        o.s.raw(
            o.s.request(
                reqwest::Method::POST,
                &format!("{base}/import"),
                Some(&o.token),
            )
            .body(format!("X=\"{canary}-6\n")),
        )
        .await;
    bad.expect(400);
    assert!(!bad.body.to_string().contains(&canary));
    // Webhook signing secrets (a rotation keeps the old one for a day) and an invitation
    // token: shown once, kept only sealed or hashed.
    let (hook, invite) = webhook_and_invitation(&o, "invited@example.com").await;
    let hook_id = hook.body["webhook_id"].as_str().unwrap();
    let rotated =
        o.s.post(
            &format!(
                "/v1/organizations/{}/webhooks/{hook_id}/rotate-secret",
                o.org
            ),
            Some(&o.token),
            json!({}),
        )
        .await;
    rotated.expect(200);
    let shown_once: Vec<String> = [
        &hook.body["signing_secret"],
        &rotated.body["signing_secret"],
        &invite.body["invitation"]["token"],
    ]
    .iter()
    .map(|v| v.as_str().unwrap().to_string())
    .collect();
    drop(child);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let data_dir = db.data_dir();
    for secret in &shown_once {
        assert_eq!(
            files_containing(&data_dir, secret.as_bytes()),
            Vec::<String>::new(),
            "a webhook secret or invitation token in the data directory"
        );
    }
    assert!(data_dir.join("master.key").exists());
    assert_eq!(
        files_containing(&data_dir, canary.as_bytes()),
        Vec::<String>::new(),
        "a value in the data directory"
    );
    let logged = std::fs::read_to_string(log_dir.join("server.log")).unwrap();
    assert!(
        logged.contains("request"),
        "the log was written: {} bytes",
        logged.len()
    );
    assert!(!logged.contains(&canary), "a value in the log");
    if db.is_postgres() {
        let rows = postgres_rows(&db.url).await;
        let hex: String = canary.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !rows.contains(&canary) && !rows.contains(&hex),
            "a value in PostgreSQL"
        );
        for secret in &shown_once {
            assert!(!rows.contains(secret.as_str()), "{secret} in PostgreSQL");
        }
        // The scan sees what is stored in the clear: comments are not secret.
        assert!(rows.contains(&comment), "the scan reads the rows");
    } else {
        assert!(
            !files_containing(&data_dir, comment.as_bytes()).is_empty(),
            "the scan reads the database file"
        );
    }
    std::fs::remove_dir_all(log_dir).ok();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("enclave-log-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `enclave serve` expecting it to refuse to start; returns what it printed.
async fn refused_start(db: &Db, extra: &[(&str, &str)]) -> String {
    let mut cmd = binary(db);
    cmd.arg("serve")
        .env("ENCLAVE_HTTP_ADDR", "127.0.0.1:0")
        .env("ENCLAVE_GATEWAY_ADDR", "127.0.0.1:0")
        .env("ENCLAVE_LOG_FORMAT", "json")
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("a refused start ends quickly")
        .unwrap();
    assert!(
        !out.status.success(),
        "the server started: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

async fn admin(db: &Db, args: &[&str], extra: &[(&str, &str)]) -> String {
    let out = binary(db)
        .args(args)
        .envs(extra.iter().copied())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn the_master_key_must_be_the_databases(db: Db) {
    let (child, url) = spawn_binary(&db, &[]).await;
    let s = Server::attach(&url);
    let token = s.owner_token().await;
    let me = s.get("/v1/auth/me", &token).await;
    let org = me.body["org"]["org_id"].as_str().unwrap().to_string();
    let o = Org { s, token, org };
    let dev = o.env("development").await;
    o.set(&dev, "KEPT", "still-here").await;
    drop(child);
    let key_file = db.data_dir().join("master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is its owner's only");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = refused_start(&db, &[]).await;
        assert!(
            err.contains("readable by others") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Another key: refused, saying which key the database expects.
    let other = enclave_core::secret::crypto::MasterKey::generate();
    let err = refused_start(&db, &[("ENCLAVE_MASTER_KEY", &other.encode())]).await;
    assert!(err.contains("does not match this database"), "{err}");
    assert!(err.contains(other.id()), "{err}");
    assert!(
        !err.contains(&other.encode()),
        "the key itself is never printed"
    );
    let err = refused_start(&db, &[("ENCLAVE_MASTER_KEY", "short")]).await;
    assert!(
        err.contains("ENCLAVE_MASTER_KEY is not a valid master key"),
        "{err}"
    );
    // No key file, and the database has secrets: refused, not a fresh key.
    let away = db.data_dir().join("master.key.away");
    std::fs::rename(&key_file, &away).unwrap();
    let err = refused_start(&db, &[]).await;
    assert!(err.contains("no master key"), "{err}");
    assert!(!key_file.exists(), "no new key was made");
    std::fs::rename(&away, &key_file).unwrap();
    // The right key still opens everything.
    let (_child, url) = spawn_binary(&db, &[]).await;
    let o = Org {
        s: Server::attach(&url),
        ..o
    };
    assert_eq!(o.value(&dev, "KEPT").await.as_deref(), Some("still-here"));
}

async fn rotation_keeps_every_value_readable(db: Db) {
    let o = Org::start(&db).await;
    let (dev, stg, prod) = (
        o.env("development").await,
        o.env("staging").await,
        o.env("production").await,
    );
    o.set(&dev, "A", "dev-a").await;
    o.set(&stg, "B", "stg-b").await;
    // A member's TOTP secret is sealed with the master key too, and moves with it.
    let (_, member) =
        o.s.add_member(&o.token, &o.org, "totp@example.com", "developer")
            .await;
    let (totp, _) = crate::account::enrol_totp(&o.s, &member, crate::common::PASSWORD).await;
    let key_file = db.data_dir().join("master.key");
    let old = std::fs::read_to_string(&key_file).unwrap();
    let out = admin(&db, &["admin", "rotate-master-key"], &[]).await;
    assert!(out.contains("2 data key(s) re-wrapped"), "{out}");
    let new = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(old, new);
    assert!(!db.data_dir().join("master.key.next").exists());
    // The running server keeps serving, and takes the new key for a new data key.
    assert_eq!(o.value(&dev, "A").await.as_deref(), Some("dev-a"));
    o.set(&prod, "C", "prod-c").await;
    o.s.stop().await;
    // A fresh start opens every value with the new key; the old key is refused.
    let s = Server::start(crate::audit::walk_args(&db)).await;
    let o2 = Org {
        token: s.owner_token().await,
        s,
        org: o.org.clone(),
    };
    for (env, k, v) in [
        (&dev, "A", "dev-a"),
        (&stg, "B", "stg-b"),
        (&prod, "C", "prod-c"),
    ] {
        assert_eq!(o2.value(env, k).await.as_deref(), Some(v));
    }
    let next_code =
        enclave_api::auth::mfa::code_at(&totp, chrono::Utc::now().timestamp() as u64 + 30).unwrap();
    crate::account::login_with(
        &o2.s,
        "totp@example.com",
        crate::common::PASSWORD,
        &next_code,
    )
    .await;
    o2.s.stop().await;
    let err = refused_start(&db, &[("ENCLAVE_MASTER_KEY", old.trim())]).await;
    assert!(err.contains("does not match"), "{err}");

    // A configured key rotates to the one given; every node then starts with it.
    let next = enclave_core::secret::crypto::MasterKey::generate();
    let out = admin(
        &db,
        &["admin", "rotate-master-key"],
        &[
            ("ENCLAVE_MASTER_KEY", new.trim()),
            ("ENCLAVE_NEW_MASTER_KEY", &next.encode()),
        ],
    )
    .await;
    assert!(
        out.contains("3 data key(s)") && out.contains("ENCLAVE_NEW_MASTER_KEY"),
        "{out}"
    );
    let mut args = crate::audit::walk_args(&db);
    args.master_key = Some(next.encode());
    let s = Server::start(args).await;
    let o3 = Org {
        token: s.owner_token().await,
        s,
        org: o.org.clone(),
    };
    assert_eq!(o3.value(&stg, "B").await.as_deref(), Some("stg-b"));
    let err = refused_start(&db, &[]).await;
    assert!(
        err.contains("does not match"),
        "the key file holds the previous key: {err}"
    );
}

async fn deleting_an_environment_erases_its_data_key(db: Db) {
    let o = Org::start(&db).await;
    let env = o.env("staging").await;
    o.set(&env, "GONE", "soon").await;
    let store = enclave_store::connect(&db.url).await.unwrap();
    let wrapped = store
        .data_key(&enclave_core::id::EnvId::from(&env))
        .await
        .unwrap()
        .unwrap()
        .wrapped;
    let files = db.data_dir();
    if !db.is_postgres() {
        assert!(
            !files_containing(&files, &wrapped).is_empty(),
            "the scan finds the stored key"
        );
    }
    o.s.delete(&format!("/v1/environments/{env}"), &o.token)
        .await
        .expect(204);
    assert!(store
        .data_key(&enclave_core::id::EnvId::from(&env))
        .await
        .unwrap()
        .is_none());
    if !db.is_postgres() {
        assert_eq!(
            files_containing(&files, &wrapped),
            Vec::<String>::new(),
            "the wrapped key is erased from the files"
        );
    }
}

/// A webhook signing secret and an invitation token stored in clear (as releases before the
/// hardening did) are sealed and hashed when the server starts; the invitation still works.
async fn what_an_older_release_kept_in_clear_is_sealed_at_start(db: Db) {
    use crate::audit::sql;
    let o = Org::start(&db).await;
    let (hook, invite) = webhook_and_invitation(&o, "late@example.com").await;
    let hook_id = hook.body["webhook_id"].as_str().unwrap().to_string();
    let user_id = invite.body["user_id"].as_str().unwrap().to_string();
    o.s.stop().await;
    // What an older release left behind.
    let (old_secret, old_token) = ("whsec_b2xkcmVsZWFzZQ", "inv_oldreleasetoken1234567890");
    sql(
        &db,
        &format!("UPDATE webhooks SET secret = '{old_secret}' WHERE id = '{hook_id}'"),
    )
    .await;
    sql(
        &db,
        &format!("UPDATE memberships SET invite_token = '{old_token}' WHERE user_id = '{user_id}'"),
    )
    .await;

    let s = Server::start(db.args()).await;
    let stored = sql(
        &db,
        &format!("SELECT secret FROM webhooks WHERE id = '{hook_id}'"),
    )
    .await
    .unwrap();
    assert!(stored.starts_with("sealed:v1:"), "{stored}");
    assert!(!stored.contains(old_secret));
    let stored = sql(
        &db,
        &format!("SELECT invite_token FROM memberships WHERE user_id = '{user_id}'"),
    )
    .await
    .unwrap();
    assert_eq!(stored.len(), 64, "a SHA-256 in hex: {stored}");
    s.post(
        "/v1/auth/accept-invite",
        None,
        json!({"token": old_token, "password": crate::common::PASSWORD}),
    )
    .await
    .expect(200);
    s.stop().await;
}
