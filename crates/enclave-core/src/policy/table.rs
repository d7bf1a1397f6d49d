//! Table and column names in policies, and which statement tables a rule's table names.
//!
//! Names compare case-insensitively (SQL folds unquoted identifiers). A rule naming a table
//! without a schema applies to that table in every schema — the safe reading for masks and
//! filters; one naming `schema.table` applies only there. A statement table given without a
//! schema is in the default schema, which `main` (DuckDB) and `public` (PostgreSQL) both name.

use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, Result};

const MAX_IDENTIFIER: usize = 63;
const DEFAULT_SCHEMAS: [&str; 2] = ["main", "public"];

fn identifier_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_IDENTIFIER
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `name` or `schema.name`, each an identifier (`^[A-Za-z_][A-Za-z0-9_]{0,62}$`); stored
/// lower-cased.
pub fn table_name(field: &str, value: &str) -> Result<String> {
    let v = value.trim();
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| identifier_ok(p)) {
        return Err(Error::validation(
            field,
            "identifier",
            format!("{field} must be `table` or `schema.table`, each matching ^[A-Za-z_][A-Za-z0-9_]{{0,62}}$"),
        ));
    }
    Ok(v.to_ascii_lowercase())
}

pub fn column_name(field: &str, value: &str) -> Result<String> {
    let v = value.trim();
    if !identifier_ok(v) {
        return Err(Error::validation(
            field,
            "identifier",
            format!("{field} must match ^[A-Za-z_][A-Za-z0-9_]{{0,62}}$"),
        ));
    }
    Ok(v.to_ascii_lowercase())
}

/// A table a statement touches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
pub struct TableRef {
    pub schema: Option<String>,
    pub name: String,
}

impl TableRef {
    pub fn parse(field: &str, value: &str) -> Result<TableRef> {
        let v = table_name(field, value)?;
        Ok(match v.split_once('.') {
            Some((schema, name)) => TableRef {
                schema: Some(schema.into()),
                name: name.into(),
            },
            None => TableRef {
                schema: None,
                name: v,
            },
        })
    }

    /// Whether this table is in schema `schema` (lower-case).
    pub fn in_schema(&self, schema: &str) -> bool {
        match &self.schema {
            Some(s) => s == schema,
            None => DEFAULT_SCHEMAS.contains(&schema),
        }
    }

    /// Whether a rule's (validated, lower-case) table name applies to this table.
    pub fn named_by(&self, rule_table: &str) -> bool {
        match rule_table.split_once('.') {
            Some((schema, name)) => name == self.name && self.in_schema(schema),
            None => rule_table == self.name,
        }
    }

    pub fn display(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_matching() {
        assert_eq!(table_name("t", " Customers ").unwrap(), "customers");
        assert_eq!(table_name("t", "CRM.Customers").unwrap(), "crm.customers");
        for bad in [
            "",
            "a.b.c",
            "1abc",
            "a b",
            "a;drop",
            "\"a\"",
            &"x".repeat(64),
        ] {
            assert!(table_name("t", bad).is_err(), "{bad}");
        }
        let plain = TableRef::parse("t", "customers").unwrap();
        let crm = TableRef::parse("t", "crm.customers").unwrap();
        assert!(plain.named_by("customers") && crm.named_by("customers"));
        assert!(crm.named_by("crm.customers") && !plain.named_by("crm.customers"));
        assert!(plain.named_by("public.customers") && plain.named_by("main.customers"));
        assert!(!plain.named_by("orders"));
        assert!(plain.in_schema("public") && !plain.in_schema("crm") && crm.in_schema("crm"));
    }
}
