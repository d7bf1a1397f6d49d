//! Enclave's domain: identifiers, validation, roles and permissions, the error type and the
//! rules that govern organizations and memberships.
//!
//! This crate is pure — no I/O, no async runtime, no SQL — so every rule here is unit-tested
//! without a database, and every other crate goes through it.

pub mod agent;
pub mod api_key;
pub mod audit;
pub mod billing;
pub mod clock;
pub mod diff;
pub mod environment;
pub mod error;
pub mod id;
pub mod jit;
pub mod membership;
pub mod model;
pub mod pagination;
pub mod policy;
pub mod promotion;
pub mod query;
pub mod role;
pub mod secret;
pub mod shadow;
pub mod stored;
pub mod validate;
pub mod webhook;

pub use error::{Error, ErrorCode, Result};
pub use role::{Permission, Role};
