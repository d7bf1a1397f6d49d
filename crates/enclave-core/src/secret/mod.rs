//! Secrets and configuration values of an environment (docs/secrets.md): the field rules,
//! the resource as the API shows it, request bodies, and the plans of import, promotion and
//! diff. Values are compared here in the clear — the caller decrypts — and never leave in an
//! error message.

pub mod crypto;
pub mod dotenv;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::diff::{DiffStatus, NamedDiff};
use crate::error::{Error, Result};
use crate::id::EnvId;
use crate::promotion::{Change, ChangeAction};

pub const MAX_KEY_CHARS: usize = 256;
/// 64 KiB of UTF-8.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_COMMENT_CHARS: usize = 1024;
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 64;
/// Secrets in one batch create.
pub const MAX_BATCH: usize = 1_000;
/// Entries in one import.
pub const MAX_IMPORT: usize = 10_000;
/// Keys in an environment's `required_keys`.
pub const MAX_REQUIRED_KEYS: usize = 200;

/// `^[A-Za-z_][A-Za-z0-9_.-]{0,255}$`, case-sensitive.
pub fn validate_key(field: &str, key: &str) -> Result<()> {
    let b = key.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_KEY_CHARS
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            field,
            "pattern",
            format!("{field} must match ^[A-Za-z_][A-Za-z0-9_.-]{{0,255}}$"),
        ))
    }
}

/// UTF-8 (JSON strings always are), at most 64 KiB, and no NUL character: a value must be
/// able to become an environment variable (`enclave run`). The message never quotes it.
pub fn validate_value(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::validation(
            field,
            "max_bytes",
            format!("{field} must be at most {MAX_VALUE_BYTES} bytes of UTF-8"),
        ));
    }
    if value.contains('\0') {
        return Err(Error::validation(
            field,
            "no_nul",
            format!("{field} must not contain NUL characters (they cannot reach an environment variable)"),
        ));
    }
    Ok(())
}

/// At most 1 024 characters; line breaks and tabs allowed, other control characters not.
pub fn validate_comment(field: &str, comment: &str) -> Result<String> {
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(Error::validation(
            field,
            "max_length",
            format!("{field} must be at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    if comment
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(Error::validation(
            field,
            "no_control_characters",
            format!("{field} must not contain control characters other than line breaks and tabs"),
        ));
    }
    Ok(comment.trim().to_string())
}

/// At most 20 distinct tags, each `^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$`; kept sorted.
pub fn validate_tags(field: &str, tags: &[String]) -> Result<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(Error::validation(
            field,
            "max_items",
            format!("{field} may hold at most {MAX_TAGS} tags"),
        ));
    }
    let mut set = BTreeSet::new();
    for (i, tag) in tags.iter().enumerate() {
        let b = tag.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_TAG_CHARS
            && b[0].is_ascii_alphanumeric()
            && b.iter().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'/' | b'-')
            });
        if !ok {
            return Err(Error::validation(
                &format!("{field}[{i}]"),
                "pattern",
                format!("{field}[{i}] must match ^[A-Za-z0-9][A-Za-z0-9_.:/-]{{0,63}}$"),
            ));
        }
        if !set.insert(tag.clone()) {
            return Err(Error::validation(
                &format!("{field}[{i}]"),
                "unique",
                format!("{field}[{i}] repeats the tag `{tag}`"),
            ));
        }
    }
    Ok(set.into_iter().collect())
}

/// An environment's `required_keys`: at most 200 distinct valid keys, kept sorted.
pub fn validate_required_keys(field: &str, keys: &[String]) -> Result<Vec<String>> {
    if keys.len() > MAX_REQUIRED_KEYS {
        return Err(Error::validation(
            field,
            "max_items",
            format!("{field} may hold at most {MAX_REQUIRED_KEYS} keys"),
        ));
    }
    let mut set = BTreeSet::new();
    for (i, key) in keys.iter().enumerate() {
        let f = format!("{field}[{i}]");
        validate_key(&f, key)?;
        if !set.insert(key.clone()) {
            return Err(Error::validation(
                &f,
                "unique",
                format!("{f} repeats the key `{key}`"),
            ));
        }
    }
    Ok(set.into_iter().collect())
}

/// The required keys an environment does not hold, in order.
pub fn missing_keys<'a>(required: &'a [String], present: &BTreeSet<&str>) -> Vec<&'a str> {
    required
        .iter()
        .map(String::as_str)
        .filter(|k| !present.contains(k))
        .collect()
}

