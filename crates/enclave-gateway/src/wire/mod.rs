//! The Postgres wire door (protocol v3, via pgwire): startup and authentication with an
//! environment API key as the password, simple and extended query, each statement through
//! the [`Gateway`] pipeline, results streamed as `DataRow`s.

mod checked;
mod connection;
mod encode;
mod frames;
mod startup;
mod tls;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use enclave_core::query::enforce::max_placeholder;
use enclave_core::query::{sqlstate, Analyzed, Kind};
use enclave_core::Error;
use futures::stream::{self, StreamExt};
use futures::{Sink, SinkExt};
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::{ClientInfo, ConnectionManager, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::engine::Param;
use crate::pipeline::{Gateway, Notice, Outcome, RequestClock};
use crate::session::Session;

pub use connection::WireLimits;
use startup::CancelKey;
pub use startup::Startup;
pub use tls::{Tls, TlsConfig};

/// The session of one connection, kept in pgwire's per-connection extensions.
pub(crate) struct SessionSlot(pub Mutex<Session>);

fn session_of<C: ClientInfo>(client: &C) -> PgWireResult<Arc<SessionSlot>> {
    client
        .session_extensions()
        .get::<SessionSlot>()
        .ok_or_else(|| {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "not authenticated".into(),
            )))
        })
}

/// An Enclave error as an `ErrorResponse`: its SQLSTATE, its message, the Enclave error
/// code in DETAIL, and the position of a syntax error.
pub(crate) fn pg_error(e: Error) -> PgWireError {
    let mut info = ErrorInfo::new("ERROR".into(), sqlstate(&e).to_string(), e.message.clone());
    let mut detail = format!("Enclave code: {}", e.code.as_str());
    if let Some(rule) = e.details.get("rule").and_then(|r| r.as_str()) {
        detail.push_str(&format!(" ({rule})"));
    }
    info.detail = Some(detail);
    info.position = e.details.get("position").map(|p| p.to_string());
    PgWireError::UserError(Box::new(info))
}

/// Accepts connections until the listener fails; each runs in its own task, within
/// `limits`.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tls: Option<Tls>,
    limits: WireLimits,
) {
    // Cancel requests come on a new connection with the (pid, secret) the session got at
    // startup; the manager finds the session's handle and fires its current statement's.
    let connections = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        cancel: Arc::new(DefaultCancelHandler::new(connections.clone())),
        query: Arc::new(QueryHandler {
            gateway: gateway.clone(),
            parser: Arc::new(Parser {
                gateway: gateway.clone(),
            }),
        }),
        startup: Arc::new(Startup::new(
            gateway,
            connections,
            tls.as_ref().is_some_and(|t| t.require),
        )),
    });
    let occupancy = connection::Occupancy::new(limits);
    loop {
        let socket = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors: the connections held are let go over time.
                tracing::warn!(error = %e, "gateway accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        connection::spawn(
            socket,
            handlers.clone(),
            tls.as_ref().map(|t| t.acceptor.clone()),
            &occupancy,
        );
    }
}

struct Handlers {
    cancel: Arc<DefaultCancelHandler>,
    query: Arc<QueryHandler>,
    startup: Arc<Startup>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.query.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

struct QueryHandler {
    gateway: Arc<Gateway>,
    parser: Arc<Parser>,
}

/// A prepared statement: its text, parsed and classified.
#[derive(Debug, Clone)]
pub struct Prepared {
    statement: Arc<Analyzed>,
}

struct Parser {
    gateway: Arc<Gateway>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let slot = session_of(client)?;
        let session = slot.0.lock().await;
        let mut statements = self.gateway.parse(&session, sql).await.map_err(pg_error)?;
        match statements.len() {
            0 => Ok(None),
            1 => Ok(Some(Prepared {
                statement: Arc::new(statements.remove(0)),
            })),
            _ => Err(pg_error(enclave_core::query::with_sqlstate(
                Error::validation(
                    "sql",
                    "one_statement",
                    "cannot insert multiple commands into a prepared statement",
                ),
                "42601",
            ))),
        }
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(vec![
            Type::UNKNOWN;
            max_placeholder(&stmt.statement.statement)
        ])
    }

    /// Not used: `do_describe_statement` and `do_describe_portal` ask the engine.
    fn get_result_schema(
        &self,
        _stmt: &Prepared,
        _format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(vec![])
    }
}

