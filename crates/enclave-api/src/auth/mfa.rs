//! The second factor: TOTP codes (RFC 6238 with what every authenticator app reads from an
//! `otpauth://` URI — SHA-1, 6 digits, 30-second steps, one step of clock drift either way)
//! and one-time recovery codes for a lost device.
//!
//! The TOTP secret is sealed with the master key before it is stored; recovery codes are
//! stored as SHA-256 hashes. Which step a code was accepted for is remembered by the store,
//! so each code works once.

use enclave_core::id::{OrgId, UserId};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, Builder, Secret};

/// The name authenticator apps show next to the account.
pub const ISSUER: &str = "Enclave";
/// Recovery codes issued at a time.
pub const RECOVERY_CODES: usize = 10;
/// How long a sign-in may wait between the password and the second factor.
pub const CHALLENGE_SECONDS: i64 = 300;
const SECRET_BYTES: usize = 20;
const STEP_SECONDS: u64 = 30;
/// Base32 without the easily confused `0 1 8 9`, lower case: what recovery codes are made of.
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A new random TOTP secret, base32 (as apps take it).
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator works");
    Secret::from(bytes.to_vec()).to_base32()
}

/// The `otpauth://` URI an authenticator app scans (as a QR code) or takes pasted.
pub fn otpauth_uri(email: &str, secret: &str) -> String {
    let label: String = form_urlencoded::byte_serialize(format!("{ISSUER}:{email}").as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!(
        "otpauth://totp/{label}?secret={secret}&issuer={ISSUER}&algorithm=SHA1&digits=6&period={STEP_SECONDS}"
    )
}

/// The step `code` is valid for at `unix_seconds` (±1 step), or `None`. Codes are 6 digits;
/// spaces in them (as apps display `123 456`) are ignored.
pub fn check(secret: &str, code: &str, unix_seconds: u64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let secret = Secret::try_from_base32(secret).ok()?;
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret)
        .build()
        .ok()?;
    totp.check(&code, unix_seconds)
        .and_then(|step| i64::try_from(step).ok())
}

/// The code `secret` gives at `unix_seconds` (for tests and the CLI's own checks).
pub fn code_at(secret: &str, unix_seconds: u64) -> Option<String> {
    let secret = Secret::try_from_base32(secret).ok()?;
    let totp = Builder::new()
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret)
        .build()
        .ok()?;
    Some(totp.generate(unix_seconds).to_string())
}

/// Whether `code` has a TOTP code's shape (else it is taken for a recovery code).
pub fn is_totp_code(code: &str) -> bool {
    let digits: Vec<char> = code.chars().filter(|c| !c.is_whitespace()).collect();
    digits.len() == 6 && digits.iter().all(char::is_ascii_digit)
}

/// Fresh recovery codes, `xxxxx-xxxxx` (50 random bits each).
pub fn recovery_codes() -> Vec<String> {
    let rng = SystemRandom::new();
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 10];
            rng.fill(&mut bytes)
                .expect("the system random generator works");
            let chars: String = bytes
                .iter()
                .map(|b| RECOVERY_ALPHABET[(*b & 31) as usize] as char)
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

/// A recovery code as typed, in the form its hash was made from: lower case, no spaces, the
/// dash where it belongs.
pub fn normalize_recovery_code(code: &str) -> String {
    let chars: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if chars.len() == 10 {
        format!("{}-{}", &chars[..5], &chars[5..])
    } else {
        chars
    }
}

/// What a password sign-in of an account with a second factor gets instead of tokens: a
/// short-lived signed token naming the user and organization, exchanged with a code at
/// `POST /v1/auth/login/mfa`. Its audience keeps it from ever passing for an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChallengeClaims {
    pub sub: UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<OrgId>,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: String,
}

pub const CHALLENGE_AUDIENCE: &str = "enclave:mfa";

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, truncated to 6 digits.
    #[test]
    fn codes_follow_rfc_6238() {
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        assert_eq!(code_at(&secret, 59).unwrap(), "287082");
        assert_eq!(code_at(&secret, 1_111_111_109).unwrap(), "081804");
        assert_eq!(code_at(&secret, 2_000_000_000).unwrap(), "279037");
        // The code of a step, the one before and the one after are accepted; none further.
        let now = 1_111_111_109;
        assert_eq!(check(&secret, "081804", now), Some(37_037_036));
        assert_eq!(check(&secret, "081 804", now + 30), Some(37_037_036));
        assert_eq!(check(&secret, "081804", now - 30), Some(37_037_036));
        assert_eq!(check(&secret, "081804", now + 90), None);
        assert_eq!(check(&secret, "000000", now), None);
        assert_eq!(check(&secret, "+81804", now), None);
        assert_eq!(check("not base32!", "081804", now), None);
    }

    #[test]
    fn secrets_and_recovery_codes_are_fresh_and_well_formed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(Secret::try_from_base32(&a).unwrap().as_bytes().len(), 20);
        let uri = otpauth_uri("ada+ops@example.com", &a);
        assert!(uri.starts_with("otpauth://totp/Enclave%3Aada%2Bops%40example.com?secret="));
        assert!(uri.contains("&issuer=Enclave&algorithm=SHA1&digits=6&period=30"));
        let codes = recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        for c in &codes {
            assert_eq!(c.len(), 11);
            assert_eq!(
                &normalize_recovery_code(&c.to_uppercase().replace('-', " ")),
                c
            );
            assert!(!is_totp_code(c));
        }
        assert!(is_totp_code("123 456"));
        assert!(!is_totp_code("12345"));
    }
}
