//! Who sent an MCP request: the HTTP request's caller, address, id and headers, and the MCP
//! client's own name and version (the agent framework of the query audit).

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use enclave_core::{Error, Result};
use enclave_gateway::{Door, Session};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};

use crate::auth::origin::RequestMeta;
use crate::auth::Caller;
use crate::middleware::context::RequestId;
use crate::sql_session::session_at;
use crate::state::AppState;

pub(super) struct Call {
    caller: Caller,
    meta: RequestMeta,
    headers: HeaderMap,
    /// `name/version` of the MCP client.
    client: Option<String>,
}

impl Call {
    pub(super) fn of(context: &RequestContext<RoleServer>) -> std::result::Result<Call, McpError> {
        // The transport puts the HTTP request's parts in every request's context; the route
        // refuses requests without a caller before they reach it.
        let parts = context
            .extensions
            .get::<Parts>()
            .ok_or_else(|| McpError::internal_error("the HTTP request is missing", None))?;
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| McpError::invalid_request("credentials are required", None))?;
        let meta = RequestMeta {
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
            source_ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
        };
        // Clients of the stateless protocol name themselves in each request; older ones
        // once, when their session began.
        let client = context
            .meta
            .client_info()
            .or_else(|| context.peer.peer_info().map(|p| p.client_info.clone()))
            .map(|c| format!("{}/{}", c.name, c.version));
        Ok(Call {
            caller,
            meta,
            headers: parts.headers.clone(),
            client,
        })
    }

    /// A header of the HTTP request, trimmed; `None` when absent or empty.
    pub(super) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// Whether each call must name its environment: a person's token reaches several; a
    /// key, one.
    pub(super) fn names_environment(&self) -> bool {
        matches!(self.caller, Caller::User(_))
    }

    /// The environment a call is for: the one named, which a person must name.
    pub(super) fn environment<'a>(&self, named: Option<&'a str>) -> Result<Option<&'a str>> {
        match (named, self.names_environment()) {
            (None, true) => Err(Error::validation(
                "environment",
                "required",
                "name the environment (its id, env_…): a person's token reaches several",
            )),
            (named, _) => Ok(named),
        }
    }

    /// The gateway session of one call: the caller in the environment, through the MCP door,
    /// with the client as the agent framework unless a header names another.
    pub(super) async fn session(&self, state: &AppState, env_id: Option<&str>) -> Result<Session> {
        let env_id = self.environment(env_id)?;
        let mut session = session_at(
            state,
            &self.caller,
            &self.meta,
            &self.headers,
            env_id,
            Door::Mcp,
        )
        .await?;
        if session.agent.framework.is_none() {
            if let Some(client) = &self.client {
                session.set("enclave_framework", client);
            }
        }
        Ok(session)
    }
}
