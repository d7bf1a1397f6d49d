//! The harness: a real server on a random port, on SQLite or on PostgreSQL, and a client.

use std::path::PathBuf;

use enclave::config::ServeArgs;
use enclave::server::Running;
use enclave_store::testing::{TempPostgres, TempSqlite};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

pub const OWNER_EMAIL: &str = "owner@example.com";
pub const OWNER_PASSWORD: &str = "s3cure-bootstrap-pass";
pub const PASSWORD: &str = "member-password-1234";

/// Runs each named test once per backend: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Db::sqlite()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::common::Db::postgres().await else { return };
                super::$name(db).await;
            }
        }
    )*};
}

/// Runs each named test on the embedded engine (with the store on SQLite and on PostgreSQL)
/// and on the PostgreSQL engine (an environment whose data is in a PostgreSQL database).
#[macro_export]
macro_rules! engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::gateway::Engine;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Db::sqlite(), Engine::Embedded).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::common::Db::postgres().await else { return };
                super::$name(db, Engine::Embedded).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_engine() {
                super::$name($crate::common::Db::sqlite(), Engine::Postgres).await;
            }
        }
    )*};
}

/// A database (and data directory) of one test; dropped with the test.
pub struct Db {
    pub url: String,
    dir: TempSqlite,
    /// Keeps the PostgreSQL database alive for the test (dropped with it).
    postgres: Option<TempPostgres>,
}

impl Db {
    pub fn sqlite() -> Db {
        let dir = TempSqlite::create();
        Db {
            url: dir.url.clone(),
            dir,
            postgres: None,
        }
    }

