//! What a statement costs in credits (stage 5, estimate, and stage 11, meter; docs/billing.md):
//!
//! `1.0 + 0.5 × (tables − 1) + 2.0 if it scans a whole table + 1.0 if it selects * + 1.0 per
//! started 10 000 rows beyond the first 10 000`.
//!
//! - *tables*: the distinct tables and views the statement names (through joins, subqueries,
//!   CTEs and set operations; a CTE's own name is not a table). A statement naming none
//!   counts as one.
//! - *scans a whole table*: some table read by a `SELECT` (or by an `UPDATE`/`DELETE`) is not
//!   bounded by a selective predicate of that scope's `WHERE` or `JOIN … ON`. A predicate bounds
//!   a table when it compares one of the table's columns with a value that does not depend on
//!   any row (a literal, a parameter, an expression of those): `=`, `<`, `<=`, `>`, `>=`,
//!   `BETWEEN`, `IN (list)`, `IN (subquery)`, `LIKE 'prefix%'`; an equality with a column of
//!   a table already bounded bounds the other table too (a join on a key). `AND` bounds what
//!   either side bounds, `OR` what both sides bound, `NOT` nothing. A column names its table by
//!   qualifier (`o.id`, `orders.id`) — or without one when the scope reads one table only.
//!   `INSERT … VALUES`, `COPY`, DDL and `EXPLAIN` scan nothing; `MERGE` scans its target.
//! - *selects \**: a `*` or `t.*` in any select list (`COUNT(*)` is not one).
//! - *rows*: what the statement returned (a read, `… RETURNING`) or changed (a write).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FromTable, FunctionArguments, GroupByExpr, JoinConstraint, JoinOperator, LimitClause,
    Query, SelectItem, SetExpr, Statement, TableFactor, TableWithJoins, UpdateTableFromKind, Value,
    Visit, Visitor,
};

use crate::billing::Credits;
use crate::query::analyze::{ident, object_name};
use crate::query::{Analyzed, Kind};

/// Rows beyond which each started block costs a credit, and the block's size.
const FREE_ROWS: u64 = 10_000;
const ROW_BLOCK: u64 = 10_000;

/// What the formula needs to know of a statement, found once when it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    /// Session statements (`SET`, `SHOW`, transaction control) cost nothing.
    pub free: bool,
    pub tables: usize,
    /// The first table found read without a selective predicate.
    pub full_scan: Option<String>,
    pub selects_star: bool,
    /// How many rows it is expected to return or change, before it runs.
    pub rows: RowEstimate,
}

/// The rows a statement is expected to return or change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowEstimate {
    /// Known from the statement itself (`LIMIT 5`, `VALUES` with 3 rows, an aggregate
    /// without `GROUP BY`).
    Known(u64),
    /// As many as the table holds (a whole scan), at most `limit`.
    TableRows { table: String, limit: Option<u64> },
    /// Bounded by a predicate or grouped: counted as within the free rows.
    Few,
}

impl Cost {
    /// The cost terms of an analyzed statement.
    /// A statement that costs nothing.
    pub fn free() -> Cost {
        Cost {
            free: true,
            tables: 0,
            full_scan: None,
            selects_star: false,
            rows: RowEstimate::Few,
        }
    }

    pub fn of(statement: &Analyzed) -> Cost {
        if statement.kind == Kind::Session {
            return Cost::free();
        }
        statement.with_stack(|| {
            let tables = statement
                .tables
                .iter()
                .collect::<BTreeSet<_>>()
                .len()
                .max(1);
            let (full_scan, selects_star, rows) = scans(&statement.statement);
            Cost {
                free: false,
                tables,
                full_scan,
                selects_star,
                rows,
            }
        })
    }

    /// Everything but the rows term.
    pub fn base(&self) -> Credits {
        if self.free {
            return Credits::ZERO;
        }
        let mut milli = 1_000 + 500 * (self.tables.max(1) as u64 - 1);
        if self.full_scan.is_some() {
            milli += 2_000;
        }
        if self.selects_star {
            milli += 1_000;
        }
        Credits::from_milli(milli)
    }

    /// What the statement costs when it returned (or changed) `rows` rows.
    pub fn credits(&self, rows: u64) -> Credits {
        if self.free {
            return Credits::ZERO;
        }
        self.base() + row_blocks(rows)
    }

