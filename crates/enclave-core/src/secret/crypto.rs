//! Envelope encryption of secret values (docs/secrets.md): each environment has a data key
//! (AES-256-GCM); every value is sealed under it with a fresh random nonce and its ids as
//! associated data; data keys are stored wrapped (sealed) by the master key.
//!
//! Sealed bytes are `[format = 1][nonce: 12][ciphertext][tag: 16]`. The associated data binds
//! a sealed value to its environment, data key, secret and version, so a ciphertext copied to
//! another row (another secret, an older version, another environment) fails to open.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

pub const KEY_LEN: usize = 32;
const FORMAT: u8 = 1;
const TAG_LEN: usize = 16;

/// A sealed value or key that does not open: wrong key, wrong ids, or altered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ciphertext does not open with this key and these ids")]
pub struct OpenError;

/// Why master key text was refused. Never holds the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a master key is 32 bytes written as base64 (44 characters) or hex (64 characters); {0}")]
pub struct KeyFormatError(&'static str);

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random number generator failed");
    bytes
}

fn aead_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"))
}

fn seal(key: &LessSafeKey, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = random();
    let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.push(FORMAT);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[1 + NONCE_LEN..],
        )
        .expect("AES-GCM seals any input below 64 GiB");
    out.extend_from_slice(tag.as_ref());
    out
}

fn open(key: &LessSafeKey, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != FORMAT {
        return Err(OpenError);
    }
    let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().map_err(|_| OpenError)?;
    let mut buf = sealed[1 + NONCE_LEN..].to_vec();
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| OpenError)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// The key that wraps every environment's data key. Its id (`mk_…`, derived from the key by
/// HMAC, so it reveals nothing of it) is what the database records, so a server started with
/// another key can say so instead of failing on the first secret.
pub struct MasterKey {
    bytes: [u8; KEY_LEN],
    key: LessSafeKey,
    id: String,
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        MasterKey::from_bytes(random())
    }

    fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(&bytes).expect("HMAC takes any key length");
        mac.update(b"enclave master key id v1");
        let digest = mac.finalize().into_bytes();
        MasterKey {
            key: aead_key(&bytes),
            id: format!("mk_{}", hex_lower(&digest[..8])),
            bytes,
        }
    }

    /// Base64 (padded or not) or hex text of 32 bytes; surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<MasterKey, KeyFormatError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyFormatError("it is empty"));
        }
        let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..KEY_LEN)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| KeyFormatError("it is not hex"))?
        } else {
            STANDARD
                .decode(text)
                .or_else(|_| STANDARD_NO_PAD.decode(text))
                .map_err(|_| KeyFormatError("it is neither base64 nor hex"))?
        };
        let bytes: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyFormatError("it does not decode to 32 bytes"))?;
        Ok(MasterKey::from_bytes(bytes))
    }

    /// The text form written to key files (base64).
    pub fn encode(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A fresh data key for `env_id`, and its wrapped form to store.
    pub fn new_data_key(&self, env_id: &str) -> (DataKey, WrappedKey) {
        let key_id = format!("dek_{}", hex_lower(&random::<10>()));
        let mut bytes: [u8; KEY_LEN] = random();
        let wrapped = seal(&self.key, &bytes, &wrap_aad(env_id, &key_id));
        let data_key = DataKey {
            env_id: env_id.to_string(),
            key_id: key_id.clone(),
            key: aead_key(&bytes),
            mask_key: mask_key(&bytes),
        };
        bytes.zeroize();
        let wrapped = WrappedKey {
            key_id,
            wrapped,
            master_key_id: self.id.clone(),
        };
        (data_key, wrapped)
    }

    /// Opens a data key this master key wrapped for `env_id`.
    pub fn unwrap(&self, env_id: &str, key_id: &str, wrapped: &[u8]) -> Result<DataKey, OpenError> {
        let bytes = Zeroizing::new(open(&self.key, wrapped, &wrap_aad(env_id, key_id))?);
        let mut bytes: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| OpenError)?;
        let key = aead_key(&bytes);
        let mask_key = mask_key(&bytes);
        bytes.zeroize();
        Ok(DataKey {
            env_id: env_id.to_string(),
            key_id: key_id.to_string(),
            key,
            mask_key,
        })
    }

    /// Re-wraps a data key from `old` to `self` without ever exposing it outside.
    pub fn rewrap(
        &self,
        old: &MasterKey,
        env_id: &str,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let aad = wrap_aad(env_id, key_id);
        let bytes = Zeroizing::new(open(&old.key, wrapped, &aad)?);
        Ok(seal(&self.key, &bytes, &aad))
    }
}