impl QueryHandler {
    /// One statement through the pipeline, as a wire response. With `buffer`, rows are read
    /// before returning (a later statement of the same string needs the connection).
    async fn respond(
        &self,
        session: &mut Session,
        statement: &Analyzed,
        params: Vec<Param>,
        format: &Format,
        buffer: bool,
        clock: RequestClock,
    ) -> PgWireResult<(Response, Option<Notice>)> {
        if statement.copy_in.is_some() {
            let columns = self
                .gateway
                .begin_copy(session, statement)
                .await
                .map_err(pg_error)?;
            return Ok((
                Response::CopyIn(CopyResponse::new(0, columns, stream::empty())),
                None,
            ));
        }
        let outcome = self
            .gateway
            .execute(session, statement, params, clock)
            .await
            .map_err(pg_error)?;
        let response = match outcome {
            Outcome::Command { tag, notice, .. } => {
                // The count is already in the text of INSERT/UPDATE/DELETE tags.
                let t = Tag::new(&tag);
                let response = match statement.kind {
                    Kind::Session if tag == "BEGIN" => Response::TransactionStart(t),
                    Kind::Session if tag == "COMMIT" || tag == "ROLLBACK" => {
                        Response::TransactionEnd(t)
                    }
                    _ => Response::Execution(t),
                };
                return Ok((response, notice));
            }
            Outcome::Show { name, value, .. } => {
                let field = FieldInfo::new(name, None, None, Type::TEXT, format.format_for(0));
                let fields = Arc::new(vec![field]);
                let mut encoder = pgwire::api::results::DataRowEncoder::new(fields.clone());
                encoder.encode_field(&value)?;
                let row = encoder.take_row();
                Response::Query(QueryResponse::new(fields, stream::iter(vec![Ok(row)])))
            }
            Outcome::Rows(rows) => {
                let fields = Arc::new(encode::fields(&rows.schema, format));
                let tag = rows.tag.clone();
                let data = encode::rows(*rows, fields.clone());
                let mut response = if buffer {
                    let collected: Vec<_> = data.collect().await;
                    if let Some(Err(e)) = collected.iter().find(|r| r.is_err()) {
                        return Err(PgWireError::ApiError(e.to_string().into()));
                    }
                    QueryResponse::new(fields, stream::iter(collected))
                } else {
                    QueryResponse::new(fields, data)
                };
                if tag != "SELECT" {
                    response.set_command_tag(&tag);
                }
                Response::Query(response)
            }
        };
        Ok((response, None))
    }
}

