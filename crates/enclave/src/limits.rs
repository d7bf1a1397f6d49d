//! The process's own limits, set at start.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the number of files the process may open to its hard limit (the soft limit is
/// often 1 024, which a few hundred idle sockets exhaust) and returns it.
pub fn raise_file_limit() -> u64 {
    let current = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: current.maximum,
        maximum: current.maximum,
    };
    if current.current != current.maximum {
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            return current.current.unwrap_or(u64::MAX);
        }
    }
    raised.current.unwrap_or(u64::MAX)
}
