//! The REST client behind the CLI's subcommands: base URL and token from flags or
//! `ENCLAVE_URL` / `ENCLAVE_TOKEN`, API errors turned into one readable line.

use anyhow::{bail, Context};
use clap::Args;
use reqwest::Method;
use serde_json::Value;

/// Where the server is and who is calling; shared by every client subcommand.
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
    /// An access token (`POST /v1/auth/login` → `token`).
    #[arg(long, env = "ENCLAVE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// An environment API key instead of a token (it acts in its own environment only).
    #[arg(long, env = "ENCLAVE_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// The organization; default: the one the token is signed in to.
    #[arg(long, env = "ENCLAVE_ORG", global = true)]
    pub org: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// How the client proves who it is.
enum Credential {
    Token(String),
    ApiKey(String),
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    credential: Credential,
    org: Option<String>,
}

impl Client {
    pub fn new(c: &Connection) -> anyhow::Result<Self> {
        let present = |v: &Option<String>| v.clone().filter(|t| !t.is_empty());
        let credential = match (present(&c.token), present(&c.api_key)) {
            (Some(t), _) => Credential::Token(t),
            (None, Some(k)) => Credential::ApiKey(k),
            (None, None) => bail!(
                "no credentials: set ENCLAVE_TOKEN (a token from POST /v1/auth/login) or \
                 ENCLAVE_API_KEY (an environment API key)"
            ),
        };
        Ok(Client {
            http: reqwest::Client::new(),
            base: c.url.trim_end_matches('/').to_string(),
            credential,
            org: c.org.clone(),
        })
    }

    /// Whether this client acts as an API key (in that key's environment only).
    pub fn is_api_key(&self) -> bool {
        matches!(self.credential, Credential::ApiKey(_))
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
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

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
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
        let mut resp = self
            .request(Method::GET, path)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
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
