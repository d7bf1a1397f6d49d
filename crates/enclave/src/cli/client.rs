//! The REST client behind the CLI's subcommands: base URL and credential from flags, variables
//! or the stored session (see [`Connection`]), API errors turned into one readable line.

use anyhow::{bail, Context};
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::session;

/// Where the server is and who is calling; shared by every client subcommand.
///
/// Which credential a command uses, first match wins: the `--token` / `--api-key` flags; then
/// the variables — with both `ENCLAVE_API_KEY` and `ENCLAVE_TOKEN` set, commands that act in
/// one environment (`query`, `tables`, `secrets`, `run`, `keys`, `policies`) use the key (it
/// names its environment) and the others (`env`, `audit`) the token, saying so on stderr; then
/// the session `enclave login` stored. `enclave whoami` shows the choice.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The control plane's URL.
    #[arg(
        long,
        env = "ENCLAVE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// An access token (`POST /v1/auth/login` → `token`); else `ENCLAVE_TOKEN`.
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// An environment API key (it acts in its own environment only); else `ENCLAVE_API_KEY`.
    #[arg(long, global = true)]
    pub api_key: Option<String>,
    /// The organization; default: the one the token is signed in to.
    #[arg(long, env = "ENCLAVE_ORG", global = true)]
    pub org: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What a command acts on, which decides between a key and a token when both are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The organization: environments, the audit trail.
    Organization,
    /// One environment: data, secrets, keys, policies.
    Environment,
}

/// How the client proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token(String),
    ApiKey(String),
}

/// Where the credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    TokenFlag,
    ApiKeyFlag,
    TokenVariable,
    ApiKeyVariable,
    /// The session `enclave login` stored.
    Session,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::TokenFlag => "the --token flag",
            Source::ApiKeyFlag => "the --api-key flag",
            Source::TokenVariable => "ENCLAVE_TOKEN",
            Source::ApiKeyVariable => "ENCLAVE_API_KEY",
            Source::Session => "the session of `enclave login`",
        }
    }
}

/// The credentials on offer, by where they come from.
#[derive(Debug, Default, Clone)]
pub struct Offered {
    pub token_flag: Option<String>,
    pub api_key_flag: Option<String>,
    pub token_variable: Option<String>,
    pub api_key_variable: Option<String>,
    pub session: bool,
}

impl Offered {
    pub fn of(conn: &Connection) -> anyhow::Result<Offered> {
        let present = |v: Option<String>| v.filter(|t| !t.is_empty());
        let session = session::load()?.is_some_and(|s| s.url == conn.url.trim_end_matches('/'));
        Ok(Offered {
            token_flag: present(conn.token.clone()),
            api_key_flag: present(conn.api_key.clone()),
            token_variable: present(std::env::var("ENCLAVE_TOKEN").ok()),
            api_key_variable: present(std::env::var("ENCLAVE_API_KEY").ok()),
            session,
        })
    }

    /// The credential a command of `scope` uses (the session's token is read later), and a
    /// note to show when another one was set and not used.
    pub fn choose(&self, scope: Scope) -> anyhow::Result<(Source, Option<&'static str>)> {
        use Source::*;
        Ok(match (&self.token_flag, &self.api_key_flag) {
            (Some(_), Some(_)) => anyhow::bail!("give --token or --api-key, not both"),
            (Some(_), None) => (TokenFlag, None),
            (None, Some(_)) => (ApiKeyFlag, None),
            (None, None) => match (&self.token_variable, &self.api_key_variable) {
                (Some(_), Some(_)) if scope == Scope::Environment => (
                    ApiKeyVariable,
                    Some("using ENCLAVE_API_KEY (it names its environment); ENCLAVE_TOKEN is set too and not used"),
                ),
                (Some(_), Some(_)) => (
                    TokenVariable,
                    Some("using ENCLAVE_TOKEN (this command acts on the organization); ENCLAVE_API_KEY is set too and not used"),
                ),
                (Some(_), None) => (TokenVariable, None),
                (None, Some(_)) => (ApiKeyVariable, None),
                (None, None) if self.session => (Session, None),
                (None, None) => anyhow::bail!(
                    "no credentials: run `enclave login`, or set ENCLAVE_TOKEN (a token from \
                     POST /v1/auth/login) or ENCLAVE_API_KEY (an environment API key)"
                ),
            },
        })
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    credential: Credential,
    org: Option<String>,
}

impl Client {
    /// A client for a command acting on `scope`, with the credential [`Offered::choose`]
    /// picks (a stored session's token renewed first when it is about to expire).
    pub async fn connect(c: &Connection, scope: Scope) -> anyhow::Result<Self> {
        let offered = Offered::of(c)?;
        let (source, note) = offered.choose(scope)?;
        if let Some(note) = note {
            eprintln!("{note}");
        }
        let base = c.url.trim_end_matches('/').to_string();
        let http = reqwest::Client::new();
        let credential = match source {
            Source::TokenFlag => Credential::Token(offered.token_flag.unwrap_or_default()),
            Source::ApiKeyFlag => Credential::ApiKey(offered.api_key_flag.unwrap_or_default()),
            Source::TokenVariable => Credential::Token(offered.token_variable.unwrap_or_default()),
            Source::ApiKeyVariable => {
                Credential::ApiKey(offered.api_key_variable.unwrap_or_default())
            }
            Source::Session => Credential::Token(session_token(&http, &base).await?),
        };
        Ok(Client {
            http,
            base,
            credential,
            org: c.org.clone(),
        })
    }

