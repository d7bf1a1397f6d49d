//! The README's walk-through and the docs' worked examples are scripts: their shell blocks, in
//! order and unedited, run against a fresh server started as the README says (default
//! addresses, the bootstrap owner), with the printed password handed over the way the README
//! asks (`PASSWORD`) and the `enclave` binary on the `PATH` (the README's alias). A documented
//! command that breaks fails here.
//! `ENCLAVE_SHOW_WALKTHROUGH=1` prints what the walk-through printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::Db;

const PASSWORD: &str = "readme-walkthrough-pass-42";

/// The ```sh blocks of `markdown` from the heading `from` up to the next heading of its level
/// or above (`# Title`: the whole page). Lines in code blocks are never headings.
fn shell_blocks(markdown: &str, from: &str) -> String {
    let level = from.chars().take_while(|c| *c == '#').count();
    let mut script = String::new();
    let (mut started, mut fence, mut runs) = (false, false, false);
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            runs = !fence && line.trim() == "```sh";
            fence = !fence;
            continue;
        }
        if !fence {
            let hashes = line.chars().take_while(|c| *c == '#').count();
            if line.starts_with(from) {
                started = true;
            } else if started && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
                break;
            }
            continue;
        }
        if started && runs {
            script.push_str(line);
            script.push('\n');
        }
    }
    assert!(started, "no `{from}` section");
    script
}

/// Runs the `sh` blocks of `heading`'s section of `file` (from the repository root) against a
/// fresh server on the default addresses, started with `server_env` besides; returns what
/// they printed.
async fn run_section(file: &str, heading: &str, server_env: &[(&str, &str)]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let markdown = std::fs::read_to_string(root.join(file)).unwrap();
    let script = shell_blocks(&markdown, heading);
    assert!(script.lines().count() > 10, "{file}: {script}");

    let db = Db::sqlite();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_enclave"));
    // The server as the README's first command runs it: the default addresses and owner.
    let mut server = tokio::process::Command::new(&bin)
        .arg("serve")
        .env_clear()
        .env("ENCLAVE_DATA_DIR", db.data_dir())
        .env("ENCLAVE_BOOTSTRAP_PASSWORD", PASSWORD)
        .env("ENCLAVE_LOG", "warn")
        .envs(server_env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(r) = http.get("http://127.0.0.1:8080/health").send().await {
            ready = r.status().is_success();
            if ready {
                break;
            }
        }
        if let Ok(Some(status)) = server.try_wait() {
            panic!("the server exited ({status}): are ports 8080 and 5439 free?");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the server did not answer on 127.0.0.1:8080");

    let work = db.data_dir().join("walkthrough");
    std::fs::create_dir_all(&work).unwrap();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&work)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &work)
        .env("ENCLAVE_CONFIG_DIR", work.join("config"))
        .env("PASSWORD", PASSWORD)
        .output()
        .await
        .unwrap();
    server.kill().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{file}, {heading}, failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    if std::env::var_os("ENCLAVE_SHOW_WALKTHROUGH").is_some() {
        println!("{stdout}");
    }
    stdout
}