/// A secret as the API shows it. `value` only when revealed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Secret {
    /// `sec_…`.
    pub secret_id: String,
    pub env_id: EnvId,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub comment: String,
    pub tags: Vec<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The user or API key that saved the current version.
    pub updated_by: String,
}

/// One saved version of a secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SecretVersion {
    pub version: i64,
    pub value: String,
    pub comment: String,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// True for the secret's current version.
    pub current: bool,
}

/// What a secret holds, validated: what a version saves and promotion compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub value: String,
    pub comment: String,
    pub tags: Vec<String>,
}

/// A new secret, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContent {
    pub key: String,
    pub content: Content,
}

/// `{key, value, comment?, tags?}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretInput {
    /// `^[A-Za-z_][A-Za-z0-9_.-]{0,255}$`, unique in the environment (case-sensitive).
    pub key: String,
    /// UTF-8, at most 64 KiB.
    pub value: String,
    pub comment: Option<String>,
    pub tags: Option<Vec<String>>,
}

impl SecretInput {
    pub fn validate(self) -> Result<NewContent> {
        validate_key("key", &self.key)?;
        validate_value("value", &self.value)?;
        Ok(NewContent {
            key: self.key,
            content: Content {
                value: self.value,
                comment: validate_comment("comment", self.comment.as_deref().unwrap_or(""))?,
                tags: validate_tags("tags", self.tags.as_deref().unwrap_or(&[]))?,
            },
        })
    }
}

/// `POST …/secrets`: one secret (`{key, value, comment?, tags?}`) or a batch
/// (`{secrets: [...]}`), all or nothing.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSecrets {
    pub key: Option<String>,
    pub value: Option<String>,
    pub comment: Option<String>,
    pub tags: Option<Vec<String>>,
    /// A batch of 1–1 000 secrets instead of one.
    pub secrets: Option<Vec<SecretInput>>,
}

impl CreateSecrets {
    /// The secrets to create, validated (batch errors name `secrets[i].field`), and whether
    /// the request was a batch.
    pub fn validate(self) -> Result<(Vec<NewContent>, bool)> {
        let Some(batch) = self.secrets else {
            let key = self.key.ok_or_else(|| {
                Error::validation(
                    "key",
                    "required",
                    "`key` is required (or send `secrets` for a batch)",
                )
            })?;
            let value = self
                .value
                .ok_or_else(|| Error::validation("value", "required", "`value` is required"))?;
            let one = SecretInput {
                key,
                value,
                comment: self.comment,
                tags: self.tags,
            };
            return Ok((vec![one.validate()?], false));
        };
        if let Some(field) = [
            ("key", self.key.is_some()),
            ("value", self.value.is_some()),
            ("comment", self.comment.is_some()),
            ("tags", self.tags.is_some()),
        ]
        .iter()
        .find_map(|(f, present)| present.then_some(*f))
        {
            return Err(Error::validation(
                field,
                "exclusive",
                format!("`{field}` cannot be sent beside `secrets`: send one secret or a batch"),
            ));
        }
        if batch.is_empty() || batch.len() > MAX_BATCH {
            return Err(Error::validation(
                "secrets",
                if batch.is_empty() {
                    "non_empty"
                } else {
                    "max_items"
                },
                format!("secrets must hold 1 to {MAX_BATCH} secrets"),
            ));
        }
        let mut seen = BTreeMap::new();
        let mut out = Vec::with_capacity(batch.len());
        for (i, input) in batch.into_iter().enumerate() {
            let parent = format!("secrets[{i}]");
            let new = input.validate().map_err(|e| e.within(&parent))?;
            if let Some(first) = seen.insert(new.key.clone(), i) {
                return Err(Error::validation(
                    &format!("{parent}.key"),
                    "unique",
                    format!("{parent}.key repeats secrets[{first}].key `{}`", new.key),
                ));
            }
            out.push(new);
        }
        Ok((out, true))
    }
}

/// `PATCH …/secrets/{key}`: absent fields unchanged.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSecret {
    pub value: Option<String>,
    pub comment: Option<String>,
    pub tags: Option<Vec<String>>,
}

