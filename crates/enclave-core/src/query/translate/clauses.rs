//! Query clauses: `TOP n`, `MINUS`, `QUALIFY` (which PostgreSQL lacks), `LIKE ANY`, and the
//! column names of `VALUES` in FROM (`column1`, `column2`, … as in Snowflake).

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions_mut, Expr, Ident, LimitClause, Query, Select, SelectItem, SetExpr,
    SetOperator, TableAlias, TableAliasColumnDef, TableFactor, TableWithJoins, TopQuantity,
};

use super::template::expr;
use super::types::Ty;
use super::unsupported;
use crate::error::Result;
use crate::query::Dialect;

/// Rewrites one query's own clauses (its subqueries are visited on their own).
pub(super) fn query(target: Dialect, query: &mut Query) -> Result<()> {
    minus_to_except(&mut query.body);
    if let SetExpr::Select(select) = &mut *query.body {
        if let Some(top) = select.top.take() {
            if top.percent || top.with_ties {
                return Err(unsupported("TOP … PERCENT / WITH TIES"));
            }
            let n = match top.quantity {
                Some(TopQuantity::Constant(n)) => {
                    Expr::value(sqlparser::ast::Value::Number(n.to_string(), false))
                }
                Some(TopQuantity::Expr(e)) => e,
                None => return Err(unsupported("TOP without a count")),
            };
            if query.limit_clause.is_some() || query.fetch.is_some() {
                return Err(unsupported("TOP together with LIMIT or FETCH"));
            }
            query.limit_clause = Some(LimitClause::LimitOffset {
                limit: Some(n),
                offset: None,
                limit_by: vec![],
            });
        }
        if target == Dialect::Postgres && select.qualify.is_some() {
            let inner = std::mem::replace(&mut **select, empty_select());
            **select = qualify_as_subquery(inner)?;
        }
    } else if has_top(&query.body) {
        return Err(unsupported(
            "TOP inside a set operation (put it in parentheses)",
        ));
    }
    Ok(())
}

fn minus_to_except(body: &mut SetExpr) {
    if let SetExpr::SetOperation {
        op, left, right, ..
    } = body
    {
        if *op == SetOperator::Minus {
            *op = SetOperator::Except;
        }
        minus_to_except(left);
        minus_to_except(right);
    }
}

fn has_top(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => s.top.is_some(),
        SetExpr::SetOperation { left, right, .. } => has_top(left) || has_top(right),
        _ => false,
    }
}

fn empty_select() -> Select {
    let Ok(Some(SetExpr::Select(s))) =
        sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
            .try_with_sql("SELECT 1")
            .and_then(|mut p| p.parse_query())
            .map(|q| Some(*q.body))
    else {
        unreachable!("SELECT 1 parses")
    };
    *s
}

/// `SELECT … QUALIFY cond` (PostgreSQL): the select computes `cond` as one more column, with
/// the select list's aliases replaced by what they name; an outer select keeps the rows where
/// it holds and the columns as they were named. `DISTINCT` moves out (it applies after
/// `QUALIFY`).
fn qualify_as_subquery(mut inner: Select) -> Result<Select> {
    let Some(mut condition) = inner.qualify.take() else {
        return Ok(inner);
    };
    let aliases: HashMap<String, Expr> = inner
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { expr, alias } => Some((fold(alias), expr.clone())),
            _ => None,
        })
        .collect();
    let _ = visit_expressions_mut(&mut condition, |e| {
        if let Expr::Identifier(i) = e {
            if let Some(named) = aliases.get(&fold(i)) {
                *e = Expr::Nested(Box::new(named.clone()));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    let mut outer_items = Vec::new();
    for (i, item) in inner.projection.iter_mut().enumerate() {
        let name = match item {
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => i.clone(),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) if !parts.is_empty() => {
                parts[parts.len() - 1].clone()
            }
            SelectItem::UnnamedExpr(e) => {
                let shown = default_name(e);
                let column = Ident::new(format!("enclave_c{i}"));
                *item = SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias: column.clone(),
                };
                outer_items.push(SelectItem::ExprWithAlias {
                    expr: Expr::Identifier(column),
                    alias: Ident::with_quote('"', shown),
                });
                continue;
            }
            SelectItem::ExprWithAlias { alias, .. } => alias.clone(),
            _ => {
                return Err(unsupported(
                    "QUALIFY with SELECT * on the PostgreSQL engine (list the columns)",
                ))
            }
        };
        outer_items.push(SelectItem::UnnamedExpr(Expr::Identifier(name)));
    }
    inner.projection.push(SelectItem::ExprWithAlias {
        expr: condition,
        alias: Ident::new("enclave_qualify"),
    });
    let distinct = inner.distinct.take();
    let mut outer = empty_select();
    outer.distinct = distinct;
    outer.projection = outer_items;
    outer.from = vec![TableWithJoins {
        relation: TableFactor::Derived {
            lateral: false,
            subquery: Box::new(Query {
                with: None,
                body: Box::new(SetExpr::Select(Box::new(inner))),
                order_by: None,
                limit_clause: None,
                fetch: None,
                locks: vec![],
                for_clause: None,
                settings: None,
                format_clause: None,
                pipe_operators: vec![],
            }),
            alias: Some(TableAlias {
                explicit: true,
                name: Ident::new("enclave_q"),
                columns: vec![],
                at: None,
            }),
            sample: None,
        },
        joins: vec![],
    }];
    outer.selection = Some(Expr::Identifier(Ident::new("enclave_qualify")));
    Ok(outer)
}

/// An identifier as the engines resolve it.
fn fold(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_ascii_lowercase(),
    }
}