    /// The estimate before it runs: the rows from the table statistics `row_count` gives
    /// (`None`: unknown, counted as none), at most `row_cap` for a read.
    pub fn estimate(&self, row_count: impl Fn(&str) -> Option<u64>, row_cap: u64) -> Credits {
        let rows = match &self.rows {
            RowEstimate::Known(n) => *n,
            RowEstimate::TableRows { table, limit } => {
                let n = row_count(table).unwrap_or(0);
                limit.map_or(n, |l| n.min(l))
            }
            RowEstimate::Few => 0,
        };
        self.credits(rows.min(row_cap))
    }

    /// The table whose statistics the estimate reads, if any.
    pub fn needs_statistics(&self) -> Option<&str> {
        match &self.rows {
            RowEstimate::TableRows { table, .. } => Some(table),
            _ => None,
        }
    }
}

/// The rows term: one credit per started block of rows beyond the first 10 000.
pub fn row_blocks(rows: u64) -> Credits {
    let beyond = rows.saturating_sub(FREE_ROWS);
    Credits::whole(beyond.div_ceil(ROW_BLOCK))
}

/// The first unbounded table, whether any select list has `*`, and the expected rows.
fn scans(statement: &Statement) -> (Option<String>, bool, RowEstimate) {
    if let Statement::Explain { analyze: false, .. } | Statement::ExplainTable { .. } = statement {
        return (None, false, RowEstimate::Known(1));
    }
    let mut finder = Scans::new(statement);
    let _ = statement.visit(&mut finder);
    let (full_scan, selects_star) = (finder.unbounded.first().cloned(), finder.star);
    let rows = match statement {
        Statement::Query(q) => query_rows(q, &finder),
        Statement::Insert(insert) => match insert.source.as_deref() {
            Some(source) => match source.body.as_ref() {
                SetExpr::Values(v) => RowEstimate::Known(v.rows.len() as u64),
                _ => query_rows(source, &finder),
            },
            None => RowEstimate::Known(1),
        },
        Statement::Update(_) | Statement::Delete(_) | Statement::Merge(_) => match &full_scan {
            Some(table) => RowEstimate::TableRows {
                table: table.clone(),
                limit: None,
            },
            None => RowEstimate::Few,
        },
        _ => RowEstimate::Few,
    };
    (full_scan, selects_star, rows)
}

/// The rows a query is expected to return: its `LIMIT`, one row for an aggregate without
/// `GROUP BY`, the table's rows for a whole scan of one, otherwise few.
fn query_rows(query: &Query, finder: &Scans) -> RowEstimate {
    let limit = query.limit_clause.as_ref().and_then(|l| match l {
        LimitClause::LimitOffset { limit, .. } => limit.as_ref().and_then(literal_count),
        LimitClause::OffsetCommaLimit { limit, .. } => literal_count(limit),
    });
    if let SetExpr::Select(select) = query.body.as_ref() {
        let grouped = match &select.group_by {
            GroupByExpr::All(_) => true,
            GroupByExpr::Expressions(e, _) => !e.is_empty(),
        };
        if !grouped && !select.projection.is_empty() && select.projection.iter().all(aggregate) {
            return RowEstimate::Known(1);
        }
        if grouped {
            return limit.map_or(RowEstimate::Few, RowEstimate::Known);
        }
        let scanned = select
            .from
            .iter()
            .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
            .filter_map(|f| finder.table_of(f))
            .find(|t| finder.unbounded.contains(t));
        if let Some(table) = scanned {
            return RowEstimate::TableRows { table, limit };
        }
    }
    limit.map_or(RowEstimate::Few, RowEstimate::Known)
}

fn literal_count(e: &Expr) -> Option<u64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// A select item that is an aggregate call (outside a window).
fn aggregate(item: &SelectItem) -> bool {
    const AGGREGATES: &[&str] = &[
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "any_value",
        "count_if",
        "bool_and",
        "bool_or",
        "booland_agg",
        "boolor_agg",
        "string_agg",
        "listagg",
        "array_agg",
        "median",
        "stddev",
        "stddev_pop",
        "stddev_samp",
        "variance",
        "var_pop",
        "var_samp",
        "approx_count_distinct",
        "mode",
        "first",
        "last",
    ];
    let expr = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return false,
    };
    match expr {
        Expr::Function(f) if f.over.is_none() => {
            let name = object_name(&f.name);
            let last = name.rsplit('.').next().unwrap_or(&name);
            AGGREGATES.contains(&last)
        }
        _ => false,
    }
}

