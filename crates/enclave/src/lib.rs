//! The `enclave` binary as a library, so integration tests start the very server users run.

pub mod admin;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod limits;
pub mod node;
pub mod server;