impl PatchSecret {
    pub fn apply(self, current: &Content) -> Result<Content> {
        if self.value.is_none() && self.comment.is_none() && self.tags.is_none() {
            return Err(Error::validation(
                "body",
                "non_empty",
                "send at least one of value, comment, tags",
            ));
        }
        if let Some(v) = &self.value {
            validate_value("value", v)?;
        }
        Ok(Content {
            value: self.value.unwrap_or_else(|| current.value.clone()),
            comment: match &self.comment {
                Some(c) => validate_comment("comment", c)?,
                None => current.comment.clone(),
            },
            tags: match &self.tags {
                Some(t) => validate_tags("tags", t)?,
                None => current.tags.clone(),
            },
        })
    }
}

/// Reads an import body: a flat JSON object (`{"KEY": "value"}`; numbers and booleans are
/// taken as their text) when `json`, else `.env` text. At most 10 000 entries.
pub fn parse_import(body: &[u8], json: bool) -> Result<Vec<(String, String)>> {
    let entries: Vec<(String, String)> = if json {
        let map: serde_json::Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
            Error::validation(
                "body",
                "json",
                format!(
                    "the body must be a JSON object of KEY: value (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        map.into_iter()
            .map(|(key, v)| {
                let field = format!("body.{key}");
                validate_key(&field, &key)?;
                let value = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(Error::validation(
                            &field,
                            "type",
                            format!("{field} must be a string (or a number or boolean)"),
                        ))
                    }
                };
                validate_value(&field, &value)?;
                Ok((key, value))
            })
            .collect::<Result<_>>()?
    } else {
        let text = std::str::from_utf8(body)
            .map_err(|_| Error::validation("body", "utf8", "the body must be UTF-8 text"))?;
        dotenv::parse(text)?
            .into_iter()
            .map(|e| {
                validate_value(&format!("body.{}", e.key), &e.value).map_err(|err| Error {
                    message: format!("line {}: {}", e.line, err.message),
                    ..err
                })?;
                Ok((e.key, e.value))
            })
            .collect::<Result<_>>()?
    };
    if entries.len() > MAX_IMPORT {
        return Err(Error::validation(
            "body",
            "max_items",
            format!("an import holds at most {MAX_IMPORT} keys"),
        ));
    }
    Ok(entries)
}

/// What an import does, by key. `skipped`: present with another value, and `overwrite` was
/// not asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ImportOutcome {
    pub dry_run: bool,
    pub overwrite: bool,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub skipped: Vec<String>,
}

/// Plans an import against the environment's current values (`key → value`).
pub fn plan_import(
    current: &BTreeMap<String, String>,
    incoming: &[(String, String)],
    overwrite: bool,
) -> ImportOutcome {
    let mut out = ImportOutcome {
        overwrite,
        ..Default::default()
    };
    for (key, value) in incoming {
        match current.get(key) {
            None => out.created.push(key.clone()),
            Some(v) if same_value(v, value) => out.unchanged.push(key.clone()),
            Some(_) if overwrite => out.updated.push(key.clone()),
            Some(_) => out.skipped.push(key.clone()),
        }
    }
    out
}

/// Compares two values through their digests, so the time taken says nothing about where
/// they first differ.
pub fn same_value(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// Promotion of secrets: keys missing in the target are created, keys whose value differs
/// are updated (value, comment and tags from the source); equal ones and keys only in the
/// target are left alone. Returns the change list and, per change, the key.
pub fn plan_promotion(
    source: &BTreeMap<String, Content>,
    target: &BTreeMap<String, Content>,
) -> Vec<Change> {
    source
        .iter()
        .filter_map(|(key, content)| {
            let action = match target.get(key) {
                None => ChangeAction::Created,
                Some(t) if !same_value(&t.value, &content.value) => ChangeAction::Updated,
                Some(_) => return None,
            };
            Some(Change {
                kind: "secret".into(),
                name: key.clone(),
                action,
            })
        })
        .collect()
}

/// Keys of two environments compared: equal or different values, or missing on one side.
/// Never the values.
pub fn diff(this: &BTreeMap<String, String>, against: &BTreeMap<String, String>) -> Vec<NamedDiff> {
    let keys: BTreeSet<&String> = this.keys().chain(against.keys()).collect();
    keys.into_iter()
        .map(|key| NamedDiff {
            name: key.clone(),
            status: match (this.get(key), against.get(key)) {
                (Some(a), Some(b)) if same_value(a, b) => DiffStatus::Equal,
                (Some(_), Some(_)) => DiffStatus::Different,
                (Some(_), None) => DiffStatus::MissingThere,
                _ => DiffStatus::MissingHere,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests;
