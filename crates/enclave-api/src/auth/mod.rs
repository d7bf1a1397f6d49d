//! Authentication: who is calling, and may they do this.

pub mod access;
pub mod cache;
pub mod keys;
pub mod mfa;
pub mod origin;
pub mod passwords;
pub mod principal;
pub mod throttle;
pub mod tokens;
pub mod wire;

pub use origin::{Origin, RequestMeta};
pub use principal::{Caller, Principal};
