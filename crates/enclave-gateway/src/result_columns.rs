//! Naming a statement's result columns: the outermost query's unaliased select items — from the
//! first branch of a set operation, which names a union's columns — get the alias `name` gives
//! them. Rewrites that change how the engine would name a column (PostgreSQL's names on DuckDB,
//! a session function replaced by its value) keep the name a PostgreSQL client expects.

use sqlparser::ast::{Expr, Ident, SelectItem, SetExpr, Statement};

/// Aliases each unaliased result column of `statement` (a query) for which `name` has a name.
pub fn alias(statement: &mut Statement, name: &dyn Fn(&Expr) -> Option<String>) {
    if let Statement::Query(q) = statement {
        alias_body(&mut q.body, name);
    }
}

fn alias_body(body: &mut SetExpr, name: &dyn Fn(&Expr) -> Option<String>) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) = item {
                    if let Some(alias) = name(expr) {
                        *item = SelectItem::ExprWithAlias {
                            expr: expr.clone(),
                            alias: Ident::with_quote('"', alias),
                        };
                    }
                }
            }
        }
        SetExpr::SetOperation { left, .. } => alias_body(left, name),
        SetExpr::Query(q) => alias_body(&mut q.body, name),
        _ => {}
    }
}
