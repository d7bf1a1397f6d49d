//! The `enclave env …` client subcommands, run as a user would run them, against a real
//! server.

use serde_json::Value;

use crate::both;
use crate::common::{Db, Server};

both!(
    sign_in_once_and_credential_precedence,
    waits_out_rate_limits,
    env_commands,
    keys_commands,
    policy_commands,
    secret_commands,
    data_commands
);

pub(crate) struct Cli {
    pub(crate) url: String,
    pub(crate) token: String,
}

pub(crate) struct Out {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Cli {
    pub(crate) async fn run(&self, args: &[&str]) -> Out {
        self.run_as(args, ("ENCLAVE_TOKEN", &self.token), None)
            .await
    }

    /// Runs with one credential variable (`ENCLAVE_TOKEN` or `ENCLAVE_API_KEY`) and, when
    /// given, `stdin` as standard input.
    async fn run_as(&self, args: &[&str], credential: (&str, &str), stdin: Option<&str>) -> Out {
        self.run_with(args, &[credential], stdin).await
    }

    /// Runs with `vars` as the only Enclave variables besides `ENCLAVE_URL` (no stored session
    /// unless `ENCLAVE_CONFIG_DIR` is among them).
    async fn run_with(&self, args: &[&str], vars: &[(&str, &str)], stdin: Option<&str>) -> Out {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_enclave"))
            .args(args)
            .env("ENCLAVE_URL", &self.url)
            .env_remove("ENCLAVE_TOKEN")
            .env_remove("ENCLAVE_API_KEY")
            .env("ENCLAVE_CONFIG_DIR", "/nonexistent/enclave-test-config")
            .envs(vars.iter().copied())
            .env_remove("ENCLAVE_ORG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .await
            .unwrap();
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// Runs with `--json`, expects success, parses stdout.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", out.stdout))
    }
}

fn slugs(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["slug"].as_str().unwrap())
        .collect()
}

/// `enclave login` stores a session (0600) that later commands use and renew; `whoami` says
/// which credential each kind of command uses; flags beat variables, and with both variables
/// an environment command uses the key, saying so.
async fn sign_in_once_and_credential_precedence(db: Db) {
    let s = Server::start(db.args()).await;
    let cli = Cli {
        url: s.url.clone(),
        token: s.owner_token().await,
    };
    let dir = db.data_dir().join("cli-config");
    let config = dir.to_str().unwrap();
    let session = dir.join("session.json");
    let with_session = [("ENCLAVE_CONFIG_DIR", config)];

    let none = cli.run_with(&["whoami"], &with_session, None).await;
    assert_ne!(none.code, 0);
    assert!(none.stderr.contains("enclave login"), "{}", none.stderr);
    let wrong = cli
        .run_with(
            &[
                "login",
                "--email",
                crate::common::OWNER_EMAIL,
                "--password-stdin",
            ],
            &with_session,
            Some("not-the-password-1\n"),
        )
        .await;
    assert_ne!(wrong.code, 0);
    assert!(wrong.stderr.contains("401"), "{}", wrong.stderr);
    let login = cli
        .run_with(
            &[
                "login",
                "--email",
                crate::common::OWNER_EMAIL,
                "--password-stdin",
            ],
            &with_session,
            Some(&format!("{}\n", crate::common::OWNER_PASSWORD)),
        )
        .await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&session).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let me = cli.run_with(&["whoami"], &with_session, None).await;
    assert_eq!(me.code, 0, "{}", me.stderr);
    assert!(
        me.stdout.contains(crate::common::OWNER_EMAIL),
        "{}",
        me.stdout
    );
    assert!(
        me.stdout.contains("the session of `enclave login`"),
        "{}",
        me.stdout
    );
    // An expired access token is renewed with the refresh token, and stored again.
    let stored: Value = serde_json::from_slice(&std::fs::read(&session).unwrap()).unwrap();
    let mut expired = stored.clone();
    expired["expires_at"] = serde_json::json!(0);
    std::fs::write(&session, serde_json::to_vec(&expired).unwrap()).unwrap();
    let listed = cli.run_with(&["env", "list"], &with_session, None).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let renewed: Value = serde_json::from_slice(&std::fs::read(&session).unwrap()).unwrap();
    assert_ne!(renewed["token"], stored["token"]);
    assert!(renewed["expires_at"].as_i64().unwrap() > 0);

