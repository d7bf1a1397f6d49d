//! Startup: the password is an environment API key (the user name is free); a `database`
//! startup parameter, when given, must be that environment's slug. Startup `options`
//! (`-c name=value`), `application_name` and `enclave_*` parameters go on the session.

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures::sink::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::driver::AuthOutcome;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    AuthDriver, AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionGuard, ConnectionHandle, ConnectionManager};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex;

use crate::identity::{Door, Identity};
use crate::pipeline::Gateway;
use crate::session::{Session, SERVER_VERSION};
use crate::wire::SessionSlot;

pub struct Startup {
    driver: AuthDriver<DefaultServerParameterProvider, (Identity, String)>,
    connections: Arc<ConnectionManager>,
    cleartext: CleartextPasswordAuth<KeySource>,
    /// Refuse connections that did not negotiate TLS.
    require_tls: bool,
}

impl Startup {
    /// `connections` registers each authenticated connection's cancel key.
    pub fn new(
        gateway: Arc<Gateway>,
        connections: Arc<ConnectionManager>,
        require_tls: bool,
    ) -> Startup {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = SERVER_VERSION.to_string();
        parameters.search_path = "main".into();
        Startup {
            // Connections are registered for cancel requests here, under a key of our own:
            // pgwire's own registration would race its statement cancellation with ours,
            // which interrupts the engine and covers rows still streaming.
            driver: AuthDriver::new(parameters),
            connections,
            cleartext: CleartextPasswordAuth::new(Arc::new(KeySource { gateway })),
            require_tls,
        }
    }
}

/// The connection's entry for cancel requests (unregistered when the connection ends).
pub(crate) struct CancelKey {
    pub(crate) handle: Arc<ConnectionHandle>,
    _registered: ConnectionGuard,
}

fn refuse(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message.into(),
    )))
}

/// Checks the password as an API key.
struct KeySource {
    gateway: Arc<Gateway>,
}

impl Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySource")
    }
}

#[async_trait]
impl AuthSource<(Identity, String)> for KeySource {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Keys are only ever verified (Argon2id), never read back.
        Err(refuse("28P01", "password authentication failed"))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<(Identity, String)>> {
        let key = std::str::from_utf8(presented)
            .map_err(|_| refuse("28P01", "invalid API key"))?
            .to_string();
        let ip: Option<IpAddr> = login.host().parse().ok();
        let identity = self
            .gateway
            .auth()
            .api_key(&key, ip)
            .await
            .map_err(|e| refuse("28P01", e.message))?;
        if let Some(db) = login.database().filter(|d| !d.is_empty()) {
            let slug = self
                .gateway
                .environment_slug(&identity.env_id)
                .await
                .map_err(|e| refuse("3D000", e.message))?;
            if !db.eq_ignore_ascii_case(&slug) {
                return Err(refuse(
                    "3D000",
                    format!(
                        "database \"{db}\" does not match this API key's environment (\"{slug}\")"
                    ),
                ));
            }
        }
        Ok(Some((identity, key)))
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.require_tls && !client.is_secure() {
                    return Err(refuse(
                        "28000",
                        "this gateway requires TLS: connect with sslmode=require",
                    ));
                }
                pgwire::api::auth::protocol_negotiation(client, startup).await?;
                pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
                self.driver
                    .begin_authentication(client, self.cleartext.create())
                    .await?
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                self.driver.advance_authentication(client, message).await?
            }
            _ => return Ok(()),
        };
        match outcome {
            AuthOutcome::InProgress => Ok(()),
            AuthOutcome::Authenticated {
                identity,
                final_message,
            } => {
                let Some((identity, key)) = identity else {
                    return Err(refuse("28P01", "password authentication failed"));
                };
                let ip = Some(client.socket_addr().ip());
                let mut session = Session::new(identity, Some(key), Door::Wire, ip);
                for (name, value) in client.metadata() {
                    match name.as_str() {
                        "options" => session.apply_options(value),
                        "user" | "database" | "client_encoding" => {}
                        other => session.set(other, value),
                    }
                }
                client
                    .session_extensions()
                    .insert(SessionSlot(Mutex::new(session)));
                self.driver
                    .complete_authentication(client, final_message)
                    .await?;
                let (pid, secret) = client.pid_and_secret_key();
                let (handle, guard) = self.connections.register(pid, secret);
                client.session_extensions().insert(CancelKey {
                    handle,
                    _registered: guard,
                });
                Ok(())
            }
        }
    }
}