    pub async fn postgres() -> Option<Db> {
        let pg = TempPostgres::create().await?;
        Some(Db {
            url: pg.url.clone(),
            dir: TempSqlite::create(),
            postgres: Some(pg),
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.dir.clone()
    }

    /// Settings for a server on this database: random port, known owner, limits high enough
    /// not to interfere (tests of rate limiting set their own).
    pub fn args(&self) -> ServeArgs {
        ServeArgs {
            data_dir: Some(self.data_dir()),
            http_addr: Some("127.0.0.1:0".into()),
            gateway_addr: Some("127.0.0.1:0".into()),
            database_url: Some(self.url.clone()),
            open_signup: Some(true),
            // The tier tests exercise quotas and rate limits on (a server selling tiers); the
            // self-hosted default is enterprise.
            default_tier: Some("free".into()),
            rate_limits: Some("free=1000000/100000".into()),
            // Credits, rows and members unbounded: the tests of those quotas set their own.
            tier_quotas: Some(
                "free.monthly_credit_limit=unlimited,free.max_rows_per_query=1000000,\
                 free.max_users=unlimited,free.max_concurrent_queries=100"
                    .into(),
            ),
            anonymous_rate_limit: Some("1000000/100000".into()),
            bootstrap_email: Some(OWNER_EMAIL.into()),
            bootstrap_password: Some(OWNER_PASSWORD.into()),
            // Webhook receivers in tests listen on loopback and answer over plain HTTP; retries
            // come quickly. The SSRF tests turn private targets off again.
            webhook_allow_private: Some(true),
            webhook_retry_base_ms: Some(200),
            ..Default::default()
        }
    }

    pub async fn start(&self) -> Server {
        Server::start(self.args()).await
    }
}

pub struct Server {
    pub url: String,
    /// The gateway's Postgres wire address (`host:port`).
    pub gateway: String,
    pub client: reqwest::Client,
    running: Option<Running>,
    /// The bootstrapped organization (on first start).
    pub bootstrap_org: Option<String>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// `error.code`, `error.details.rule`.
    pub fn error(&self) -> (&str, &str) {
        (
            self.body["error"]["code"].as_str().unwrap_or_default(),
            self.body["error"]["details"]["rule"]
                .as_str()
                .unwrap_or_default(),
        )
    }
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.body);
        assert!(self.body["error"]["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()));
        self
    }
}

impl Server {
    pub async fn start(args: ServeArgs) -> Server {
        Server::start_config(args.resolve().unwrap()).await
    }

    /// [`Server::start`] on `clock`, which the test moves to reach a deadline at once.
    pub async fn start_with_clock(args: ServeArgs, clock: enclave_core::clock::Clock) -> Server {
        let mut config = args.resolve().unwrap();
        config.clock = clock;
        Server::start_config(config).await
    }

    pub async fn start_config(config: enclave::config::ServerConfig) -> Server {
        let running = enclave::server::start(config).await.unwrap();
        Server {
            url: format!("http://{}", running.http_addr),
            gateway: running.gateway_addr.to_string(),
            client: reqwest::Client::new(),
            bootstrap_org: running.bootstrap.as_ref().map(|b| b.org_id.to_string()),
            running: Some(running),
        }
    }

    /// A client of a server running elsewhere (another process).
    pub fn attach(url: &str) -> Server {
        Server {
            url: url.to_string(),
            gateway: String::new(),
            client: reqwest::Client::new(),
            running: None,
            bootstrap_org: None,
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.request(method, path, token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.raw(req).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(Method::POST, path, token, Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// A request authenticated by an API key in `X-API-Key`.
    pub async fn keyed(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Resp {
        let mut req = self.request(method, path, None).header("x-api-key", key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.raw(req).await
    }

    /// Logs in and returns the whole response body.
    pub async fn login_as(&self, email: &str, password: &str, org_id: Option<&str>) -> Value {
        let mut body = json!({"email": email, "password": password});
        if let Some(o) = org_id {
            body["org_id"] = json!(o);
        }
        let r = self.post("/v1/auth/login", None, body).await;
        r.expect(200);
        r.body
    }

    /// Signs a new user up (the test servers allow open signup) and returns their token.
    pub async fn signup(&self, email: &str, password: &str) -> String {
        let r = self
            .post(
                "/v1/auth/signup",
                None,
                json!({"email": email, "password": password, "name": "Someone"}),
            )
            .await;
        r.expect(201);
        r.body["token"].as_str().unwrap().to_string()
    }

    pub async fn owner_token(&self) -> String {
        self.login_as(OWNER_EMAIL, OWNER_PASSWORD, None).await["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Invites `email` to `org_id` with `role` (as `inviter`), accepts, and returns
    /// `(user_id, token for that org)`.
    pub async fn add_member(
        &self,
        inviter: &str,
        org_id: &str,
        email: &str,
        role: &str,
    ) -> (String, String) {
        let inv = self
            .post(
                &format!("/v1/organizations/{org_id}/users"),
                Some(inviter),
                json!({"email": email, "role": role}),
            )
            .await;
        inv.expect(201);
        let token = inv.body["invitation"]["token"]
            .as_str()
            .unwrap()
            .to_string();
        let acc = self
            .post(
                "/v1/auth/accept-invite",
                None,
                json!({"token": token, "password": PASSWORD}),
            )
            .await;
        acc.expect(200);
        (
            inv.body["user_id"].as_str().unwrap().to_string(),
            acc.body["token"].as_str().unwrap().to_string(),
        )
    }
}

/// Starts the real `enclave serve` binary on `db` (random port, the known owner, `extra`
/// settings on top); returns the child (killed when dropped) and its URL once it listens.
pub async fn spawn_binary(db: &Db, extra: &[(&str, &str)]) -> (tokio::process::Child, String) {
    spawn_binary_logging(db, extra, std::process::Stdio::null()).await
}

/// [`spawn_binary`], its log (stderr) going to `log`.
pub async fn spawn_binary_logging(
    db: &Db,
    extra: &[(&str, &str)],
    log: std::process::Stdio,
) -> (tokio::process::Child, String) {
    let mut cmd = binary(db);
    cmd.arg("serve");
    let (child, url, _) = spawn_server(cmd, extra, log).await;
    (child, url)
}

/// Runs `cmd` (an `enclave serve`, possibly wrapped) on random ports with the known owner;
/// returns the child (killed when dropped), its URL and its gateway address once it listens.
pub async fn spawn_server(
    mut cmd: tokio::process::Command,
    extra: &[(&str, &str)],
    log: std::process::Stdio,
) -> (tokio::process::Child, String, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    cmd.env("ENCLAVE_HTTP_ADDR", "127.0.0.1:0")
        .env("ENCLAVE_GATEWAY_ADDR", "127.0.0.1:0")
        .env("ENCLAVE_BOOTSTRAP_EMAIL", OWNER_EMAIL)
        .env("ENCLAVE_BOOTSTRAP_PASSWORD", OWNER_PASSWORD)
        .env("ENCLAVE_RATE_LIMITS", "free=1000000/100000")
        .env("ENCLAVE_LOG_FORMAT", "json")
        .env("ENCLAVE_LOG", "warn")
        .envs(extra.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (url, gateway) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut url = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(u) = line.strip_prefix("Enclave control plane listening on ") {
                url = Some(u.trim().to_string());
            }
            if let Some(g) = line.strip_prefix("Enclave gateway (Postgres wire) listening on ") {
                return (
                    url.expect("the control plane is printed first"),
                    g.trim().to_string(),
                );
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("the server did not start within 30 s");
    // Keep draining what it prints, so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url, gateway)
}

/// The `enclave` binary with nothing of this process's environment but the storage of `db`.
pub fn binary(db: &Db) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_enclave"));
    cmd.env_clear()
        .env("ENCLAVE_DATA_DIR", db.data_dir())
        .env("DATABASE_URL", &db.url);
    cmd
}

/// A server with its bootstrapped organization and its owner's token; each test file adds the
/// helpers it needs in an `impl Org` of its own.
pub struct Org {
    pub s: Server,
    pub token: String,
    pub org: String,
}

impl Org {
    /// A fresh server on `db` with unlimited environments.
    pub async fn start(db: &Db) -> Org {
        Org::start_with(crate::audit::walk_args(db)).await
    }

    /// A fresh server with these settings.
    pub async fn start_with(args: ServeArgs) -> Org {
        let s = Server::start(args).await;
        let token = s.owner_token().await;
        let org = s.bootstrap_org.clone().unwrap();
        Org { s, token, org }
    }

    /// The id of the environment `slug`.
    pub async fn env(&self, slug: &str) -> String {
        let r = self
            .s
            .get(
                &format!("/v1/organizations/{}/environments/{slug}", self.org),
                &self.token,
            )
            .await;
        r.expect(200);
        r.body["env_id"].as_str().unwrap().to_string()
    }
}
