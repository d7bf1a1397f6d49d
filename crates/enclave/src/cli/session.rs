//! The session `enclave login` keeps for a person: the server's URL, an access token and the
//! refresh token that renews it, in one file only its owner can read (0600, in a 0700
//! directory): `$ENCLAVE_CONFIG_DIR/session.json`, else `$XDG_CONFIG_HOME/enclave/…`, else
//! `~/.config/enclave/…`.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub url: String,
    pub email: String,
    pub token: String,
    pub refresh_token: String,
    /// Unix seconds when `token` expires.
    pub expires_at: i64,
}

impl Session {
    /// Whether the access token is expired or about to be (within a minute).
    pub fn stale(&self) -> bool {
        self.expires_at - 60 <= enclave_core::clock::now().timestamp()
    }
}

/// Where the session file is; `None` with no configuration directory to be found.
pub fn path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let dir = var("ENCLAVE_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| var("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("enclave")))
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config/enclave")))?;
    Some(dir.join("session.json"))
}

/// The stored session, if any.
pub fn load() -> anyhow::Result<Option<Session>> {
    let Some(path) = path() else { return Ok(None) };
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not a session file; remove it", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Stores `session` (replacing the file whole, so a reader never sees half of it); returns
/// where.
pub fn save(session: &Session) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    let path = path().context("no configuration directory: set ENCLAVE_CONFIG_DIR or HOME")?;
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(".session.json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(session)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Forgets the stored session; whether there was one.
pub fn remove() -> anyhow::Result<bool> {
    let Some(path) = path() else { return Ok(false) };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}