/// The name PostgreSQL gives an unnamed select-list expression.
fn default_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => fold(i),
        Expr::CompoundIdentifier(parts) => parts.last().map(fold).unwrap_or_default(),
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(fold)
            .unwrap_or_else(|| "?column?".into()),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => default_name(expr),
        Expr::Case { .. } => "case".into(),
        _ => "?column?".into(),
    }
}

/// `x [NOT] LIKE ANY (p1, p2, …)` → `x LIKE p1 OR x LIKE p2 …` (negated: none matches).
pub(super) fn like_any(
    target: Dialect,
    operator: &str,
    negated: bool,
    value: &Expr,
    patterns: &Expr,
    escape: bool,
) -> Result<Expr> {
    if escape {
        return Err(unsupported(format!("{operator} ANY with ESCAPE")));
    }
    let patterns: Vec<Expr> = match patterns {
        Expr::Tuple(list) => list.clone(),
        Expr::Nested(one) => vec![(**one).clone()],
        other => return Err(unsupported(format!("{operator} ANY over {other}"))),
    };
    let mut args = vec![value.clone()];
    args.extend(patterns);
    let tests: Vec<String> = (1..args.len())
        .map(|i| format!("_0 {operator} _{i}"))
        .collect();
    let any = format!("({})", tests.join(" OR "));
    Ok(expr(
        target,
        &if negated { format!("(NOT {any})") } else { any },
        &args,
    ))
}

/// Derived tables as Snowflake allows them: a subquery in FROM needs no alias (PostgreSQL
/// requires one), and `FROM (VALUES …)` names its columns `column1`, `column2`, … (as
/// PostgreSQL does; DuckDB would name them `col0`, …).
pub(super) fn derived_names(target: Dialect, factor: &mut TableFactor) {
    let TableFactor::Derived {
        subquery, alias, ..
    } = factor
    else {
        return;
    };
    let width = match &*subquery.body {
        SetExpr::Values(values) => values.rows.first().map(|r| r.len()),
        _ => None,
    };
    if width.is_none() && (target == Dialect::DuckDb || alias.is_some()) {
        return;
    }
    let alias = alias.get_or_insert_with(|| TableAlias {
        explicit: true,
        name: Ident::new(if width.is_some() {
            "enclave_values"
        } else {
            "enclave_subquery"
        }),
        columns: vec![],
        at: None,
    });
    if let (Dialect::DuckDb, Some(width), true) = (target, width, alias.columns.is_empty()) {
        alias.columns = (1..=width)
            .map(|i| TableAliasColumnDef::from_name(format!("column{i}")))
            .collect();
    }
}

