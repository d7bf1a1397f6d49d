//! The gateway session of an HTTP request: the caller as the pipeline sees it, in the
//! environment the request names, with the agent headers applied; and running a request's
//! statements in it. Shared by the query and table routes and the MCP tools.

use std::net::IpAddr;

use axum::http::HeaderMap;
use enclave_core::query::Analyzed;
use enclave_core::{Error, Permission, Result};
use enclave_gateway::engine::Param;
use enclave_gateway::{Door, Identity, Outcome, RequestClock, Session};
use serde_json::Value;

use crate::access::env_access;
use crate::auth::origin::RequestMeta;
use crate::auth::Caller;
use crate::state::AppState;

/// The caller as the pipeline sees it, in the environment the request names.
async fn identity(state: &AppState, who: &Caller, env_id: Option<&str>) -> Result<Identity> {
    match who {
        Caller::Key(key) => {
            if let Some(env) = env_id.filter(|e| *e != key.env_id) {
                // Refused either way: 404 for another organization's (or no) environment, 403
                // for another one of the key's organization — as every other keyed route does.
                env_access(state, who, env, Permission::ReadEnvironments).await?;
                return Err(Error::forbidden(
                    "key_environment",
                    "an API key acts only in its own environment",
                ));
            }
            Ok(key.identity())
        }
        Caller::User(user) => {
            let env_id = env_id.ok_or_else(|| {
                Error::validation("env_id", "required", "env_id is required with a user token")
            })?;
            let (env, access) =
                env_access(state, who, env_id, Permission::ReadEnvironments).await?;
            crate::auth::wire::person(
                &state.auth_cache,
                &user.user_id,
                &env.org_id,
                &env.id,
                access.role,
                access.grant,
            )
            .await
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().chars().take(256).collect())
        .filter(|v: &String| !v.is_empty())
}

/// The session of one HTTP request: the caller in the environment it names, with the agent
/// headers applied.
pub(crate) async fn http_session(
    state: &AppState,
    who: &Caller,
    meta: &RequestMeta,
    headers: &HeaderMap,
    env_id: Option<&str>,
) -> Result<Session> {
    session_at(state, who, meta, headers, env_id, Door::Http).await
}

/// The session of one request that came through `door`.
pub(crate) async fn session_at(
    state: &AppState,
    who: &Caller,
    meta: &RequestMeta,
    headers: &HeaderMap,
    env_id: Option<&str>,
    door: Door,
) -> Result<Session> {
    let ip: Option<IpAddr> = meta.source_ip.as_deref().and_then(|ip| ip.parse().ok());
    let identity = identity(state, who, env_id).await?;
    let mut session = Session::new(identity, None, door, ip);
    for (h, name) in [
        ("x-agent-id", "enclave_agent_id"),
        ("x-agent-framework", "enclave_framework"),
        ("x-enclave-priority", "enclave_priority"),
    ] {
        if let Some(v) = header(headers, h) {
            session.set(name, &v);
        }
    }
    Ok(session)
}

/// A request's SQL, parameters and timeout, checked before anything runs.
pub(crate) fn check_request(sql: &str, params: &[Value], timeout_ms: Option<i64>) -> Result<()> {
    if sql.trim().is_empty() {
        return Err(Error::validation(
            "sql",
            "required",
            "sql must not be empty",
        ));
    }
    if params.len() > 65_535 {
        return Err(Error::validation(
            "params",
            "max_items",
            "at most 65 535 parameters",
        ));
    }
    if let Some(t) = timeout_ms {
        if !(1..=3_600_000).contains(&t) {
            return Err(Error::validation(
                "timeout_ms",
                "range",
                "timeout_ms must be between 1 and 3600000",
            ));
        }
    }
    Ok(())
}

/// A JSON value as the parameter `$i+1`: strings, numbers, booleans or null.
fn param(i: usize, v: Value) -> Result<Param> {
    Ok(match v {
        Value::Null => Param::Null,
        Value::Bool(b) => Param::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Param::Int(i),
            None => Param::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Param::Text(s),
        Value::Array(_) | Value::Object(_) => {
            return Err(Error::validation(
                &format!("params[{i}]"),
                "scalar",
                "parameters are strings, numbers, booleans or null",
            ))
        }
    })
}

/// Runs every statement of `sql` in the session, each through the whole pipeline; the last
/// one's outcome is the answer (the rows of earlier ones are read and dropped).
pub(crate) async fn run_statements(
    state: &AppState,
    session: &mut Session,
    sql: &str,
    params: Vec<Value>,
    clock: RequestClock,
) -> Result<Outcome> {
    let params = params
        .into_iter()
        .enumerate()
        .map(|(i, v)| param(i, v))
        .collect::<Result<Vec<_>>>()?;
    let gateway = state.gateway.clone();
    let statements: Vec<Analyzed> = gateway.parse(session, sql).await?;
    let Some((last, earlier)) = statements.split_last() else {
        return Err(Error::validation(
            "sql",
            "required",
            "sql holds no statement",
        ));
    };
    for statement in earlier {
        if let Outcome::Rows(mut rows) = gateway
            .execute(session, statement, params.clone(), clock)
            .await?
        {
            while let Some(batch) = rows.next().await {
                batch?;
            }
        }
    }
    gateway.execute(session, last, params, clock).await
}
