//! Expressions built from SQL text: a translation is written as the SQL the engine runs,
//! with `_0`, `_1`, … where the call's arguments go, and parsed once per thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions_mut, Expr};
use sqlparser::dialect::{DuckDbDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;

use crate::query::Dialect;

thread_local! {
    /// Parsed templates by engine and text; templates are the translator's own, a bounded set
    /// (the variadic ones are bounded by the arguments a statement may hold).
    static PARSED: RefCell<[HashMap<String, Expr>; 2]> = RefCell::new(Default::default());
}

/// Templates kept per thread at most; past it the map starts again (it holds only text the
/// translator wrote, so this bounds the variadic forms' copies).
const MAX_TEMPLATES: usize = 4096;

/// `template` with `_n` replaced by `args[n]`, as the `target` engine's grammar reads it.
///
/// Panics if a template does not parse: templates are constants of this module, covered by
/// its tests on both engines.
pub(super) fn expr(target: Dialect, template: &str, args: &[Expr]) -> Expr {
    let engine = usize::from(target == Dialect::Postgres);
    let mut parsed = PARSED.with(|cache| {
        if let Some(e) = cache.borrow()[engine].get(template) {
            return e.clone();
        }
        let parsed = match target {
            Dialect::Postgres => Parser::new(&PostgreSqlDialect {}),
            Dialect::DuckDb => Parser::new(&DuckDbDialect {}),
        }
        .try_with_sql(template)
        .and_then(|mut p| p.parse_expr())
        .unwrap_or_else(|e| panic!("translation template {template:?} does not parse: {e}"));
        let cache = &mut cache.borrow_mut()[engine];
        if cache.len() >= MAX_TEMPLATES {
            cache.clear();
        }
        cache.insert(template.to_string(), parsed.clone());
        parsed
    });
    let _ = visit_expressions_mut(&mut parsed, |e| {
        if let Expr::Identifier(ident) = e {
            if ident.quote_style.is_none() {
                if let Some(n) = slot(&ident.value) {
                    if let Some(arg) = args.get(n) {
                        *e = operand(arg.clone());
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    parsed
}

/// `_3` → 3.
fn slot(name: &str) -> Option<usize> {
    name.strip_prefix('_')
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
}

/// An argument as an operand: parenthesised unless it prints as one unit, so that the
/// template's operators apply to the whole of it.
pub(super) fn operand(e: Expr) -> Expr {
    match e {
        Expr::Identifier(_)
        | Expr::CompoundIdentifier(_)
        | Expr::Value(_)
        | Expr::Function(_)
        | Expr::Nested(_)
        | Expr::Case { .. }
        | Expr::Subquery(_)
        | Expr::TypedString(_) => e,
        Expr::Cast {
            kind: sqlparser::ast::CastKind::Cast | sqlparser::ast::CastKind::TryCast,
            ..
        } => e,
        other => Expr::Nested(Box::new(other)),
    }
}

/// The slots `_0, _1, …, _{n-1}` joined by `separator` (for the variadic forms).
pub(super) fn slots(n: usize, separator: &str) -> String {
    (0..n)
        .map(|i| format!("_{i}"))
        .collect::<Vec<_>>()
        .join(separator)
}