/// Walks every query of a statement, and the statement's own `UPDATE`/`DELETE`, for tables
/// read without a selective predicate.
struct Scans {
    /// Names of every CTE of the statement: references to them scan no table.
    ctes: HashSet<String>,
    unbounded: Vec<String>,
    star: bool,
}

impl Scans {
    fn new(statement: &Statement) -> Scans {
        struct Ctes(HashSet<String>);
        impl Visitor for Ctes {
            type Break = ();
            fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
                if let Some(with) = &q.with {
                    for cte in &with.cte_tables {
                        self.0.insert(ident(&cte.alias.name));
                    }
                }
                ControlFlow::Continue(())
            }
        }
        let mut ctes = Ctes(HashSet::new());
        let _ = statement.visit(&mut ctes);
        Scans {
            ctes: ctes.0,
            unbounded: vec![],
            star: false,
        }
    }

    /// The table a factor scans (none for a CTE, a derived table or a table function).
    fn table_of(&self, factor: &TableFactor) -> Option<String> {
        match factor {
            TableFactor::Table {
                name, args: None, ..
            } => {
                let name = object_name(name);
                (!self.ctes.contains(&name)).then_some(name)
            }
            _ => None,
        }
    }

    /// One scope: the tables its `FROM` reads and the predicates that may bound them.
    fn scope<'a>(
        &mut self,
        from: impl Iterator<Item = &'a TableWithJoins>,
        selection: Option<&'a Expr>,
    ) {
        let mut scope = Scope::default();
        let mut predicates: Vec<&Expr> = selection.into_iter().collect();
        for t in from {
            scope.add(self, &t.relation);
            for join in &t.joins {
                scope.add(self, &join.relation);
                if let Some(on) = join_on(&join.join_operator) {
                    predicates.push(on);
                }
            }
        }
        for table in scope.unbounded(&predicates) {
            if !self.unbounded.contains(&table) {
                self.unbounded.push(table);
            }
        }
    }
}