/// PostgreSQL types a bare `NULL` in a subquery's select list as text, so that an outer
/// `IFF(x IS NULL, 0, x)` fails (Snowflake's NULL has no type until it meets one). A derived
/// table's bare NULL columns get the type of the first typed value they meet in the outer
/// select (an arm of the same CASE or COALESCE, the other side of an operator).
pub(super) fn type_null_columns(select: &mut Select, ty: &dyn Fn(&Expr) -> Ty) {
    // (alias, column) → where the NULL is: (factor index, join index, item index).
    let mut nulls: HashMap<(String, String), (usize, Option<usize>, usize)> = HashMap::new();
    for (t, twj) in select.from.iter().enumerate() {
        let factors = std::iter::once((None, &twj.relation)).chain(
            twj.joins
                .iter()
                .enumerate()
                .map(|(j, join)| (Some(j), &join.relation)),
        );
        for (j, factor) in factors {
            let TableFactor::Derived {
                subquery,
                alias: Some(alias),
                ..
            } = factor
            else {
                continue;
            };
            let SetExpr::Select(inner) = &*subquery.body else {
                continue;
            };
            for (i, item) in inner.projection.iter().enumerate() {
                if let SelectItem::ExprWithAlias {
                    expr: Expr::Value(v),
                    alias: column,
                } = item
                {
                    if v.value == sqlparser::ast::Value::Null {
                        nulls.insert((fold(&alias.name), fold(column)), (t, j, i));
                    }
                }
            }
        }
    }
    if nulls.is_empty() {
        return;
    }
    let single_alias = {
        let aliases: std::collections::HashSet<&String> = nulls.keys().map(|(a, _)| a).collect();
        (aliases.len() == 1).then(|| (*aliases.iter().next().unwrap()).clone())
    };
    let column_of = |e: &Expr| -> Option<(String, String)> {
        match e {
            Expr::Identifier(c) => single_alias.clone().map(|a| (a, fold(c))),
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                Some((fold(&parts[0]), fold(&parts[1])))
            }
            Expr::Nested(inner) => match &**inner {
                Expr::Identifier(c) => single_alias.clone().map(|a| (a, fold(c))),
                _ => None,
            },
            _ => None,
        }
        .filter(|k| nulls.contains_key(k))
    };
    let mut found: HashMap<(String, String), Ty> = HashMap::new();
    let mut meet = |group: Vec<&Expr>| {
        let known = group.iter().map(|e| ty(e)).find(|t| *t != Ty::Unknown);
        if let Some(known) = known {
            for e in &group {
                if let Some(k) = column_of(e) {
                    found.entry(k).or_insert(known);
                }
            }
        }
    };
    let mut visit = |e: &Expr| {
        match e {
            Expr::Case {
                conditions,
                else_result,
                ..
            } => meet(
                conditions
                    .iter()
                    .map(|w| &w.result)
                    .chain(else_result.iter().map(|b| &**b))
                    .collect(),
            ),
            Expr::Function(f)
                if f.name.to_string().eq_ignore_ascii_case("coalesce")
                    || f.name.to_string().eq_ignore_ascii_case("nullif") =>
            {
                if let sqlparser::ast::FunctionArguments::List(l) = &f.args {
                    meet(
                        l.args
                            .iter()
                            .filter_map(|a| match a {
                                sqlparser::ast::FunctionArg::Unnamed(
                                    sqlparser::ast::FunctionArgExpr::Expr(x),
                                ) => Some(x),
                                _ => None,
                            })
                            .collect(),
                    )
                }
            }
            Expr::BinaryOp { left, right, .. } => meet(vec![left, right]),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    };
    for item in &select.projection {
        let _ = sqlparser::ast::visit_expressions(item, &mut visit);
    }
    if let Some(selection) = &select.selection {
        let _ = sqlparser::ast::visit_expressions(selection, &mut visit);
    }
    for (key, known) in found {
        let Some(name) = sql_type(known) else {
            continue;
        };
        let (t, j, i) = nulls[&key];
        let factor = match j {
            None => &mut select.from[t].relation,
            Some(j) => &mut select.from[t].joins[j].relation,
        };
        if let TableFactor::Derived { subquery, .. } = factor {
            if let SetExpr::Select(inner) = &mut *subquery.body {
                if let SelectItem::ExprWithAlias { expr: e, .. } = &mut inner.projection[i] {
                    *e = expr(Dialect::Postgres, &format!("CAST(NULL AS {name})"), &[]);
                }
            }
        }
    }
}

fn sql_type(ty: Ty) -> Option<&'static str> {
    Some(match ty {
        Ty::Integer => "INTEGER",
        Ty::Number => "NUMERIC",
        Ty::Text => "TEXT",
        Ty::Boolean => "BOOLEAN",
        Ty::Date => "DATE",
        Ty::Time => "TIME",
        Ty::Timestamp => "TIMESTAMP",
        Ty::TimestampTz => "TIMESTAMPTZ",
        Ty::Json => "JSONB",
        Ty::Unknown => return None,
    })
}
