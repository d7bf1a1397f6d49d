//! Client subcommands: the CLI is a client of the same REST API as everyone else.

pub mod agents;
pub mod audit;
pub mod billing;
pub mod client;
pub mod data;
pub mod env;
pub mod jit;
pub mod keys;
pub mod mcp;
pub mod output;
pub mod policies;
pub mod secrets;
pub mod session;
pub mod shadow;
pub mod signin;