impl Visitor for Scans {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let mut bodies = vec![query.body.as_ref()];
        while let Some(body) = bodies.pop() {
            match body {
                SetExpr::Select(select) => {
                    self.star |= select.projection.iter().any(|item| {
                        matches!(
                            item,
                            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                        )
                    });
                    self.scope(select.from.iter(), select.selection.as_ref());
                }
                SetExpr::SetOperation { left, right, .. } => {
                    bodies.push(left);
                    bodies.push(right);
                }
                // A nested query is visited on its own.
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Update(update) => {
                let from = match &update.from {
                    Some(UpdateTableFromKind::BeforeSet(t) | UpdateTableFromKind::AfterSet(t)) => {
                        t.as_slice()
                    }
                    None => &[],
                };
                self.scope(
                    std::iter::once(&update.table).chain(from),
                    update.selection.as_ref(),
                );
            }
            Statement::Delete(delete) => {
                let from = match &delete.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
                };
                self.scope(
                    from.iter().chain(delete.using.iter().flatten()),
                    delete.selection.as_ref(),
                );
            }
            Statement::Merge(merge) => {
                if let Some(table) = self.table_of(&merge.table) {
                    if !self.unbounded.contains(&table) {
                        self.unbounded.push(table);
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn join_on(op: &JoinOperator) -> Option<&Expr> {
    let constraint = match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::Semi(c)
        | JoinOperator::LeftSemi(c)
        | JoinOperator::RightSemi(c)
        | JoinOperator::Anti(c)
        | JoinOperator::LeftAnti(c)
        | JoinOperator::RightAnti(c)
        | JoinOperator::StraightJoin(c)
        | JoinOperator::AsOf { constraint: c, .. } => c,
        _ => return None,
    };
    match constraint {
        JoinConstraint::On(e) => Some(e),
        _ => None,
    }
}

/// The tables of one `FROM`, each under the names a column may qualify it by.
#[derive(Default)]
struct Scope {
    tables: Vec<String>,
    /// Qualifier → index in `tables` (its alias, or its name and the name's last part).
    names: HashMap<String, usize>,
}

impl Scope {
    fn add(&mut self, scans: &Scans, factor: &TableFactor) {
        let Some(table) = scans.table_of(factor) else {
            return;
        };
        let i = self.tables.len();
        match factor {
            TableFactor::Table {
                alias: Some(alias), ..
            } => {
                self.names.insert(ident(&alias.name), i);
            }
            TableFactor::Table { name, .. } => {
                self.names.insert(object_name(name), i);
                if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                    self.names.insert(ident(last), i);
                }
            }
            _ => {}
        }
        self.tables.push(table);
    }

    /// The tables no predicate bounds.
    fn unbounded(&self, predicates: &[&Expr]) -> Vec<String> {
        let mut bounded = vec![false; self.tables.len()];
        let mut links = Vec::new();
        for p in predicates {
            for i in self.bounds(p, &mut links) {
                bounded[i] = true;
            }
        }
        // A join on a key: an equality with a bounded table's column bounds the other side.
        let mut changed = true;
        while changed {
            changed = false;
            for &(a, b) in &links {
                if bounded[a] != bounded[b] {
                    bounded[a] = true;
                    bounded[b] = true;
                    changed = true;
                }
            }
        }
        self.tables
            .iter()
            .zip(bounded)
            .filter(|(_, b)| !b)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The tables a predicate bounds; column equalities between two tables go to `links`.
    fn bounds(&self, e: &Expr, links: &mut Vec<(usize, usize)>) -> BTreeSet<usize> {
        use sqlparser::ast::BinaryOperator as Op;
        let none = BTreeSet::new;
        match e {
            Expr::Nested(inner) => self.bounds(inner, links),
            Expr::BinaryOp {
                left,
                op: Op::And,
                right,
            } => {
                let mut both = self.bounds(left, links);
                both.extend(self.bounds(right, links));
                both
            }
            Expr::BinaryOp {
                left,
                op: Op::Or,
                right,
            } => {
                // Links under an OR hold for one branch only.
                let mut ignored = Vec::new();
                let l = self.bounds(left, &mut ignored);
                let r = self.bounds(right, &mut ignored);
                l.intersection(&r).copied().collect()
            }
            Expr::BinaryOp { left, op, right }
                if matches!(op, Op::Eq | Op::Lt | Op::LtEq | Op::Gt | Op::GtEq) =>
            {
                match (self.column(left), self.column(right)) {
                    (Some(a), Some(b)) if *op == Op::Eq && a != b => {
                        links.push((a, b));
                        none()
                    }
                    (Some(t), None) if constant(right) => BTreeSet::from([t]),
                    (None, Some(t)) if constant(left) => BTreeSet::from([t]),
                    _ => none(),
                }
            }
            Expr::Between {
                expr,
                negated: false,
                low,
                high,
            } if constant(low) && constant(high) => self.column(expr).into_iter().collect(),
            Expr::InList {
                expr,
                list,
                negated: false,
            } if list.iter().all(constant) => self.column(expr).into_iter().collect(),
            Expr::InSubquery {
                expr,
                negated: false,
                ..
            } => self.column(expr).into_iter().collect(),
            Expr::Like {
                expr,
                negated: false,
                pattern,
                any: false,
                ..
            } if literal_prefix(pattern) => self.column(expr).into_iter().collect(),
            _ => none(),
        }
    }

    /// The table a column belongs to, when the expression is a plain column of this scope.
    fn column(&self, e: &Expr) -> Option<usize> {
        match e {
            Expr::Nested(inner) => self.column(inner),
            Expr::Identifier(_) if self.tables.len() == 1 => Some(0),
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let qualifier = &parts[..parts.len() - 1];
                let name = qualifier.iter().map(ident).collect::<Vec<_>>().join(".");
                self.names.get(&name).copied().or_else(|| {
                    qualifier
                        .last()
                        .and_then(|last| self.names.get(&ident(last)).copied())
                })
            }
            _ => None,
        }
    }
}

/// An expression whose value does not depend on a row: no column and no subquery.
fn constant(e: &Expr) -> bool {
    struct Rowwise;
    impl Visitor for Rowwise {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(_)
                | Expr::CompoundIdentifier(_)
                | Expr::CompoundFieldAccess { .. }
                | Expr::Subquery(_)
                | Expr::Exists { .. } => ControlFlow::Break(()),
                Expr::Function(f) if matches!(f.args, FunctionArguments::Subquery(_)) => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    e.visit(&mut Rowwise).is_continue()
}

/// `LIKE 'abc%'`: a pattern that does not start with a wildcard is a range of the column.
fn literal_prefix(pattern: &Expr) -> bool {
    match pattern {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => !s.is_empty() && !s.starts_with(['%', '_']),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests;
