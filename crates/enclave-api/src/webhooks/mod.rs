//! Webhook delivery: the SSRF guard every connection goes through, and the worker that
//! drains the outbox.

pub mod guard;
pub mod worker;
