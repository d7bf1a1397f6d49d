//! Integration tests: the real server on a random port, driven over HTTP like any client, on
//! SQLite and on PostgreSQL.

mod account;
mod agents;
mod api_keys;
mod audit;
mod auth;
mod billing;
mod cli;
mod cluster;
mod common;
mod contract;
mod conventions;
mod dashboard;
mod data_clone;
mod durability;
mod enforcement;
mod environments;
mod gateway;
mod hardening;
mod jit;
mod mcp;
mod members;
mod organizations;
mod policies;
mod raw_wire;
mod readme;
mod receiver;
mod result_cache;
mod secrets;
mod secrets_at_rest;
mod shadow;
mod sql_compat;
mod system;
mod webhooks;