/// A warning the pipeline answered with a statement, sent ahead of the statement's own answer.
async fn send_notice<C>(client: &mut C, notice: Option<Notice>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if let Some(notice) = notice {
        let warning = ErrorInfo::new(
            "WARNING".to_owned(),
            notice.sqlstate.to_owned(),
            notice.message.to_owned(),
        );
        client
            .send(PgWireBackendMessage::NoticeResponse(warning.into()))
            .await?;
    }
    Ok(())
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let clock = RequestClock::start(None);
        let slot = session_of(client)?;
        let mut session = slot.0.lock().await;
        let statements = self
            .gateway
            .parse(&session, query)
            .await
            .map_err(pg_error)?;
        let handle = client.session_extensions().get::<CancelKey>();
        let mut responses = Vec::with_capacity(statements.len());
        let last = statements.len().saturating_sub(1);
        for (i, statement) in statements.iter().enumerate() {
            if i > 0 && session.peer.as_ref().is_some_and(|p| p.gone()) {
                // Nobody will read the rest: it does not run.
                break;
            }
            if let Some(key) = &handle {
                session.cancel = Some(key.handle.start_query().await);
            }
            match self
                .respond(
                    &mut session,
                    statement,
                    vec![],
                    &Format::UnifiedText,
                    i < last,
                    clock,
                )
                .await
            {
                Ok((r, notice)) => {
                    send_notice(client, notice).await?;
                    responses.push(r)
                }
                Err(PgWireError::UserError(info)) => {
                    // Later statements of the string do not run, as in PostgreSQL.
                    responses.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let clock = RequestClock::start(None);
        let slot = session_of(client)?;
        let mut session = slot.0.lock().await;
        let params = decode_params(portal)?;
        if let Some(key) = client.session_extensions().get::<CancelKey>() {
            session.cancel = Some(key.handle.start_query().await);
        }
        let statement = portal.statement.statement.statement.clone();
        let (response, notice) = self
            .respond(
                &mut session,
                &statement,
                params,
                &portal.result_column_format,
                false,
                clock,
            )
            .await?;
        send_notice(client, notice).await?;
        Ok(response)
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        stmt: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let n = max_placeholder(&stmt.statement.statement.statement);
        let params: Vec<Type> = (0..n)
            .map(|i| {
                stmt.parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        let nulls = vec![Param::Null; n];
        let fields = self
            .describe(
                client,
                &stmt.statement.statement,
                nulls,
                &Format::UnifiedBinary,
            )
            .await?;
        Ok(DescribeStatementResponse::new(params, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let params = decode_params(portal)?;
        let fields = self
            .describe(
                client,
                &portal.statement.statement.statement,
                params,
                &portal.result_column_format,
            )
            .await?;
        Ok(DescribePortalResponse::new(fields))
    }
}

impl QueryHandler {
    /// The columns a statement will return, without running it.
    async fn describe<C>(
        &self,
        client: &C,
        statement: &Analyzed,
        params: Vec<Param>,
        format: &Format,
    ) -> PgWireResult<Vec<FieldInfo>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if !matches!(statement.kind, Kind::Read) {
            return Ok(vec![]);
        }
        let slot = session_of(client)?;
        let mut session = slot.0.lock().await;
        let schema = self
            .gateway
            .describe(&mut session, statement, params)
            .await
            .map_err(pg_error)?;
        Ok(encode::fields(&schema, format))
    }
}

/// The portal's parameters for the engine: text-format values as text (the engine casts
/// them to the parameter's type), binary ones decoded by their declared type.
fn decode_params(portal: &Portal<Prepared>) -> PgWireResult<Vec<Param>> {
    let types = &portal.statement.parameter_types;
    (0..portal.parameter_len())
        .map(|i| {
            let declared = types.get(i).cloned().flatten().unwrap_or(Type::UNKNOWN);
            let binary = portal.parameter_format.format_for(i) == FieldFormat::Binary;
            if portal
                .parameters
                .get(i)
                .map(Option::is_none)
                .unwrap_or(true)
            {
                return Ok(Param::Null);
            }
            if !binary {
                let text: Option<String> = portal.parameter(i, &Type::TEXT)?;
                return Ok(match (declared, text) {
                    (_, None) => Param::Null,
                    (Type::INT2 | Type::INT4 | Type::INT8, Some(t)) => {
                        t.trim().parse().map(Param::Int).unwrap_or(Param::Text(t))
                    }
                    (_, Some(t)) => Param::Text(t),
                });
            }
            Ok(match declared {
                Type::BOOL => portal
                    .parameter::<bool>(i, &declared)?
                    .map_or(Param::Null, Param::Bool),
                Type::INT2 => portal
                    .parameter::<i16>(i, &declared)?
                    .map_or(Param::Null, |v| Param::Int(v.into())),
                Type::INT4 => portal
                    .parameter::<i32>(i, &declared)?
                    .map_or(Param::Null, |v| Param::Int(v.into())),
                Type::INT8 => portal
                    .parameter::<i64>(i, &declared)?
                    .map_or(Param::Null, Param::Int),
                Type::FLOAT4 => portal
                    .parameter::<f32>(i, &declared)?
                    .map_or(Param::Null, |v| Param::Float(v.into())),
                Type::FLOAT8 => portal
                    .parameter::<f64>(i, &declared)?
                    .map_or(Param::Null, Param::Float),
                Type::BYTEA => portal
                    .parameter::<Vec<u8>>(i, &declared)?
                    .map_or(Param::Null, Param::Bytes),
                Type::NUMERIC => portal
                    .parameter::<rust_decimal::Decimal>(i, &declared)?
                    .map_or(Param::Null, |d| Param::Text(d.to_string())),
                Type::DATE => portal
                    .parameter::<chrono::NaiveDate>(i, &declared)?
                    .map_or(Param::Null, |d| Param::Text(d.to_string())),
                Type::TIMESTAMP => portal
                    .parameter::<chrono::NaiveDateTime>(i, &declared)?
                    .map_or(Param::Null, |d| Param::Text(d.to_string())),
                Type::TIMESTAMPTZ => portal
                    .parameter::<chrono::DateTime<chrono::FixedOffset>>(i, &declared)?
                    .map_or(Param::Null, |d| Param::Text(d.to_rfc3339())),
                _ => portal
                    .parameter::<String>(i, &Type::TEXT)?
                    .map_or(Param::Null, Param::Text),
            })
        })
        .collect()
}

/// COPY data from the client, spooled; at the end, loaded and answered with `COPY n`.
#[async_trait]
impl CopyHandler for QueryHandler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let slot = session_of(client)?;
        let mut session = slot.0.lock().await;
        self.gateway.copy_data(&mut session, copy_data.data).await;
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let slot = session_of(client)?;
        let loaded = {
            let mut session = slot.0.lock().await;
            self.gateway.finish_copy(&mut session).await
        }
        .map_err(pg_error)?;
        let tag = Tag::new("COPY").with_rows(loaded.rows as usize);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Ok(slot) = session_of(client) {
            self.gateway.abort_copy(&mut *slot.0.lock().await);
        }
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "57014".into(),
            format!("COPY from stdin failed: {}", fail.message),
        )))
    }
}

impl Debug for QueryHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryHandler")
    }
}