    // Both variables: environment commands use the key (said on stderr), the others the token.
    let dev = cli.json(&["env", "get", "development"]).await;
    let env_id = dev["env_id"].as_str().unwrap();
    let key = s
        .post(
            &format!("/v1/environments/{env_id}/api-keys"),
            Some(&cli.token),
            serde_json::json!({"name": "cli", "scopes": ["read_only"]}),
        )
        .await;
    key.expect(201);
    let key = key.body["key"].as_str().unwrap();
    let both = [
        ("ENCLAVE_TOKEN", cli.token.as_str()),
        ("ENCLAVE_API_KEY", key),
    ];
    let q = cli
        .run_with(&["query", "SELECT 1 AS one"], &both, None)
        .await;
    assert_eq!(q.code, 0, "{}", q.stderr);
    assert!(q.stderr.contains("using ENCLAVE_API_KEY"), "{}", q.stderr);
    let envs = cli.run_with(&["env", "list"], &both, None).await;
    assert_eq!(envs.code, 0, "{}", envs.stderr);
    assert!(
        envs.stderr.contains("using ENCLAVE_TOKEN"),
        "{}",
        envs.stderr
    );
    let who = cli.run_with(&["whoami"], &both, None).await;
    assert!(
        who.stdout
            .contains("ENCLAVE_TOKEN for env and audit; ENCLAVE_API_KEY for query"),
        "{}",
        who.stdout
    );
    // A flag beats both variables.
    let flagged = cli
        .run_with(
            &["whoami", "--api-key", key],
            &[("ENCLAVE_TOKEN", cli.token.as_str())],
            None,
        )
        .await;
    assert!(flagged.stdout.contains("API key cli"), "{}", flagged.stdout);
    assert!(
        flagged.stdout.contains("the --api-key flag"),
        "{}",
        flagged.stdout
    );

    // An account with a second factor signs in with its code.
    let (_, member) = s
        .add_member(
            &cli.token,
            s.bootstrap_org.as_deref().unwrap(),
            "dev@example.com",
            "developer",
        )
        .await;
    let (secret, _) = crate::account::enrol_totp(&s, &member, crate::common::PASSWORD).await;
    let code = enclave_api::auth::mfa::code_at(&secret, chrono::Utc::now().timestamp() as u64 + 30)
        .unwrap();
    let pw = format!("{}\n", crate::common::PASSWORD);
    let asked = cli
        .run_with(
            &["login", "--email", "dev@example.com", "--password-stdin"],
            &with_session,
            Some(&pw),
        )
        .await;
    assert!(asked.stderr.contains("--code"), "{}", asked.stderr);
    let mfa = cli
        .run_with(
            &[
                "login",
                "--email",
                "dev@example.com",
                "--password-stdin",
                "--code",
                &code,
            ],
            &with_session,
            Some(&pw),
        )
        .await;
    assert_eq!(mfa.code, 0, "{}", mfa.stderr);
    let me = cli.run_with(&["whoami"], &with_session, None).await;
    assert!(me.stdout.contains("dev@example.com"), "{}", me.stdout);

    let dev_session: Value = serde_json::from_slice(&std::fs::read(&session).unwrap()).unwrap();
    let out = cli.run_with(&["logout"], &with_session, None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!session.exists());
    let gone = s
        .get("/v1/auth/me", dev_session["token"].as_str().unwrap())
        .await;
    assert_eq!(
        gone.status, 401,
        "logout ends the session on the server too"
    );
}

