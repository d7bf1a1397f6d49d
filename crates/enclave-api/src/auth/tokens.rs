//! Access tokens: EdDSA (Ed25519) JWTs, 1 hour, signed with a key generated on first start
//! and kept in the data directory (0600). The public key is served as a JWKS. Refresh tokens
//! are opaque random strings; only their SHA-256 is stored.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use enclave_core::id::{OrgId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::mfa::{ChallengeClaims, CHALLENGE_AUDIENCE, CHALLENGE_SECONDS};

pub const ACCESS_TOKEN_SECONDS: i64 = 3600;
pub const REFRESH_TOKEN_SECONDS: i64 = 7 * 24 * 3600;
pub const SESSION_MAX_SECONDS: i64 = 30 * 24 * 3600;
/// How far the clocks of a cluster's nodes may disagree: a token issued by a node whose clock
/// runs ahead is still good.
pub const CLOCK_SKEW_SECONDS: i64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<OrgId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub jti: String,
    /// The session this token belongs to; logout or refresh-token reuse revokes it.
    pub sid: String,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    challenge_validation: Validation,
    kid: String,
    public_x: String,
    issuer: String,
}

impl TokenKeys {
    pub fn load_or_create(path: &Path, issuer: &str) -> anyhow::Result<Self> {
        let pkcs8 = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key_file(path)?,
            Err(e) => anyhow::bail!("cannot read JWT signing key {}: {e}", path.display()),
        };
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 key", path.display()))?;
        let public = pair.public_key().as_ref().to_vec();
        let kid = hex::encode(&Sha256::digest(&public)[..8]);
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = CLOCK_SKEW_SECONDS as u64;
        let mut challenge_validation = validation.clone();
        challenge_validation.set_audience(&[CHALLENGE_AUDIENCE]);
        challenge_validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        Ok(TokenKeys {
            encoding: EncodingKey::from_ed_der(&pkcs8),
            decoding: DecodingKey::from_ed_der(&public),
            validation,
            challenge_validation,
            kid,
            public_x: URL_SAFE_NO_PAD.encode(&public),
            issuer: issuer.to_string(),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("Ed25519 signing cannot fail")
    }

    /// The claims of a valid, unexpired token of ours; `None` for anything else — also a
    /// token issued in the future (beyond the clock skew) or living longer than an access
    /// token does, which only a leaked signing key could have made.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()?
            .claims;
        let now = enclave_core::clock::now().timestamp();
        let lifetime = claims.exp - claims.iat;
        let plausible = claims.iat <= now + CLOCK_SKEW_SECONDS
            && (1..=ACCESS_TOKEN_SECONDS).contains(&lifetime);
        plausible.then_some(claims)
    }

    /// A signed second-factor challenge (see [`ChallengeClaims`]).
    pub fn sign_challenge(&self, claims: &ChallengeClaims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("Ed25519 signing cannot fail")
    }

    /// The claims of a genuine, unexpired challenge of ours; never an access token's.
    pub fn verify_challenge(&self, token: &str) -> Option<ChallengeClaims> {
        let claims = jsonwebtoken::decode::<ChallengeClaims>(
            token,
            &self.decoding,
            &self.challenge_validation,
        )
        .ok()?
        .claims;
        let lifetime = claims.exp - claims.iat;
        let now = enclave_core::clock::now().timestamp();
        (claims.iat <= now + CLOCK_SKEW_SECONDS && (1..=CHALLENGE_SECONDS).contains(&lifetime))
            .then_some(claims)
    }

    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                      "kid": self.kid, "x": self.public_x}]
        })
    }
}

fn create_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_private(path, doc.as_ref())?;
    tracing::info!(path = %path.display(), "created JWT signing key");
    Ok(doc.as_ref().to_vec())
}

/// Writes a file only its owner can read (0600), refusing to overwrite one.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// A random opaque token: `prefix` + 32 random bytes, base64url.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("system randomness");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// How a refresh token is stored: its SHA-256 (the token has 256 random bits, so a fast hash
/// is enough — unlike passwords).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_persist() {
        let dir = std::env::temp_dir().join(format!("enclave-keys-{}", ulid::Ulid::new()));
        let path = dir.join("k.pk8");
        let keys = TokenKeys::load_or_create(&path, "enclave").unwrap();
        let claims = Claims {
            sub: "usr_1".into(),
            org_id: None,
            role: None,
            iat: enclave_core::clock::now().timestamp(),
            exp: enclave_core::clock::now().timestamp() + 60,
            iss: "enclave".into(),
            jti: "j".into(),
            sid: "s".into(),
        };
        let token = keys.sign(&claims);
        assert_eq!(keys.verify(&token).unwrap().sub, "usr_1");
        assert!(keys.verify(&format!("{token}x")).is_none());
        // Reloading uses the same key; a token of another issuer is refused.
        let again = TokenKeys::load_or_create(&path, "enclave").unwrap();
        assert!(again.verify(&token).is_some());
        let other = TokenKeys::load_or_create(&path, "someone-else").unwrap();
        assert!(other.verify(&token).is_none());
        let expired = Claims {
            iat: 0,
            exp: 1000,
            ..claims.clone()
        };
        assert!(keys.verify(&keys.sign(&expired)).is_none());
        // Signed with our key, but issued in the future or living ten years: refused.
        let now = enclave_core::clock::now().timestamp();
        let future = Claims {
            iat: now + 3600,
            exp: now + 3660,
            ..claims.clone()
        };
        assert!(keys.verify(&keys.sign(&future)).is_none());
        let decade = Claims {
            iat: now,
            exp: now + 10 * 365 * 86_400,
            ..claims.clone()
        };
        assert!(keys.verify(&keys.sign(&decade)).is_none());
        // Within the skew, and a full hour: accepted.
        let skewed = Claims {
            iat: now + 20,
            exp: now + 20 + ACCESS_TOKEN_SECONDS,
            ..claims
        };
        assert!(keys.verify(&keys.sign(&skewed)).is_some());
        // A second-factor challenge is no access token, and an access token no challenge.
        let challenge = ChallengeClaims {
            sub: "usr_1".into(),
            org_id: None,
            iat: now,
            exp: now + CHALLENGE_SECONDS,
            iss: "enclave".into(),
            aud: CHALLENGE_AUDIENCE.into(),
            jti: "c".into(),
        };
        let signed = keys.sign_challenge(&challenge);
        assert_eq!(keys.verify_challenge(&signed).unwrap().sub, "usr_1");
        assert!(keys.verify(&signed).is_none());
        assert!(keys.verify_challenge(&keys.sign(&skewed)).is_none());
        let long = ChallengeClaims {
            exp: now + 3600,
            ..challenge
        };
        assert!(keys.verify_challenge(&keys.sign_challenge(&long)).is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
