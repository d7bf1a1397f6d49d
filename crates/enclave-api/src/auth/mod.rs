//! Authentication: who is calling, and may they do this.

pub mod access;
pub mod cache;
pub mod caller;
pub mod jit;
pub mod keys;
pub mod mfa;
pub mod origin;
pub mod passwords;
pub mod throttle;
pub mod tokens;
pub mod wire;

pub use caller::{Caller, UserCaller};
pub use origin::{Origin, RequestMeta};