/// A 429 with a short `Retry-After` is waited out (and said on stderr), not shown as a failure.
async fn waits_out_rate_limits(db: Db) {
    let mut args = db.args();
    // One request per second, no burst: the second command in a row meets the limit.
    args.rate_limits = Some("free=60/1".into());
    let s = Server::start(args).await;
    let cli = Cli {
        url: s.url.clone(),
        token: s.owner_token().await,
    };
    let mut retried = false;
    for _ in 0..3 {
        let out = cli.run(&["env", "list"]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        retried |= out
            .stderr
            .contains("rate limited by the server: retrying in 1 s (Retry-After)");
    }
    assert!(retried, "three commands within a second met the limit");
}

async fn env_commands(db: Db) {
    let mut args = db.args();
    args.default_tier = Some("enterprise".into());
    let s = Server::start(args).await;
    let cli = Cli {
        url: s.url.clone(),
        token: s.owner_token().await,
    };

    // A table for people.
    let table = cli.run(&["env", "list"]).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("INDEX  SLUG"), "{}", table.stdout);
    let cells: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        cells[..6],
        ["2", "production", "Production", "prod", "active", "false"]
    );
    // Columns line up under their headers.
    assert_eq!(lines[0].find("SLUG"), lines[3].find("production"));

    let e = cli
        .json(&[
            "env",
            "create",
            "Preview 7",
            "--parent",
            "staging",
            "--query-timeout-ms",
            "5000",
        ])
        .await;
    assert_eq!(e["slug"], "preview-7");
    assert_eq!(e["settings"]["query_timeout_ms"], 5000);
    let staging = cli.json(&["env", "get", "staging"]).await;
    assert_eq!(e["parent_env_id"], staging["env_id"]);

    let u = cli
        .json(&[
            "env",
            "update",
            "preview-7",
            "--slug",
            "pr-7",
            "--index",
            "0",
            "--color",
            "#abcdef",
        ])
        .await;
    assert_eq!(
        (u["slug"].as_str(), u["index"].as_i64()),
        (Some("pr-7"), Some(0))
    );
    // The old slug still resolves.
    assert_eq!(
        cli.json(&["env", "get", "preview-7"]).await["env_id"],
        e["env_id"]
    );

    let c = cli
        .json(&["env", "clone", "pr-7", "PR 7 copy", "--include", "settings"])
        .await;
    assert_eq!(c["settings"]["query_timeout_ms"], 5000);
    let d = cli.json(&["env", "diff", "pr-7", "production"]).await;
    assert_eq!(d["identical"], false);
    let text = cli.run(&["env", "diff", "pr-7", "production"]).await;
    let row = text
        .stdout
        .lines()
        .find(|l| l.contains("query_timeout_ms"))
        .unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["setting", "query_timeout_ms", "different", "5000", "30000"]
    );

    let reordered = cli
        .json(&[
            "env",
            "reorder",
            "production",
            "staging",
            "development",
            "pr-7",
            "pr-7-copy",
        ])
        .await;
    assert!(reordered["order_version"].is_i64());
    let list = cli.json(&["env", "list"]).await;
    assert_eq!(
        slugs(&list),
        ["production", "staging", "development", "pr-7", "pr-7-copy"]
    );
    let filtered = cli
        .json(&["env", "list", "--type", "custom", "--query", "copy"])
        .await;
    assert_eq!(slugs(&filtered), ["pr-7-copy"]);

    let preview = cli.json(&["env", "delete", "pr-7-copy", "--dry-run"]).await;
    assert_eq!(preview["dry_run"], true);
    let deleted = cli.run(&["env", "delete", "pr-7-copy"]).await;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert!(deleted.stdout.starts_with("deleted env_"));
    assert_eq!(
        cli.json(&["env", "suspend", "pr-7"]).await["status"],
        "suspended"
    );
    assert_eq!(
        cli.json(&["env", "resume", "pr-7"]).await["status"],
        "active"
    );

    // Failures: the API's error on stderr, exit code 1, nothing on stdout.
    cli.json(&["env", "update", "staging", "--lock"]).await;
    let refused = cli.run(&["env", "update", "staging", "--name", "x"]).await;
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("409 CONFLICT"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("environment_locked"));
    assert!(refused.stdout.is_empty());
    let missing = cli.run(&["env", "get", "nope"]).await;
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("404 NOT_FOUND"),
        "{}",
        missing.stderr
    );
    let odd = cli.run(&["env", "get", "../../v1/organizations"]).await;
    assert_eq!(odd.code, 1);
    assert!(odd.stderr.contains("not an id or slug"), "{}", odd.stderr);
    let anonymous = Cli {
        url: s.url.clone(),
        token: String::new(),
    };
    let no_token = anonymous.run(&["env", "list"]).await;
    assert_eq!(no_token.code, 1);
    assert!(no_token.stderr.contains("ENCLAVE_TOKEN"));
    let bad_token = Cli {
        url: s.url.clone(),
        token: "nope".into(),
    };
    let r = bad_token.run(&["env", "list"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    s.stop().await;
}

async fn keys_commands(db: Db) {
    let s = db.start().await;
    let cli = Cli {
        url: s.url.clone(),
        token: s.owner_token().await,
    };
    let created = cli
        .json(&[
            "keys",
            "create",
            "ci",
            "--env",
            "production",
            "--scopes",
            "read_only,secrets:read",
            "--expires-in-days",
            "30",
        ])
        .await;
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("ek_live_"));
    let kid = created["key_id"].as_str().unwrap().to_string();
    // The key works as the API's credential.
    let me = s
        .keyed(reqwest::Method::GET, "/v1/auth/me", &key, None)
        .await;
    assert_eq!(me.body["key"]["key_id"], kid.as_str());

    // The table shows metadata, never the plaintext; a new key's plaintext is printed once.
    let table = cli.run(&["keys", "list", "--env", "production"]).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.starts_with("KEY_ID"), "{}", table.stdout);
    assert!(table.stdout.contains(&kid) && !table.stdout.contains(&key[35..]));
    let rotated = cli
        .run(&[
            "keys",
            "rotate",
            &kid,
            "--env",
            "production",
            "--grace-period-hours",
            "1",
        ])
        .await;
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    let line = rotated
        .stdout
        .lines()
        .find(|l| l.starts_with("key (shown once): "))
        .unwrap();
    let new_key = line.trim_start_matches("key (shown once): ");
    assert!(new_key.starts_with("ek_live_") && new_key != key);
    let list = cli.json(&["keys", "list", "--env", "production"]).await;
    let statuses: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["active", "rotating"]);

    let revoked = cli
        .json(&["keys", "revoke", &kid, "--env", "production"])
        .await;
    assert_eq!(revoked["status"], "revoked");
    let again = cli
        .run(&["keys", "revoke", &kid, "--env", "production"])
        .await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("409 CONFLICT"), "{}", again.stderr);
    let no_env = cli.run(&["keys", "list"]).await;
    assert_eq!(no_env.code, 1);
    assert!(no_env.stderr.contains("--env"));
    let bad = cli
        .run(&[
            "keys",
            "create",
            "x",
            "--env",
            "production",
            "--scopes",
            "nope",
        ])
        .await;
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("unknown_scope"), "{}", bad.stderr);
    s.stop().await;
}

