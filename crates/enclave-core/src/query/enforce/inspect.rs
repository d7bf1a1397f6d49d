//! What the gateway asks about a statement before rewriting it: whether its predicates need
//! guarded columns, which names the policies are asked about, how many parameters it uses.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, Expr, Statement, TableFactor, Value, ValueWithSpan, Visit, Visitor,
};

use crate::policy::table::TableRef;
use crate::query::catalog::{split, Catalog};

/// Whether the caller's statement has predicates an engine could push into a derived table
/// and evaluate before its filter (WHERE, HAVING, QUALIFY, join conditions, LATERAL, DML).
/// Without any, the caller's expressions are computed from the derived table's output — after
/// its filter — so the guards (a CASE per column, evaluated per row) would only cost time.
pub fn needs_guard(statement: &Statement) -> bool {
    struct Predicates;
    impl Visitor for Predicates {
        type Break = ();
        fn pre_visit_select(&mut self, s: &sqlparser::ast::Select) -> ControlFlow<()> {
            let joins = s.from.iter().any(|t| !t.joins.is_empty());
            if s.selection.is_some()
                || s.having.is_some()
                || s.qualify.is_some()
                || s.prewhere.is_some()
                || !s.connect_by.is_empty()
                || joins
                || s.from.len() > 1
            {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
            match f {
                TableFactor::Derived { lateral: true, .. }
                | TableFactor::Function { lateral: true, .. } => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    !matches!(statement, Statement::Query(_) | Statement::CreateTable(_))
        || statement.visit(&mut Predicates).is_break()
}

/// The names `tables` (as a statement lists them) are matched by, through views: what the
/// gateway asks the policies about.
pub fn request_tables(catalog: Option<&Catalog>, tables: &[String]) -> Vec<TableRef> {
    match catalog {
        Some(c) => c.expand(tables),
        None => {
            let mut v: Vec<TableRef> = tables
                .iter()
                .flat_map(|t| crate::query::catalog::text_refs(&split(t)))
                .collect();
            v.sort();
            v.dedup();
            v
        }
    }
}

/// The highest `$n` a statement uses.
pub fn max_placeholder(statement: &Statement) -> usize {
    let mut max = 0;
    let _ = visit_expressions(statement, |e| {
        if let Expr::Value(ValueWithSpan {
            value: Value::Placeholder(p),
            ..
        }) = e
        {
            if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                max = max.max(n);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    max
}