/// How a secret the server itself keeps (a webhook's signing secret) is stored: sealed by the
/// master key as `sealed:v1:<master key id>:<base64 of the sealed bytes>`, bound to what it
/// belongs to (`owner`, e.g. the webhook's id) so it opens nowhere else.
const SEALED_TEXT: &str = "sealed:v1:";

/// Whether `stored` is a sealed text (rather than a value stored in clear by an older
/// release).
pub fn is_sealed_text(stored: &str) -> bool {
    stored.starts_with(SEALED_TEXT)
}

/// The id of the master key that sealed `stored`, if it is a sealed text.
pub fn sealed_text_key_id(stored: &str) -> Option<&str> {
    stored.strip_prefix(SEALED_TEXT)?.split(':').next()
}

fn text_aad(owner: &str) -> Vec<u8> {
    format!("enclave sealed text v1\0{owner}").into_bytes()
}

impl MasterKey {
    /// Seals `value`, a secret of `owner`, for storing.
    pub fn seal_text(&self, owner: &str, value: &str) -> String {
        let sealed = seal(&self.key, value.as_bytes(), &text_aad(owner));
        format!("{SEALED_TEXT}{}:{}", self.id, STANDARD.encode(sealed))
    }

    /// Opens what [`MasterKey::seal_text`] sealed for `owner` with this key.
    pub fn open_text(&self, owner: &str, stored: &str) -> Result<String, OpenError> {
        let rest = stored.strip_prefix(SEALED_TEXT).ok_or(OpenError)?;
        let (key_id, encoded) = rest.split_once(':').ok_or(OpenError)?;
        if key_id != self.id {
            return Err(OpenError);
        }
        let bytes = STANDARD.decode(encoded).map_err(|_| OpenError)?;
        let plain = open(&self.key, &bytes, &text_aad(owner))?;
        String::from_utf8(plain).map_err(|_| OpenError)
    }

    /// Seals anew under this key what `old` sealed (a master key rotation).
    pub fn reseal_text(
        &self,
        old: &MasterKey,
        owner: &str,
        stored: &str,
    ) -> Result<String, OpenError> {
        let value = Zeroizing::new(old.open_text(owner, stored)?);
        Ok(self.seal_text(owner, &value))
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        // Best effort: the key schedule inside `key` is ring's to manage.
        self.bytes.zeroize();
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// A data key as stored: wrapped by the master key named by `master_key_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub key_id: String,
    pub wrapped: Vec<u8>,
    pub master_key_id: String,
}

/// An environment's data key, unwrapped (kept in memory only).
pub struct DataKey {
    env_id: String,
    key_id: String,
    key: LessSafeKey,
    /// The key `hash` masks are computed with (docs/policies.md: keyed per environment),
    /// derived from the data key so every node has it and master key rotations keep it.
    mask_key: String,
}

/// HMAC-SHA256 of a fixed label under the data key's bytes, as hex.
fn mask_key(bytes: &[u8; KEY_LEN]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(bytes).expect("HMAC takes any key length");
    mac.update(b"enclave mask hash v1");
    hex_lower(&mac.finalize().into_bytes())
}

impl DataKey {
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn env_id(&self) -> &str {
        &self.env_id
    }

    /// The environment's key for `hash` masks (hex).
    pub fn mask_hash_key(&self) -> &str {
        &self.mask_key
    }

    /// Seals `value` as version `version` of secret `secret_id`.
    pub fn seal(&self, secret_id: &str, version: i64, value: &str) -> Vec<u8> {
        seal(
            &self.key,
            value.as_bytes(),
            &self.value_aad(secret_id, version),
        )
    }

    /// Opens what [`DataKey::seal`] sealed for the same secret and version.
    pub fn open(&self, secret_id: &str, version: i64, sealed: &[u8]) -> Result<String, OpenError> {
        let bytes = open(&self.key, sealed, &self.value_aad(secret_id, version))?;
        String::from_utf8(bytes).map_err(|_| OpenError)
    }