/// The worked example of docs/policies.md, through the CLI: policies from files in staging,
/// evaluated, promoted to production (dry run first), then versions and a restore.
async fn policy_commands(db: Db) {
    let s = db.start().await;
    let cli = Cli {
        url: s.url.clone(),
        token: s.owner_token().await,
    };
    let dir = tempfile_dir(&db);
    let write = |name: &str, body: Value| {
        let path = dir.join(name);
        std::fs::write(&path, body.to_string()).unwrap();
        path.to_string_lossy().into_owned()
    };
    let pii = write(
        "pii.json",
        serde_json::json!({"name": "pii-masking", "type": "column_masking", "rules": [
            {"table": "customers", "column": "email", "function": "partial", "visible_chars": 4, "exempt_roles": ["admin"]},
            {"table": "customers", "column": "ssn", "function": "hash"}]}),
    );
    let dept = write(
        "dept.json",
        serde_json::json!({"name": "department-isolation", "type": "row_level_security", "rules": [
            {"table": "orders", "filter": "department = {department}", "exempt_roles": ["owner", "admin"]}]}),
    );
    let deny = write(
        "deny.json",
        serde_json::json!({"name": "no-pii-export", "effect": "deny", "actions": ["export"],
            "resources": ["table:customers"], "conditions": {"principal.role": {"not_in": ["owner"]}}}),
    );
    for file in [&pii, &dept, &deny] {
        cli.json(&["policies", "create", "--env", "staging", "--file", file])
            .await;
    }
    let table = cli.run(&["policies", "list", "--env", "staging"]).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.starts_with("POLICY_ID"), "{}", table.stdout);
    assert!(
        table.stdout.contains("department-isolation")
            && table.stdout.contains("deny export on table:customers")
    );

    let e = cli
        .run(&[
            "policies",
            "evaluate",
            "--env",
            "staging",
            "--tables",
            "customers,orders",
            "--role",
            "analyst",
            "--attr",
            "department=sales",
        ])
        .await;
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert!(e.stdout.starts_with("decision: allow"), "{}", e.stdout);
    assert!(
        e.stdout.contains("customers.email") && e.stdout.contains("partial"),
        "{}",
        e.stdout
    );
    assert!(
        e.stdout.contains("department = $1") && e.stdout.contains("sales"),
        "{}",
        e.stdout
    );
    let export = cli
        .json(&[
            "policies",
            "evaluate",
            "--env",
            "staging",
            "--action",
            "export",
            "--tables",
            "customers",
            "--role",
            "developer",
        ])
        .await;
    assert_eq!(export["denied_by"]["name"], "no-pii-export");

    let dry = cli
        .run(&["env", "promote", "staging", "production", "--dry-run"])
        .await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("masking_rule") && dry.stdout.contains("dry run: nothing changed"),
        "{}",
        dry.stdout
    );
    let prod = cli.json(&["policies", "list", "--env", "production"]).await;
    assert_eq!(prod["data"], serde_json::json!([]));
    let done = cli.json(&["env", "promote", "staging", "production"]).await;
    assert_eq!(done["changes"]["policies_created"], 3);
    let again = cli.run(&["env", "promote", "staging", "production"]).await;
    assert!(
        again.stdout.contains("nothing to promote"),
        "{}",
        again.stdout
    );
    let history = cli.json(&["env", "promotions", "production"]).await;
    assert_eq!(history["data"].as_array().unwrap().len(), 2);

    cli.json(&["policies", "disable", "--env", "production", "pii-masking"])
        .await;
    let versions = cli
        .json(&["policies", "versions", "--env", "production", "pii-masking"])
        .await;
    assert_eq!(versions["data"][0]["enabled"], false);
    let restored = cli
        .json(&[
            "policies",
            "restore",
            "--env",
            "production",
            "pii-masking",
            "1",
        ])
        .await;
    assert_eq!(
        (restored["enabled"].clone(), restored["version"].clone()),
        (serde_json::json!(true), serde_json::json!(3))
    );
    let gone = cli
        .run(&["policies", "delete", "--env", "production", "no-pii-export"])
        .await;
    assert_eq!(gone.code, 0, "{}", gone.stderr);
    let missing = cli
        .run(&["policies", "get", "--env", "production", "no-pii-export"])
        .await;
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no policy `no-pii-export`"),
        "{}",
        missing.stderr
    );
    let bad = cli
        .run(&["policies", "create", "--env", "staging", "--file", &deny])
        .await;
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("no-pii-export"),
        "a taken name is explained: {}",
        bad.stderr
    );
}

