//! Field validation. Each check returns a [`crate::Error`] naming the field and the rule, so
//! the API can answer a precise 400 before anything is written.

use crate::error::{Error, Result};

/// Organization slug: `^[a-z0-9][a-z0-9-]{1,62}$`.
pub fn org_slug(field: &str, slug: &str) -> Result<()> {
    let bytes = slug.as_bytes();
    let ok = (2..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            field,
            "pattern",
            format!("{field} must match ^[a-z0-9][a-z0-9-]{{1,62}}$"),
        ))
    }
}

/// A display name: trimmed, 1..=max characters, no control characters. Returns the trimmed
/// value.
pub fn display_name(field: &str, value: &str, max: usize) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Error::validation(
            field,
            "required",
            format!("{field} must not be empty"),
        ));
    }
    if trimmed.chars().count() > max {
        return Err(Error::validation(
            field,
            "max_length",
            format!("{field} must be at most {max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Error::validation(
            field,
            "no_control_characters",
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(trimmed.to_string())
}

/// An e-mail address, normalised to lower case. Deliberately simple (RFC 5321 lengths, one
/// `@`, a dotted domain of valid labels): mail is never sent, the address is a login name.
pub fn email(field: &str, value: &str) -> Result<String> {
    let bad = || {
        Error::validation(
            field,
            "email",
            format!("{field} must be a valid e-mail address"),
        )
    };
    let value = value.trim().to_ascii_lowercase();
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = value.split_once('@').ok_or_else(bad)?;
    if local.is_empty() || local.len() > 64 || domain.contains('@') || !domain.contains('.') {
        return Err(bad());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !domain.split('.').all(label_ok) || local.starts_with('.') || local.ends_with('.') {
        return Err(bad());
    }
    Ok(value)
}

/// A few passwords that pass the length rule but every dictionary attack tries first.
const COMMON_PASSWORDS: &[&str] = &[
    "password1234",
    "123456789012",
    "qwertyuiopas",
    "passwordpassword",
    "changemechangeme",
    "letmeinletmein",
    "adminadminadmin",
    "iloveyou1234",
    "welcome12345",
    "administrator",
];

/// Password strength: 12–128 characters, at least 5 distinct characters, not a well-known
/// password, and not containing the account's e-mail name.
pub fn password(field: &str, value: &str, email: Option<&str>) -> Result<()> {
    let weak = |rule: &str, msg: &str| Err(Error::validation(field, rule, msg.to_string()));
    let len = value.chars().count();
    if len < 12 {
        return weak("min_length", "password must be at least 12 characters");
    }
    if len > 128 {
        return weak("max_length", "password must be at most 128 characters");
    }
    let mut distinct: Vec<char> = value.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 5 {
        return weak(
            "weak",
            "password must contain at least 5 different characters",
        );
    }
    let lower = value.to_lowercase();
    if COMMON_PASSWORDS.contains(&lower.as_str()) {
        return weak("weak", "password is too common");
    }
    if let Some(local) = email
        .and_then(|e| e.split('@').next())
        .filter(|l| l.len() >= 4)
    {
        if lower.contains(&local.to_lowercase()) {
            return weak("weak", "password must not contain the e-mail address");
        }
    }
    Ok(())
}

/// A free-form JSON object (organization settings): an object of at most 64 keys and 16 KiB.
pub fn settings_object(field: &str, value: &serde_json::Value) -> Result<()> {
    let Some(map) = value.as_object() else {
        return Err(Error::validation(
            field,
            "type",
            format!("{field} must be an object"),
        ));
    };
    if map.len() > 64 {
        return Err(Error::validation(
            field,
            "max_keys",
            format!("{field} may hold at most 64 keys"),
        ));
    }
    if value.to_string().len() > 16 * 1024 {
        return Err(Error::validation(
            field,
            "max_bytes",
            format!("{field} must be at most 16 KiB"),
        ));
    }
    Ok(())
}

/// An organization's `settings`: [`settings_object`], and the keys Enclave itself reads
/// typed — `mfa_required` is a boolean.
pub fn org_settings(field: &str, value: &serde_json::Value) -> Result<()> {
    settings_object(field, value)?;
    match value.get("mfa_required") {
        None | Some(serde_json::Value::Bool(_)) => Ok(()),
        Some(_) => Err(Error::validation(
            &format!("{field}.mfa_required"),
            "type",
            format!("{field}.mfa_required must be true or false"),
        )),
    }
}

/// Whether organization `settings` require a second factor of every member.
pub fn requires_mfa(settings: &serde_json::Value) -> bool {
    settings.get("mfa_required") == Some(&serde_json::Value::Bool(true))
}

/// A string map such as a member's `attributes`: at most 64 entries, keys
/// `^[a-zA-Z_][a-zA-Z0-9_.-]{0,63}$`, values at most 256 characters.
pub fn attributes(field: &str, map: &std::collections::BTreeMap<String, String>) -> Result<()> {
    if map.len() > 64 {
        return Err(Error::validation(
            field,
            "max_keys",
            format!("{field} may hold at most 64 entries"),
        ));
    }
    for (k, v) in map {
        let kb = k.as_bytes();
        let key_ok = !kb.is_empty()
            && kb.len() <= 64
            && (kb[0].is_ascii_alphabetic() || kb[0] == b'_')
            && kb
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !key_ok {
            return Err(Error::validation(
                &format!("{field}.{k}"),
                "key_pattern",
                "attribute names must match ^[a-zA-Z_][a-zA-Z0-9_.-]{0,63}$",
            ));
        }
        if v.chars().count() > 256 || v.chars().any(char::is_control) {
            return Err(Error::validation(
                &format!("{field}.{k}"),
                "value",
                "attribute values must be at most 256 characters, without control characters",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(r: Result<impl Sized>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(e) => e.details["rule"].as_str().unwrap().to_string(),
        }
    }

    #[test]
    fn org_slugs() {
        for ok in ["ab", "acme", "acme-corp", "0day", &"a".repeat(63)] {
            assert!(org_slug("slug", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "-acme",
            "Acme",
            "acme_corp",
            "acme corp",
            &"a".repeat(64),
            "ac!",
        ] {
            assert_eq!(rule(org_slug("slug", bad)), "pattern", "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            email("email", " Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        assert!(email("email", "a.b+tag@sub.example.io").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@@example.com",
            "ada@-example.com",
            "ada@example..com",
            ".ada@example.com",
        ] {
            assert_eq!(rule(email("email", bad)), "email", "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(password("password", "correct horse battery", None).is_ok());
        assert_eq!(rule(password("password", "short", None)), "min_length");
        assert_eq!(
            rule(password("password", &"x".repeat(129), None)),
            "max_length"
        );
        assert_eq!(rule(password("password", "aaaaaaaaaaaaaaaa", None)), "weak");
        assert_eq!(rule(password("password", "Password1234", None)), "weak");
        assert_eq!(
            rule(password(
                "password",
                "grace-hopper-99!",
                Some("grace@navy.mil")
            )),
            "weak"
        );
    }

    #[test]
    fn names_and_attributes() {
        assert_eq!(display_name("name", "  Acme  ", 64).unwrap(), "Acme");
        assert_eq!(rule(display_name("name", "   ", 64)), "required");
        assert_eq!(
            rule(display_name("name", &"x".repeat(65), 64)),
            "max_length"
        );
        assert_eq!(
            rule(display_name("name", "a\u{7}b", 64)),
            "no_control_characters"
        );
        let mut m = std::collections::BTreeMap::new();
        m.insert("department".to_string(), "sales".to_string());
        assert!(attributes("attributes", &m).is_ok());
        m.insert("bad key".to_string(), "x".to_string());
        assert_eq!(rule(attributes("attributes", &m)), "key_pattern");
    }

    #[test]
    fn settings() {
        assert!(settings_object("settings", &serde_json::json!({"a": 1})).is_ok());
        assert_eq!(
            rule(settings_object("settings", &serde_json::json!([1]))),
            "type"
        );
    }
}
