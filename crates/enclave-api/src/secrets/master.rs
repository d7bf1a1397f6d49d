//! The master key: where it comes from (`ENCLAVE_MASTER_KEY`, or a key file made with mode
//! 0600 on first start), the check that it is the key this database was set up with, and
//! `enclave admin rotate-master-key`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use enclave_core::secret::crypto::MasterKey;
use enclave_store::Store;

use crate::auth::tokens::write_private;

/// Where the master key comes from. Its `Debug` never shows a configured key.
#[derive(Clone)]
pub enum MasterKeySource {
    /// The key itself (`ENCLAVE_MASTER_KEY`): every node of a cluster is given the same.
    Configured(String),
    /// A key file; created on first start when the database has no keyring yet.
    File(PathBuf),
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::Configured(_) => f.write_str("Configured(***)"),
            MasterKeySource::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl MasterKeySource {
    pub fn describe(&self) -> String {
        match self {
            MasterKeySource::Configured(_) => "ENCLAVE_MASTER_KEY".into(),
            MasterKeySource::File(p) => format!("the key file {}", p.display()),
        }
    }

    /// The key file a rotation writes its new key to before committing, next to the key
    /// file (or in `data_dir` for a configured key).
    pub fn next_file(&self, data_dir: &Path) -> PathBuf {
        match self {
            MasterKeySource::File(p) => with_suffix(p, ".next"),
            MasterKeySource::Configured(_) => data_dir.join("master.key.next"),
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Reads a key file, refusing one that others than its owner may read.
pub fn read_key_file(path: &Path) -> anyhow::Result<MasterKey> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read the master key file {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "the master key file {} is readable by others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the master key file {}", path.display()))?;
    MasterKey::parse(&text)
        .with_context(|| format!("the master key file {} is not a key", path.display()))
}

/// Writes a new key file (0600; never overwrites one).
pub fn write_key_file(path: &Path, key: &MasterKey) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_private(path, format!("{}\n", key.encode()).as_bytes())
        .with_context(|| format!("cannot write the master key file {}", path.display()))
}

/// Loads the master key and checks it against the database's keyring, recording it on the
/// very first start. A key that is not the database's stops the server with a message that
/// says which key the database expects, instead of serving values it cannot open.
pub async fn load(source: &MasterKeySource, store: &Store) -> anyhow::Result<MasterKey> {
    let key = match source {
        MasterKeySource::Configured(text) => {
            MasterKey::parse(text).context("ENCLAVE_MASTER_KEY is not a valid master key")?
        }
        MasterKeySource::File(path) if path.exists() => read_key_file(path)?,
        MasterKeySource::File(path) => {
            // No key file: only a database that never had one may get a new key.
            if let Some(id) = store.keyring_id().await? {
                bail!(
                    "no master key: this database's secrets are wrapped by master key {id}, but \
                     the key file {} does not exist and ENCLAVE_MASTER_KEY is not set. Restore \
                     the key file or set ENCLAVE_MASTER_KEY to that key.",
                    path.display()
                );
            }
            let key = MasterKey::generate();
            write_key_file(path, &key)?;
            tracing::info!(path = %path.display(), master_key_id = key.id(), "created the master key file");
            key
        }
    };
    let expected = store.keyring(key.id()).await?;
    if expected == key.id() {
        return Ok(key);
    }
    // A rotation that stopped between its commit and renaming the new key file into place.
    if let MasterKeySource::File(path) = source {
        let next = with_suffix(path, ".next");
        if next.exists() {
            let candidate = read_key_file(&next)?;
            if candidate.id() == expected {
                std::fs::rename(&next, path).with_context(|| {
                    format!("cannot move {} to {}", next.display(), path.display())
                })?;
                tracing::warn!(master_key_id = %expected, "finished an interrupted master key rotation");
                return Ok(candidate);
            }
        }
    }
    bail!(
        "the master key does not match this database: its secrets are wrapped by master key \
         {expected}, and {} is master key {}. Start with the key this database was set up with \
         (after `enclave admin rotate-master-key`, the new one).",
        source.describe(),
        key.id()
    )
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotation {
    pub from: String,
    pub to: String,
    pub data_keys: u64,
    /// Where the new key is, when it was generated (for a configured key: to be moved into
    /// the configuration; for a key file: already in place).
    pub new_key_file: Option<PathBuf>,
}

/// Re-wraps every data key under a new master key, in one transaction. The new key is
/// `new_key` if given, else generated and written to the `.next` key file *before* the
/// database changes (so it can never be lost); for a key-file source that file then replaces
/// the old one.
pub async fn rotate(
    source: &MasterKeySource,
    data_dir: &Path,
    new_key: Option<MasterKey>,
    store: &Store,
) -> anyhow::Result<Rotation> {
    let old = load(source, store).await?;
    let next = source.next_file(data_dir);
    let from_file = matches!(source, MasterKeySource::File(_));
    let (new, written) = match (new_key, next.exists()) {
        (Some(k), _) if !from_file => (k, None),
        // Left by a rotation that did not finish: use it, so no second new key appears.
        (given, true) => {
            let on_disk = read_key_file(&next)?;
            if given.is_some_and(|g| g.id() != on_disk.id()) {
                bail!(
                    "{} holds another key than ENCLAVE_NEW_MASTER_KEY; remove it first",
                    next.display()
                );
            }
            (on_disk, Some(next.clone()))
        }
        (given, false) => {
            let k = given.unwrap_or_else(MasterKey::generate);
            write_key_file(&next, &k)?;
            (k, Some(next.clone()))
        }
    };
    if new.id() == old.id() {
        bail!("the new master key is the current one ({})", old.id());
    }
    let rewrap = |env_id: &str, key_id: &str, wrapped: &[u8]| {
        new.rewrap(&old, env_id, key_id, wrapped).map_err(|_| {
            tracing::error!(
                env_id,
                "a data key does not open with the current master key"
            );
            enclave_core::Error::internal()
        })
    };
    // Webhook signing secrets move with the data keys, in the same transaction.
    let reseal = |webhook_id: &str, stored: &str| {
        new.reseal_text(&old, webhook_id, stored).map_err(|_| {
            tracing::error!(
                webhook_id,
                "a webhook signing secret does not open with the current master key"
            );
            enclave_core::Error::internal()
        })
    };
    let data_keys = store
        .rotate_master_key(old.id(), new.id(), &rewrap, &reseal)
        .await
        .context("the rotation was rolled back; nothing changed")?;
    let new_key_file = match (source, written) {
        (MasterKeySource::File(path), Some(file)) => {
            std::fs::rename(&file, path).with_context(|| {
                format!(
                    "rotated, but cannot move {} to {}: move it by hand",
                    file.display(),
                    path.display()
                )
            })?;
            Some(path.clone())
        }
        (_, written) => written,
    };
    Ok(Rotation {
        from: old.id().to_string(),
        to: new.id().to_string(),
        data_keys,
        new_key_file,
    })
}