/// `enclave secrets …` and `enclave run`, with a token and with an API key.
async fn secret_commands(db: Db) {
    let s = db.start().await;
    let cli = Cli {
        url: s.url.clone(),
        token: s.owner_token().await,
    };
    let ok = |out: &Out| assert_eq!(out.code, 0, "{}", out.stderr);
    let token = ("ENCLAVE_TOKEN", cli.token.as_str());
    // A value from standard input stays out of the command line.
    let out = cli
        .run_as(
            &[
                "secrets",
                "set",
                "DB_PASSWORD",
                "--env",
                "staging",
                "--comment",
                "rotated monthly",
            ],
            token,
            Some("s3cr3t pass\n"),
        )
        .await;
    ok(&out);
    let out = cli
        .run(&[
            "secrets",
            "set",
            "API_URL=https://api.example.com",
            "PORT=8080",
            "--env",
            "staging",
        ])
        .await;
    ok(&out);
    assert!(
        out.stdout.contains("created (2): API_URL, PORT"),
        "{}",
        out.stdout
    );
    let out = cli
        .run(&["secrets", "set", "PORT=9090", "--env", "staging"])
        .await;
    ok(&out);
    let got = cli
        .run(&["secrets", "get", "PORT", "--env", "staging"])
        .await;
    assert_eq!(got.stdout, "9090\n");
    let got = cli
        .run(&["secrets", "get", "DB_PASSWORD", "--env", "staging"])
        .await;
    assert_eq!(
        got.stdout, "s3cr3t pass\n",
        "one trailing newline of stdin dropped"
    );
    let list = cli.run(&["secrets", "list", "--env", "staging"]).await;
    ok(&list);
    assert!(
        list.stdout.starts_with("KEY") && list.stdout.contains("rotated monthly"),
        "{}",
        list.stdout
    );
    assert!(
        !list.stdout.contains("s3cr3t"),
        "no values without --reveal"
    );
    let list = cli
        .run(&["secrets", "list", "--env", "staging", "--reveal"])
        .await;
    assert!(list.stdout.contains("s3cr3t pass"));

    // Import a file (dry run first), export it back.
    let dir = tempfile_dir(&db);
    let file = dir.join("app.env");
    std::fs::write(&file, "LOG_LEVEL=debug\nPORT=1\n").unwrap();
    let file = file.to_string_lossy().into_owned();
    let dry = cli
        .run(&["secrets", "import", &file, "--env", "staging", "--dry-run"])
        .await;
    ok(&dry);
    assert!(
        dry.stdout.contains("would be created (1): LOG_LEVEL")
            && dry.stdout.contains("skipped (1): PORT"),
        "{}",
        dry.stdout
    );
    let real = cli
        .run(&[
            "secrets",
            "import",
            &file,
            "--env",
            "staging",
            "--overwrite",
        ])
        .await;
    assert!(real.stdout.contains("updated (1): PORT"), "{}", real.stdout);
    let export = cli.run(&["secrets", "export", "--env", "staging"]).await;
    ok(&export);
    assert!(
        export.stdout.contains("DB_PASSWORD='s3cr3t pass'\n") && export.stdout.contains("PORT=1\n"),
        "{}",
        export.stdout
    );
    let json = cli
        .json(&["secrets", "export", "--env", "staging", "--format", "json"])
        .await;
    assert_eq!(json["LOG_LEVEL"], "debug");
    let versions = cli
        .run(&["secrets", "versions", "PORT", "--env", "staging"])
        .await;
    assert_eq!(versions.stdout.lines().count(), 4, "{}", versions.stdout);
    ok(&cli
        .run(&["secrets", "restore", "PORT", "1", "--env", "staging"])
        .await);
    assert_eq!(
        cli.run(&["secrets", "get", "PORT", "--env", "staging"])
            .await
            .stdout,
        "8080\n"
    );
    ok(&cli
        .run(&["secrets", "delete", "LOG_LEVEL", "--env", "staging"])
        .await);
    let gone = cli
        .run(&["secrets", "get", "LOG_LEVEL", "--env", "staging"])
        .await;
    assert!(
        gone.code != 0 && gone.stderr.contains("404 NOT_FOUND"),
        "{}",
        gone.stderr
    );

    // `enclave run`: the secrets as environment variables, not Enclave's own credentials.
    let run = cli
        .run(&[
            "run",
            "--env",
            "staging",
            "--",
            "sh",
            "-c",
            "echo \"$DB_PASSWORD|$PORT|${ENCLAVE_TOKEN:-none}\"; exit 3",
        ])
        .await;
    assert_eq!(run.code, 3, "the command's exit status: {}", run.stderr);
    assert_eq!(run.stdout, "s3cr3t pass|8080|none\n");
    // With an API key (its own environment; `secrets:read` is enough to run).
    let key = cli
        .json(&[
            "keys",
            "create",
            "runner",
            "--env",
            "staging",
            "--scopes",
            "secrets:read",
            "--role",
            "developer",
        ])
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let run = cli
        .run_as(
            &["run", "--", "sh", "-c", "echo $API_URL"],
            ("ENCLAVE_API_KEY", &key),
            None,
        )
        .await;
    assert_eq!(run.stdout, "https://api.example.com\n", "{}", run.stderr);
    let other = cli
        .run_as(
            &["secrets", "list", "--env", "env_01aaaaaaaaaaaaaaaaaaaaaaaa"],
            ("ENCLAVE_API_KEY", &key),
            None,
        )
        .await;
    assert!(
        other.stderr.contains("belongs to environment"),
        "{}",
        other.stderr
    );
    let missing = cli
        .run(&["run", "--env", "staging", "--", "/no/such/program"])
        .await;
    assert!(
        missing.code != 0 && missing.stderr.contains("cannot run /no/such/program"),
        "{}",
        missing.stderr
    );
    s.stop().await;
}