/// One test, so the documents take turns on the default ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_examples_run_as_written() {
    let readme = run_section("README.md", "## Walk-through with curl", &[]).await;
    // The data section shows rows in psql, and the analyst sees only their department's.
    assert!(
        readme.contains("  3 | eu     | sales      |    7.0\n(3 rows)"),
        "{readme}"
    );
    assert!(
        readme.contains("department  sum\nsales       30.0\n(1 row)"),
        "{readme}"
    );

    let policies = run_section("docs/policies.md", "## Worked example", &[]).await;
    // The analyst: masked e-mails, only sales orders; the admin: every order.
    assert!(policies.contains("Ada    ***.com"), "{policies}");
    assert!(policies.contains("total\n200.50\n"), "{policies}");
    assert!(policies.contains("total\n1199.50\n"), "{policies}");

    let secrets = run_section("docs/secrets.md", "# Secrets", &[]).await;
    assert!(secrets.contains("listening on 8080"), "{secrets}");
    assert!(
        secrets.contains(r#"{"dry_run":true,"overwrite":false,"created":["LOG_LEVEL","FEATURE"],"updated":[],"unchanged":["API_URL","PORT"],"skipped":[]}"#),
        "{secrets}"
    );
    assert!(secrets.contains(r#"["API_TOKEN"]"#), "{secrets}");

    let keys = run_section("docs/api-keys.md", "# Environment API keys", &[]).await;
    assert!(keys.contains(r#"["query:read"]"#), "{keys}");

    let audit = run_section("docs/audit.md", "# The IAM audit trail", &[]).await;
    assert!(audit.contains(r#""before":30000,"after":5000"#), "{audit}");
    assert!(audit.contains("chain valid: true"), "{audit}");
    assert!(audit.contains("refused: exit code 1"), "{audit}");

    let gateway = run_section("docs/gateway.md", "# The SQL gateway", &[]).await;
    assert!(
        gateway.contains(r#"{"table":"orders","rows_imported":2,"created":false}"#),
        "{gateway}"
    );
    assert!(gateway.contains("admin@enclave.local |     2"), "{gateway}");

    let mcp = run_section("docs/mcp.md", "## Worked example", &[]).await;
    assert!(mcp.contains("id | email\n---+-"), "{mcp}");
    assert!(mcp.contains("(2 rows; "), "{mcp}");
    assert!(!mcp.contains("ada@"), "{mcp}");
    assert!(
        mcp.contains(r#"{"name":"email","mask":"partial"}"#),
        "{mcp}"
    );
    assert!(
        mcp.contains(r#"{"agent":{"id":"docs-bot","framework":"shell/1"},"outcome":"refused","error_code":"42501"}"#),
        "{mcp}"
    );

    let sql = run_section("docs/sql.md", "## Worked example", &[]).await;
    assert!(
        sql.contains(" a   | ada  |  12.50 | tagged   |    24\n b   | bo   |   0.00 | untagged |    24\n(2 rows)"),
        "{sql}"
    );
    assert!(sql.contains(" a   |     1 | y\n(2 rows)"), "{sql}");
    assert!(sql.contains(" b\n(1 row)"), "{sql}");
    assert!(sql.contains(r#""sqlstate":"0A000""#), "{sql}");

    let billing = run_section("docs/billing.md", "## Worked example", &[]).await;
    // Each statement's credits, the refusal on both doors, and the report.
    assert!(billing.contains(r#"{"rows":1,"credits":1.5}"#), "{billing}");
    assert!(
        billing.contains(r#"{"rows":25000,"credits":6}"#),
        "{billing}"
    );
    assert!(
        billing.contains(r#"{"error":"QUOTA_EXCEEDED","quota":"monthly_credit_limit"}"#),
        "{billing}"
    );
    assert!(
        billing.contains("ERROR:  the organization's monthly credits would be exceeded"),
        "{billing}"
    );
    assert!(
        billing.contains(r#"{"limit":20,"used":15.5,"remaining":4.5,"usage_percent":77.5}"#),
        "{billing}"
    );
    assert!(
        billing.contains("15.5 of 20.0 credits used (77.5%), 4.5 remaining"),
        "{billing}"
    );
    assert!(
        billing.contains("monthly_credit_limit          unlimited  tier"),
        "{billing}"
    );

    let provisioning = run_section("docs/provisioning.md", "## Worked example", &[]).await;
    // The analyst refused, granted, writing with the grant's role, refused again; the agent
    // narrowed on both doors.
    for expected in [
        "ERROR:  the analyst role may not run write statements",
        r#"{"status":"approved","duration_minutes":30,"comment":"30 minutes"}"#,
        "UPDATE 1",
        r#"{"outcome":"ok","role":"developer","from_grant":true}"#,
        r#"{"status":"revoked"}"#,
        r#"{"rows":1,"truncated":true}"#,
        r#"{"error":"POLICY_VIOLATION","rule":"allowed_tables"}"#,
        "ERROR:  agent support-bot may not write data here: its capability grant cap_… allows query",
        r#"{"matches":2,"mismatches":1,"errors":0,"dropped":0}"#,
        r#"{"verdict":"mismatch","sql_redacted":"SELECT name, email FROM customers","here":2,"there":2}"#,
    ] {
        assert!(provisioning.contains(expected), "{expected}\n{provisioning}");
    }

    let environments = run_section("docs/environments.md", "# Environments", &[]).await;
    // The old slug still answered, the locked and the staging-only changes went through, and
    // promotion carried the one differing setting.
    assert!(
        environments.contains("name                                  PR 42"),
        "{environments}"
    );
    assert!(
        environments.contains(r#"{"name":"query_timeout_ms","status":"different","value":10000,"against_value":30000}"#),
        "{environments}"
    );
    assert!(
        environments.contains(r#"{"status":"dry_run","settings_changed":1,"#),
        "{environments}"
    );
    assert!(
        environments.contains(r#"[{"status":"completed","changes":1}]"#),
        "{environments}"
    );

    let identity = run_section(
        "docs/identity.md",
        "### Two-factor authentication (TOTP)",
        &[],
    )
    .await;
    assert!(
        identity.contains(r#"{"totp_enabled":true,"recovery_codes_left":9}"#),
        "{identity}"
    );
    assert!(
        identity.contains(r#"{"mfa_required":true,"methods":"#),
        "{identity}"
    );
    assert!(identity.contains(r#""mfa_required":true}"#), "{identity}");

    let security = run_section("docs/security.md", "# Security", &[]).await;
    assert!(
        security.contains("401 401 401 401 401 401 401 401 401 401 401 429"),
        "{security}"
    );
    assert!(security.contains(r#""rule":"max_depth""#), "{security}");
    assert!(
        security.contains("current_setting of a setting that may name the server's files"),
        "{security}"
    );

    // Deliveries go to a receiver on this machine, which only a development server accepts.
    let webhooks = run_section(
        "docs/webhooks.md",
        "# Webhooks",
        &[("ENCLAVE_WEBHOOK_ALLOW_PRIVATE", "true")],
    )
    .await;
    assert!(
        webhooks.contains(r#"{"type":"environment.created","slug":"preview-pr-7"}"#),
        "{webhooks}"
    );
    assert!(
        webhooks.contains("webhook-signature: valid\nX-Enclave-Signature: valid\n"),
        "{webhooks}"
    );
    assert!(webhooks.contains("a wrong secret is refused"), "{webhooks}");
}
