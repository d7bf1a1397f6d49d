//! Enclave's data plane: every environment's data behind a policy-enforcing SQL pipeline
//! (docs/gateway.md), reached through the Postgres wire protocol ([`wire`]) and the HTTP
//! query endpoints (mounted by `enclave-api` over [`Gateway::run`]).
//!
//! A statement goes through explicit stages in [`pipeline`]: admission, parse and classify,
//! translate (Snowflake-style SQL for the engine, cached by text:
//! [`enclave_core::query::Translations`]),
//! authorize (roles, key scopes, ABAC), rewrite (masks and row filters, [`enforcement`]),
//! estimate and quota (credits from the engine's statistics, [`statistics`], against the
//! organization's remaining credits, [`meter`]), execute (with the environment's timeout and
//! the row cap), meter, audit and respond; reads are answered from the result cache
//! ([`result_cache`]) when nothing they read changed.

pub mod admission;
pub mod audit;
pub mod capabilities;
pub mod catalog;
pub mod copy_in;
pub mod enforcement;
pub mod engine;
pub mod identity;
pub mod load;
pub mod meter;
pub mod peer;
pub mod pipeline;
pub mod result_cache;
mod result_columns;
pub mod results;
pub mod running;
pub mod session;
mod session_functions;
pub mod shadow;
pub mod statistics;
pub mod storage;
pub mod wire;

/// The embedded engine's crate, for callers that read or write its files (tests, tools).
pub use duckdb;
pub use identity::{Authenticator, Credential, Door, Identity};
pub use pipeline::{Gateway, GatewayConfig, Notice, Outcome, RequestClock};
pub use running::Rows;
pub use session::Session;
