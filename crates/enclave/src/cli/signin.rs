//! `enclave login`, `enclave logout` and `enclave whoami`: a person signs in once (password,
//! and the code of their second factor when the account has one) and later commands use the
//! stored session, renewed on its own for as long as the server's session lives (30 days).

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use super::client::{Client, Connection, Offered, Scope, Source};
use super::output;
use super::session::{self, Session};

#[derive(Args, Debug)]
pub struct LoginCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// The account's e-mail.
    #[arg(long, env = "ENCLAVE_EMAIL")]
    pub email: String,
    /// Read the password from standard input (the first line) instead of the terminal.
    #[arg(long)]
    pub password_stdin: bool,
    /// The code of the account's second factor (or a recovery code); asked for on a terminal.
    #[arg(long)]
    pub code: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutCommand {}

#[derive(Args, Debug)]
pub struct WhoamiCommand {
    #[command(flatten)]
    pub conn: Connection,
}

pub async fn login(cmd: LoginCommand) -> anyhow::Result<()> {
    let base = cmd.conn.url.trim_end_matches('/').to_string();
    let password = if cmd.password_stdin || !std::io::stdin().is_terminal() {
        first_line()?
    } else {
        rpassword::prompt_password(format!("Password for {}: ", cmd.email))?
    };
    let mut body = json!({"email": cmd.email, "password": password});
    if let Some(org) = &cmd.conn.org {
        body["org_id"] = json!(org);
    }
    let http = reqwest::Client::new();
    let (status, mut answer) = post(&http, &base, "/v1/auth/login", &body).await?;
    if status == 202 {
        let code = match cmd.code {
            Some(c) => c,
            None if std::io::stdin().is_terminal() => {
                eprint!("Code from your authenticator app (or a recovery code): ");
                first_line()?
            }
            None => bail!("this account has a second factor: pass its code with --code"),
        };
        let step = json!({"mfa_token": answer["mfa_token"], "code": code});
        (_, answer) = post(&http, &base, "/v1/auth/login/mfa", &step).await?;
    }
    let token = answer["token"]
        .as_str()
        .context("the server answered without a token")?;
    let s = Session {
        url: base,
        email: cmd.email.clone(),
        token: token.to_string(),
        refresh_token: answer["refresh_token"].as_str().unwrap_or_default().into(),
        expires_at: enclave_core::clock::now().timestamp()
            + answer["expires_in"].as_i64().unwrap_or(0),
    };
    let path = session::save(&s)?;
    let org = answer["org"]["slug"].as_str().unwrap_or("no organization");
    output::line(&format!(
        "signed in as {} ({org}); the session is in {} and renews itself",
        cmd.email,
        path.display()
    ));
    Ok(())
}

pub async fn logout(_: LogoutCommand) -> anyhow::Result<()> {
    let Some(s) = session::load()? else {
        output::line("no stored session");
        return Ok(());
    };
    // Ends the session on the server too; a session that already ended is fine.
    let _ = reqwest::Client::new()
        .post(format!("{}/v1/auth/logout", s.url))
        .bearer_auth(&s.token)
        .send()
        .await;
    session::remove()?;
    output::line(&format!("signed out {}", s.email));
    Ok(())
}

pub async fn whoami(cmd: WhoamiCommand) -> anyhow::Result<()> {
    let offered = Offered::of(&cmd.conn)?;
    let (org_source, _) = offered.choose(Scope::Organization)?;
    let (env_source, _) = offered.choose(Scope::Environment)?;
    let client = Client::connect(&cmd.conn, Scope::Organization).await?;
    let me = client.get("/v1/auth/me").await?;
    if cmd.conn.json {
        output::json(&json!({
            "server": client.base(),
            "organization_commands": org_source.describe(),
            "environment_commands": env_source.describe(),
            "me": me,
        }));
        return Ok(());
    }
    output::line(&format!("server: {}", client.base()));
    output::line(&format!("caller: {}", describe(&me)));
    if org_source == env_source {
        output::line(&format!("credential: {}", origin(org_source)));
    } else {
        output::line(&format!(
            "credential: {} for env and audit; {} for query, tables, secrets, run, keys and policies",
            origin(org_source),
            origin(env_source)
        ));
    }
    Ok(())
}

fn origin(source: Source) -> String {
    match (source, session::path()) {
        (Source::Session, Some(p)) => format!("{} ({})", source.describe(), p.display()),
        _ => source.describe().to_string(),
    }
}

fn describe(me: &Value) -> String {
    let org = &me["org"];
    let role = org["role"].as_str().unwrap_or("-");
    match me["type"].as_str() {
        Some("api_key") => format!(
            "API key {} ({}) in environment {}, role {role}",
            me["key"]["name"].as_str().unwrap_or("-"),
            me["key"]["key_id"].as_str().unwrap_or("-"),
            me["key"]["env_id"].as_str().unwrap_or("-"),
        ),
        _ => format!(
            "{} in organization {}, role {role}",
            me["user"]["email"].as_str().unwrap_or("-"),
            org["org_id"].as_str().unwrap_or("none"),
        ),
    }
}

/// The first line of standard input, without its line ending.
fn first_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// POSTs `body`; the status and JSON answer of a 2xx, else the API's error as one line.
async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let resp = http
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let e = &answer["error"];
        bail!(
            "{status} {}: {}",
            e["code"].as_str().unwrap_or("ERROR"),
            e["message"].as_str().unwrap_or("sign-in failed")
        );
    }
    Ok((status, answer))
}