    /// The server's URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether this client acts as an API key (in that key's environment only).
    pub fn is_api_key(&self) -> bool {
        matches!(self.credential, Credential::ApiKey(_))
    }

    /// A request to `path` carrying the credential, for callers that read the answer
    /// themselves.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.credential {
            Credential::Token(t) => req.bearer_auth(t),
            Credential::ApiKey(k) => req.header("x-api-key", k),
        }
    }

    /// Sends one request; a non-2xx answer becomes an error carrying the API's code, message
    /// and details. 204 yields `Value::Null`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }

    /// Sends `body` as is, with its content type.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let req = self
            .request(method, path)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send(req).await
    }

    /// Sends `req`; a 429 whose `Retry-After` is short is waited out and sent again (saying
    /// so on stderr), at most [`RETRIES`] times and [`MAX_WAIT_SECONDS`] in all.
    async fn send_patiently(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let (mut attempt, mut waited) = (0, 0);
        loop {
            let again = req.try_clone();
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach {}", self.base))?;
            match (again, retry_after(&resp)) {
                (Some(next), Some(secs))
                    if attempt < RETRIES && waited + secs <= MAX_WAIT_SECONDS =>
                {
                    eprintln!("rate limited by the server: retrying in {secs} s (Retry-After)");
                    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                    (attempt, waited, req) = (attempt + 1, waited + secs, next);
                }
                _ => return Ok(resp),
            }
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = self.send_patiently(req).await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.as_u16() == 204 || bytes.is_empty() {
            if status.is_success() {
                return Ok(Value::Null);
            }
            bail!("HTTP {status}");
        }
        let body: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("HTTP {status}: the answer is not JSON"))?;
        if !status.is_success() {
            let e = &body["error"];
            let details = match &e["details"] {
                Value::Object(m) if !m.is_empty() => format!(" {}", e["details"]),
                _ => String::new(),
            };
            bail!(
                "{} {}: {}{details}",
                status.as_u16(),
                e["code"].as_str().unwrap_or("ERROR"),
                e["message"].as_str().unwrap_or("request failed")
            );
        }
        Ok(body)
    }

    /// Streams a GET's body into `out` (for exports); API errors as in [`Client::call`].
    pub async fn download(
        &self,
        path: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> anyhow::Result<u64> {
        let mut resp = self.send_patiently(self.request(Method::GET, path)).await?;
        if !resp.status().is_success() {
            // The same error line as every other command.
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let e = &body["error"];
            bail!(
                "{} {}: {}",
                status.as_u16(),
                e["code"].as_str().unwrap_or("ERROR"),
                e["message"].as_str().unwrap_or("request failed")
            );
        }
        let mut written = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            out.write_all(&chunk)?;
            written += chunk.len() as u64;
        }
        out.flush()?;
        Ok(written)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// Every row of a paginated list (`path` with its query, e.g. `?limit=200`), following
    /// the cursors; and the last page, for what a list carries beside `data`.
    pub async fn all_pages(&self, path: &str) -> anyhow::Result<(Vec<Value>, Value)> {
        let mut rows = Vec::new();
        let mut next = path.to_string();
        loop {
            let page = self.get(&next).await?;
            rows.extend(page["data"].as_array().cloned().unwrap_or_default());
            match page["pagination"]["cursor"].as_str() {
                Some(c) => next = format!("{path}&cursor={c}"),
                None => return Ok((rows, page)),
            }
        }
    }

    /// The organization to act in: `--org`, else the token's.
    pub async fn org(&self) -> anyhow::Result<String> {
        if let Some(o) = &self.org {
            return Ok(o.clone());
        }
        let me = self.get("/v1/auth/me").await?;
        me["org"]["org_id"]
            .as_str()
            .map(str::to_string)
            .context("the token is not signed in to an organization: pass --org or set ENCLAVE_ORG")
    }
}