    fn value_aad(&self, secret_id: &str, version: i64) -> Vec<u8> {
        format!(
            "enclave secret v1\0{}\0{}\0{secret_id}\0{version}",
            self.env_id, self.key_id
        )
        .into_bytes()
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({}, {})", self.env_id, self.key_id)
    }
}

fn wrap_aad(env_id: &str, key_id: &str) -> Vec<u8> {
    format!("enclave data key v1\0{env_id}\0{key_id}").into_bytes()
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn sealed_texts_open_only_for_their_owner_and_key() {
        let k = MasterKey::generate();
        let stored = k.seal_text("wh_1", "whsec_abc");
        assert!(is_sealed_text(&stored));
        assert!(!stored.contains("whsec_abc"));
        assert_eq!(sealed_text_key_id(&stored), Some(k.id()));
        assert_eq!(k.open_text("wh_1", &stored).unwrap(), "whsec_abc");
        // Copied to another webhook, or opened with another key: refused.
        assert!(k.open_text("wh_2", &stored).is_err());
        let other = MasterKey::generate();
        assert!(other.open_text("wh_1", &stored).is_err());
        // Rotation: sealed anew under the new key, the old one no longer opens it.
        let moved = other.reseal_text(&k, "wh_1", &stored).unwrap();
        assert_eq!(other.open_text("wh_1", &moved).unwrap(), "whsec_abc");
        assert!(k.open_text("wh_1", &moved).is_err());
        assert!(!is_sealed_text("whsec_plain"));
        assert!(k.open_text("wh_1", "whsec_plain").is_err());
    }
    use super::*;

    #[test]
    fn values_open_only_where_they_were_sealed() {
        let master = MasterKey::generate();
        let (dk, wrapped) = master.new_data_key("env_a");
        assert_eq!(wrapped.master_key_id, master.id());
        let sealed = dk.seal("sec_1", 1, "hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(dk.open("sec_1", 1, &sealed).unwrap(), "hunter2");
        // Another secret, another version, another environment: refused.
        assert_eq!(dk.open("sec_2", 1, &sealed), Err(OpenError));
        assert_eq!(dk.open("sec_1", 2, &sealed), Err(OpenError));
        let (other, _) = master.new_data_key("env_b");
        assert_eq!(other.open("sec_1", 1, &sealed), Err(OpenError));
        // Altered bytes: refused.
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(dk.open("sec_1", 1, &bad), Err(OpenError));
        assert_eq!(dk.open("sec_1", 1, &sealed[..10]), Err(OpenError));
        // A fresh nonce every time.
        assert_ne!(dk.seal("sec_1", 1, "hunter2"), sealed);
    }

    #[test]
    fn data_keys_unwrap_only_under_their_master_key_and_ids() {
        let master = MasterKey::generate();
        let (dk, w) = master.new_data_key("env_a");
        let sealed = dk.seal("sec_1", 3, "v");
        let again = master.unwrap("env_a", &w.key_id, &w.wrapped).unwrap();
        assert_eq!(again.open("sec_1", 3, &sealed).unwrap(), "v");
        assert!(master.unwrap("env_b", &w.key_id, &w.wrapped).is_err());
        let other = MasterKey::generate();
        assert_ne!(other.id(), master.id());
        assert!(other.unwrap("env_a", &w.key_id, &w.wrapped).is_err());
        // Re-wrapping keeps the data key: old values still open.
        let rewrapped = other
            .rewrap(&master, "env_a", &w.key_id, &w.wrapped)
            .unwrap();
        let moved = other.unwrap("env_a", &w.key_id, &rewrapped).unwrap();
        assert_eq!(moved.open("sec_1", 3, &sealed).unwrap(), "v");
        assert!(master.unwrap("env_a", &w.key_id, &rewrapped).is_err());
    }

    #[test]
    fn master_key_text_forms() {
        let k = MasterKey::generate();
        let text = k.encode();
        assert_eq!(text.len(), 44);
        assert_eq!(
            MasterKey::parse(&format!("  {text}\n")).unwrap().id(),
            k.id()
        );
        assert_eq!(
            MasterKey::parse(text.trim_end_matches('=')).unwrap().id(),
            k.id()
        );
        let hex = hex_lower(&k.bytes);
        assert_eq!(MasterKey::parse(&hex).unwrap().id(), k.id());
        assert!(MasterKey::parse("").is_err());
        assert!(MasterKey::parse("c2hvcnQ=").is_err());
        assert!(MasterKey::parse("not a key at all!").is_err());
        assert!(!format!("{k:?}").contains(&text));
        assert!(k.id().starts_with("mk_") && k.id().len() == 19);
    }
}
