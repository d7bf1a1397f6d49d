//! Building pieces of the rewritten statement: quoting, nesting, conjunctions, qualified
//! filters, and parsing the SQL the rewrite itself produces.

use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions_mut, Expr, Ident, Statement};
use sqlparser::parser::Parser;

use crate::error::{Error, Result};
use crate::query::analyze::{grammar, Dialect};

pub(super) fn columns_match(columns: &[String], name: &str) -> String {
    columns
        .iter()
        .find(|c| c.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(super) fn nested(e: Expr) -> Expr {
    Expr::Nested(Box::new(e))
}

pub(super) fn and(left: Option<Expr>, right: Expr) -> Expr {
    match left {
        None => right,
        Some(l) => Expr::BinaryOp {
            left: Box::new(nested(l)),
            op: sqlparser::ast::BinaryOperator::And,
            right: Box::new(right),
        },
    }
}

/// The filter with its columns qualified by the DML target (so a FROM/USING table's
/// columns of the same name cannot stand in for them).
pub(super) fn qualify(filter: &Expr, qualifier: &Ident) -> Expr {
    let mut f = filter.clone();
    let _ = visit_expressions_mut(&mut f, |e| {
        if let Expr::Identifier(i) = e {
            *e = Expr::CompoundIdentifier(vec![qualifier.clone(), i.clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
    f
}

pub(super) fn parse_expr(sql: &str, dialect: Dialect) -> Result<Expr> {
    let d = grammar(dialect);
    Parser::new(d.as_ref())
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        // Filters were validated when saved and bound by us: a failure is ours.
        .map_err(|_| Error::internal())
}

pub(super) fn parse_statement(sql: &str, dialect: Dialect) -> Result<Statement> {
    let d = grammar(dialect);
    let mut v = Parser::parse_sql(d.as_ref(), sql).map_err(|_| Error::internal())?;
    match (v.pop(), v.is_empty()) {
        (Some(s), true) => Ok(s),
        _ => Err(Error::internal()),
    }
}
