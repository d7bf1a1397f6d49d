//! A client's session: who it is, where from, which agent, the parameters it `SET`, and its
//! engine connection (kept for the session so transactions span statements).

use std::collections::BTreeMap;
use std::net::IpAddr;

use enclave_core::audit::ActorType;
use enclave_core::id::{KeyId, UserId};
use enclave_core::policy::evaluate::Principal;
use enclave_core::query::audit::AgentIdentity;

use crate::admission::Priority;
use crate::engine::EngineConnection;
use crate::identity::{Credential, Door, Identity};

/// Parameters a session reports without asking the engine (what PostgreSQL clients read at
/// startup and with `SHOW`).
pub const SERVER_VERSION: &str = "15.0 (Enclave)";

pub struct Session {
    pub identity: Identity,
    /// What a wire session authenticated with: re-checked (in the caches) before every
    /// statement, so revocation, logout and suspension reach open sessions too. `None` where
    /// the caller was authenticated for this one request (HTTP).
    pub credential: Option<Credential>,
    pub door: Door,
    pub source_ip: Option<IpAddr>,
    pub agent: AgentIdentity,
    pub priority: Priority,
    /// `SET` values and startup `options`, by lower-cased name.
    pub parameters: BTreeMap<String, String>,
    pub(crate) connection: Option<Box<dyn EngineConnection>>,
    /// Where `connection` leads (engine and secret): an environment whose data moved since
    /// gets a new one.
    pub(crate) connected_to: Option<(enclave_core::environment::EngineKind, Option<String>)>,
    /// Fires when the client asks to cancel the next statement (a wire cancel request).
    pub cancel: Option<futures::channel::oneshot::Receiver<()>>,
    /// The wire client's socket, watched for hanging up while statements run.
    pub peer: Option<std::sync::Arc<crate::peer::Peer>>,
    /// A `COPY … FROM STDIN` receiving its data.
    pub(crate) copy_in: Option<crate::copy_in::PendingCopy>,
    /// DDL ran since the last transaction boundary: the end of the transaction makes it
    /// visible to other sessions, and the catalog is read again then.
    pub(crate) ddl_pending: bool,
    /// A transaction is open on the session's engine connection.
    pub(crate) in_transaction: bool,
    /// The open transaction wrote rows: at its end, cached results are stale again.
    pub(crate) wrote_in_transaction: bool,
    /// Results leave as a download (the HTTP Arrow door): reads are also the ABAC action
    /// `export`.
    pub export: bool,
    /// The most rows the caller asked for (an MCP tool's `max_rows`): lowers the row cap, and
    /// a result cut by it is `truncated` like one cut by the cap.
    pub max_rows: Option<u64>,
    /// The capability grant the current statement's agent acts under (set at stage 4; read
    /// by the row cap and the daily credits).
    pub(crate) capability: Option<enclave_core::agent::Grant>,
}

impl Session {
    /// Who runs this session's statements, as authorization and the policies see them.
    pub fn principal(&self) -> Principal {
        let id = &self.identity;
        let (user_id, key_id) = match id.actor.kind {
            ActorType::ApiKey => (None, Some(KeyId::from(id.actor.id.as_str()))),
            _ => (Some(UserId::from(id.actor.id.as_str())), None),
        };
        Principal {
            role: id.role,
            user_id,
            email: id.email.clone(),
            key_id,
            attributes: id.attributes.clone(),
            scopes: id.scopes.clone(),
            agent_id: self.agent.id.clone(),
            framework: self.agent.framework.clone(),
        }
    }

    pub fn new(
        identity: Identity,
        credential: Option<Credential>,
        door: Door,
        source_ip: Option<IpAddr>,
    ) -> Session {
        let mut parameters = BTreeMap::new();
        for (k, v) in [
            ("server_version", SERVER_VERSION),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("datestyle", "ISO, MDY"),
            ("timezone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("transaction_isolation", "serializable"),
            ("search_path", "main, public"),
            ("max_identifier_length", "63"),
        ] {
            parameters.insert(k.to_string(), v.to_string());
        }
        Session {
            identity,
            credential,
            door,
            source_ip,
            agent: AgentIdentity::default(),
            priority: Priority::Normal,
            parameters,
            connection: None,
            connected_to: None,
            cancel: None,
            peer: None,
            copy_in: None,
            ddl_pending: false,
            in_transaction: false,
            wrote_in_transaction: false,
            export: false,
            max_rows: None,
            capability: None,
        }
    }

    /// Applies a parameter from `SET`, startup `options` or a header: agent identity and
    /// priority are taken from their names; everything is kept for `SHOW`.
    pub fn set(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "enclave_agent_id" => self.agent.id = Some(value.to_string()),
            "enclave_framework" => self.agent.framework = Some(value.to_string()),
            "application_name" if self.agent.id.is_none() && !value.is_empty() => {
                self.agent.id = Some(value.to_string())
            }
            "enclave_priority" => {
                if let Some(p) = Priority::parse(value) {
                    self.priority = p;
                }
            }
            _ => {}
        }
        self.parameters.insert(name, value.to_string());
    }

    pub fn show(&self, name: &str) -> Option<&str> {
        self.parameters
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// `-c name=value` pairs of a startup `options` string (also `--name=value`).
    pub fn apply_options(&mut self, options: &str) {
        let mut words = options.split_whitespace();
        while let Some(word) = words.next() {
            let pair = match word {
                "-c" => words.next(),
                w if w.starts_with("-c") => Some(&w[2..]),
                w if w.starts_with("--") => Some(&w[2..]),
                _ => None,
            };
            if let Some((k, v)) = pair.and_then(|p| p.split_once('=')) {
                self.set(&k.replace('-', "_"), v);
            }
        }
    }
}
