//! The text the query audit keeps: the statement with every literal replaced by `?`, so the
//! trail shows what ran without the values it carried (names, numbers, secrets in literals).

use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions_mut, Expr, Statement, Value};

/// `statement` re-serialised with literals replaced; `NULL`, booleans and parameter
/// placeholders stay (they carry no data).
pub fn redact(statement: &Statement) -> String {
    let mut copy = statement.clone();
    let _ = visit_expressions_mut(&mut copy, |expr| {
        if let Expr::Value(v) = expr {
            match v.value {
                Value::Null | Value::Boolean(_) | Value::Placeholder(_) => {}
                _ => v.value = Value::Placeholder("?".into()),
            }
        }
        ControlFlow::<()>::Continue(())
    });
    copy.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{parse, Dialect};

    fn redacted(sql: &str) -> String {
        redact(&parse(sql, Dialect::Postgres).unwrap()[0].statement)
    }

    #[test]
    fn literals_are_replaced() {
        assert_eq!(
            redacted("SELECT * FROM users WHERE email = 'a@b.c' AND age > 30 AND ok = true"),
            "SELECT * FROM users WHERE email = ? AND age > ? AND ok = true"
        );
        assert_eq!(
            redacted("INSERT INTO t (a, b) VALUES ('secret', 1.5), (NULL, $1)"),
            "INSERT INTO t (a, b) VALUES (?, ?), (NULL, $1)"
        );
        assert_eq!(
            redacted("UPDATE t SET note = E'x\\'y' WHERE id IN (1, 2)"),
            "UPDATE t SET note = ? WHERE id IN (?, ?)"
        );
    }
}