fn tempfile_dir(db: &Db) -> std::path::PathBuf {
    let dir = db.data_dir().join("cli-files");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `enclave tables` and `enclave query`, with a token and with an API key.
async fn data_commands(db: Db) {
    let s = db.start().await;
    let cli = Cli {
        url: s.url.clone(),
        token: s.owner_token().await,
    };
    let ok = |out: &Out| assert_eq!(out.code, 0, "{}", out.stderr);
    let dir = db.data_dir().join("cli-data");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("orders.csv");
    std::fs::write(&csv, "id,region,amount\n1,eu,12.5\n2,us,40\n3,eu,7\n").unwrap();
    let csv = csv.to_str().unwrap();

    let out = cli
        .run(&["tables", "import", "orders", csv, "--env", "staging"])
        .await;
    ok(&out);
    assert_eq!(out.stdout, "created and loaded orders: 3 rows\n");
    let out = cli.run(&["tables", "--env", "staging"]).await;
    ok(&out);
    assert!(
        out.stdout.starts_with("NAME") && out.stdout.contains("orders  table  3"),
        "{}",
        out.stdout
    );
    let out = cli
        .run(&["tables", "show", "orders", "--env", "staging"])
        .await;
    ok(&out);
    assert!(out.stdout.contains("region  VARCHAR"), "{}", out.stdout);
    let out = cli
        .run(&[
            "query",
            "--env",
            "staging",
            "SELECT region, sum(amount) AS total FROM orders WHERE amount > $1 GROUP BY region ORDER BY region",
            "--param",
            "5",
        ])
        .await;
    ok(&out);
    assert_eq!(
        out.stdout,
        "region  total\neu      19.5\nus      40.0\n(2 rows)\n"
    );
    let json = cli
        .json(&[
            "query",
            "--env",
            "staging",
            "SELECT count(*) AS n FROM orders",
        ])
        .await;
    assert_eq!(json["rows"][0][0], 3);
    // A statement without rows prints its command tag; SQL from standard input.
    let out = cli
        .run_as(
            &["query", "--env", "staging", "-"],
            ("ENCLAVE_TOKEN", &cli.token),
            Some("DELETE FROM orders WHERE id = 3"),
        )
        .await;
    ok(&out);
    assert_eq!(out.stdout, "DELETE 1\n");
    // An API key acts in its own environment without --env; errors are one line, exit 1.
    let key = cli
        .json(&[
            "keys",
            "create",
            "cli",
            "--env",
            "staging",
            "--scopes",
            "developer",
            "--role",
            "developer",
        ])
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let out = cli
        .run_as(
            &["query", "SELECT count(*) AS n FROM orders"],
            ("ENCLAVE_API_KEY", &key),
            None,
        )
        .await;
    ok(&out);
    assert!(out.stdout.contains("2"), "{}", out.stdout);
    let out = cli
        .run(&["query", "--env", "staging", "SELECT * FROM nowhere"])
        .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("400") && out.stderr.contains("42P01"),
        "{}",
        out.stderr
    );
    let out = cli
        .run(&[
            "tables",
            "import",
            "orders",
            "/nonexistent.csv",
            "--env",
            "staging",
        ])
        .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
}
