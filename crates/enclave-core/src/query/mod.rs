//! What the gateway knows about a SQL statement before it runs (pipeline stages 2–4 of
//! docs/gateway.md): parsing one statement at a time, the statement's kind and the tables
//! it touches, whether the caller may run it, the text the query audit keeps (literals
//! redacted) and the SQLSTATE an error is reported with.
//!
//! Statements are parsed with sqlparser and an allow-list decides what may run: the engine is
//! sent the re-serialised statement, never the client's original text, so a construct the
//! parser does not understand never reaches an engine.

mod analyze;
pub mod audit;
mod authorize;
pub mod catalog;
pub mod cost;
pub mod enforce;
pub(crate) mod limits;
mod redact;
mod shapes;
mod sqlstate;
mod translate;
mod translations;

pub use analyze::{parse, parse_within, Analyzed, Dialect, Kind, SessionCommand};
pub use authorize::{authorize, required_permission, required_scope};
pub use limits::{with_stack, Limits};
pub use redact::redact;
pub use sqlstate::{sqlstate, with_sqlstate};
pub use translations::Translations;