/// The stored session's access token, renewed with its refresh token when it is about to
/// expire (the renewed session is stored again).
async fn session_token(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let mut s = session::load()?.context("no stored session: run `enclave login`")?;
    if !s.stale() {
        return Ok(s.token);
    }
    let resp = http
        .post(format!("{base}/v1/auth/refresh"))
        .json(&json!({"refresh_token": s.refresh_token}))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    if !resp.status().is_success() {
        bail!(
            "the stored session has ended ({}): run `enclave login` again",
            resp.status()
        );
    }
    let body: Value = resp.json().await?;
    s.token = body["token"]
        .as_str()
        .context("no token in the answer")?
        .to_string();
    s.refresh_token = body["refresh_token"]
        .as_str()
        .context("no refresh token in the answer")?
        .to_string();
    s.expires_at =
        enclave_core::clock::now().timestamp() + body["expires_in"].as_i64().unwrap_or(0);
    session::save(&s)?;
    Ok(s.token)
}

/// Retries of one request after a 429.
const RETRIES: u32 = 3;
/// The most a command waits in all for the server's `Retry-After`; past it, the 429 is shown.
const MAX_WAIT_SECONDS: u64 = 60;

/// The seconds a 429 asks to wait (`Retry-After` in seconds), if it is one.
fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    if resp.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Characters a path segment may carry unescaped; anything else is refused rather than
/// sent somewhere unexpected.
pub fn segment(value: &str) -> anyhow::Result<&str> {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(value)
    } else {
        bail!("`{value}` is not an id or slug")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(flags: (bool, bool), vars: (bool, bool), session: bool) -> Offered {
        let some = |b: bool, v: &str| b.then(|| v.to_string());
        Offered {
            token_flag: some(flags.0, "t"),
            api_key_flag: some(flags.1, "k"),
            token_variable: some(vars.0, "t"),
            api_key_variable: some(vars.1, "k"),
            session,
        }
    }

    #[test]
    fn flags_then_variables_then_the_session() {
        use Scope::*;
        use Source::*;
        let pick = |o: Offered, scope| o.choose(scope).map(|(s, note)| (s, note.is_some()));
        // Flags win over everything.
        assert_eq!(
            pick(offered((true, false), (true, true), true), Environment).unwrap(),
            (TokenFlag, false)
        );
        assert_eq!(
            pick(offered((false, true), (true, true), true), Organization).unwrap(),
            (ApiKeyFlag, false)
        );
        assert!(pick(offered((true, true), (false, false), false), Environment).is_err());
        // Both variables: the key for environment commands, the token for the others, said.
        assert_eq!(
            pick(offered((false, false), (true, true), true), Environment).unwrap(),
            (ApiKeyVariable, true)
        );
        assert_eq!(
            pick(offered((false, false), (true, true), true), Organization).unwrap(),
            (TokenVariable, true)
        );
        // One variable, whatever the scope.
        assert_eq!(
            pick(offered((false, false), (true, false), true), Environment).unwrap(),
            (TokenVariable, false)
        );
        assert_eq!(
            pick(offered((false, false), (false, true), false), Organization).unwrap(),
            (ApiKeyVariable, false)
        );
        // Then the stored session; else a message saying what to do.
        assert_eq!(
            pick(offered((false, false), (false, false), true), Organization).unwrap(),
            (Session, false)
        );
        let none = pick(offered((false, false), (false, false), false), Environment).unwrap_err();
        assert!(none.to_string().contains("enclave login"), "{none}");
    }
}
