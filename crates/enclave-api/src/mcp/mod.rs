//! The Model Context Protocol door: `/mcp` serves agents the tools of `tools.rs` and the
//! table resources of `resources.rs` over streamable HTTP (rmcp's transport). Each call is a
//! thin adapter over the gateway pipeline, run as the caller the HTTP request that carried it
//! authenticated as (the usual middleware: API key or a person's access token); the protocol
//! session, where there is one, holds nothing but the client's name and version.

mod call;
mod resources;
mod tools;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use enclave_core::audit::Actor;
use enclave_core::Error;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::auth::origin::actor_of;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::QUERY_BODY_BYTES;
use crate::state::AppState;
use call::Call;

/// What a model is told about this server when it connects.
const INSTRUCTIONS: &str = "Enclave gives governed SQL access to one environment's data. \
Start with `list_tables` (or the table resources) to see what you may read, `describe_table` \
for a table's columns, then `query`. Every statement runs under the environment's policies: \
some columns come back masked, some rows are filtered out, and some statements are refused \
with a SQLSTATE and the policy's name — `explain_access` tells you which apply to you. \
Results are capped (`max_rows`), and every call is audited.";

/// The `/mcp` route: rmcp's streamable HTTP service, refusing requests without credentials.
pub fn routes(state: AppState) -> Router<AppState> {
    let config = StreamableHttpServerConfig::default()
        // Every request is authenticated, and the server runs under whatever host name its
        // operators give it: the loopback-only default suits unauthenticated local servers.
        .disable_allowed_hosts()
        // No browser page of another origin may drive it (agents are not browsers).
        .enforce_origin_validation()
        .with_json_response(true)
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        .with_max_request_body_bytes(QUERY_BODY_BYTES);
    let service = StreamableHttpService::new(
        move || Ok(Mcp::new(state.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let owners = SessionOwners(
        moka::sync::Cache::builder()
            .max_capacity(MAX_SESSIONS)
            .time_to_idle(SESSION_OWNER_IDLE)
            .build(),
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(from_fn_with_state(owners, guard))
}

const SESSION_HEADER: &str = "mcp-session-id";
/// Sessions whose owner this node remembers; past it the least used are forgotten (and their
/// clients start new ones).
const MAX_SESSIONS: u64 = 100_000;
/// Longer than rmcp keeps an idle session (5 minutes): an owner outlives its session.
const SESSION_OWNER_IDLE: Duration = Duration::from_secs(600);

/// Who opened each protocol session: a session answers only the caller that opened it (each
/// request is authorized as its own caller anyway; this keeps one caller's session, and the
/// client name it declared, from being used under another's credentials).
#[derive(Clone)]
struct SessionOwners(moka::sync::Cache<String, Actor>);

async fn guard(State(owners): State<SessionOwners>, req: Request, next: Next) -> Response {
    let Some(caller) = req.extensions().get::<Caller>() else {
        return ApiError(Error::unauthorized(
            "MCP needs credentials: `Authorization: ApiKey <key>` (or `X-API-Key`, or `Bearer` \
             with a key or a person's access token)",
        ))
        .into_response();
    };
    let actor = actor_of(caller);
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(session) = &session {
        if owners.0.get(session).as_ref() != Some(&actor) {
            // As for a session that does not exist: the client opens a new one.
            return ApiError(Error::not_found("session")).into_response();
        }
    }
    let response = next.run(req).await;
    if session.is_none() {
        if let Some(opened) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            owners.0.insert(opened.to_string(), actor);
        }
    }
    response
}

/// The MCP server of one protocol session (or of one request, for stateless clients).
#[derive(Clone)]
pub struct Mcp {
    state: AppState,
}

impl Mcp {
    fn new(state: AppState) -> Mcp {
        Mcp { state }
    }
}

impl ServerHandler for Mcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("enclave", env!("CARGO_PKG_VERSION")).with_title("Enclave"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let call = Call::of(&context)?;
        Ok(ListToolsResult::with_all_items(tools::definitions(
            call.names_environment(),
        )))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let call = Call::of(&context)?;
        let arguments = request.arguments.unwrap_or_default();
        let run = tools::call(&self.state, &call, &request.name, arguments);
        // A client's cancellation drops the statement: its rows stop and its audit entry
        // says `cancelled`.
        tokio::select! {
            result = run => Ok(result?.into()),
            _ = context.ct.cancelled() => Err(McpError::internal_error("cancelled by the client", None)),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let call = Call::of(&context)?;
        let cursor = request.and_then(|r| r.cursor);
        resources::list(&self.state, &call, cursor).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Call::of(&context)?;
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            resources::template(),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let call = Call::of(&context)?;
        Ok(resources::read(&self.state, &call, &request.uri)
            .await?
            .into())
    }
}
