//! Authentication: who is calling, and may they do this.

pub mod access;
pub mod cache;
pub mod keys;
pub mod passwords;
pub mod principal;
pub mod tokens;

pub use principal::{Caller, Principal};
