//! Startup: the password is an environment API key (the user name is free; a `database`
//! startup parameter, when given, must be that environment's slug), or — with an e-mail as the
//! user name — a person's access token, `database` naming the environment by its slug. Startup `options`
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

use crate::identity::{Credential, Door, Identity};
use crate::pipeline::Gateway;
use crate::session::{Session, SERVER_VERSION};
use crate::wire::SessionSlot;

pub struct Startup {
    driver: AuthDriver<DefaultServerParameterProvider, (Identity, Credential)>,
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

/// A failed sign-in's SQLSTATE: throttled (too many failures, or too many checks at once)
/// or simply wrong.
fn refusal_code(e: &enclave_core::Error) -> &'static str {
    match e.code {
        enclave_core::ErrorCode::RateLimited => "53400",
        enclave_core::ErrorCode::ServiceUnavailable => "53300",
        _ => "28P01",
    }
}

/// Checks the password: an API key, or a person's access token.
struct KeySource {
    gateway: Arc<Gateway>,
}

impl Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySource")
    }
}

#[async_trait]
impl AuthSource<(Identity, Credential)> for KeySource {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Keys are only ever verified (Argon2id), never read back.
        Err(refuse("28P01", "password authentication failed"))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<(Identity, Credential)>> {
        let password = std::str::from_utf8(presented)
            .map_err(|_| refuse("28P01", "password authentication failed"))?
            .to_string();
        let database = login.database().filter(|d| !d.is_empty());
        // A person signs in with their e-mail and an access token; anything else is a key.
        let user = login.user().filter(|u| u.contains('@'));
        if let (Some(email), false) = (user, password.starts_with("ek_")) {
            let database = database.ok_or_else(|| {
                refuse(
                    "28000",
                    "signing in as a user needs dbname: the environment's slug",
                )
            })?;
            let credential = Credential::User {
                email: email.to_string(),
                token: password,
                database: database.to_string(),
            };
            let identity = credential
                .authenticate(self.gateway.auth().as_ref(), None)
                .await
                .map_err(|e| refuse("28P01", e.message))?;
            return Ok(Some((identity, credential)));
        }
        let ip: Option<IpAddr> = login.host().parse().ok();
        let identity = self
            .gateway
            .auth()
            .api_key(&password, ip)
            .await
            .map_err(|e| refuse(refusal_code(&e), e.message))?;
        if let Some(db) = database {
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
        Ok(Some((identity, Credential::Key(password))))
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
                let Some((identity, credential)) = identity else {
                    return Err(refuse("28P01", "password authentication failed"));
                };
                let ip = Some(client.socket_addr().ip());
                let mut session = Session::new(identity, Some(credential), Door::Wire, ip);
                session.peer = client.session_extensions().get::<crate::peer::Peer>();
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
