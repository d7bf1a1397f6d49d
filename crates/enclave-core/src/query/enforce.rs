//! Stage 7, rewrite: masks and row filters applied under the query, where nothing the
//! caller writes can get around them.
//!
//! Every reference to a relation with masks or row filters for the caller becomes a derived
//! table over it: `(SELECT <columns> FROM t WHERE <filter>) AS t`. Its select list is the
//! relation's columns from the catalog (so `SELECT *` expands to what the derived table
//! shows), each masked column replaced by its mask, and — when a filter applies — every
//! column *guarded*: `CASE WHEN <filter> THEN <column or mask> END`. The guard is what makes
//! the rewrite leak-proof against the optimizer: engines push the caller's predicates down
//! into the derived table and may evaluate them before the filter, on hidden rows too; a
//! guarded column is NULL on a hidden row wherever it is evaluated, so no predicate, cast
//! error or function of the caller's sees a hidden value.
//!
//! Filter placeholders and the hash key are bound as parameters numbered after the caller's.
//! Writes: `UPDATE`/`DELETE` get the filter AND-ed to their WHERE (qualified by the target)
//! and may not read a masked column; `INSERT` rows must pass the filter (WITH CHECK: the
//! statement fails on the first row that does not). What cannot be proven safe is refused:
//! `EXPLAIN` of a rewritten statement (its plan would show the parameters), a view over a
//! covered table, a CTE named like one, `MERGE`, DDL changing a covered table, and the rest
//! listed in [`enforce`].

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_expressions_mut, Expr, FromTable, Ident, ObjectName, ObjectNamePart,
    Query, SelectItem, Statement, TableAlias, TableFactor, TableObject, Value, ValueWithSpan,
    Visit, VisitMut, Visitor, VisitorMut,
};

use super::analyze::{object_name, Analyzed, Dialect};
use super::catalog::{split, Catalog, Relation, RelationKind};
use super::sqlstate::with_sqlstate;
use crate::error::{Error, Result};
use crate::policy::evaluate::{ColumnMask, Evaluation};
use crate::policy::table::TableRef;
use crate::policy::MaskFunction;

mod build;
mod inspect;
use build::{and, columns_match, nested, parse_expr, parse_statement, qualify, quote};
pub use inspect::{max_placeholder, needs_guard, request_tables};

/// The text a WITH CHECK failure raises, so the gateway can tell it from other errors.
pub const WITH_CHECK_MARK: &str = "enclave:with_check_violation";

/// A statement with the caller's masks and row filters applied.
#[derive(Debug, Clone)]
pub struct Enforced {
    pub statement: Statement,
    /// Values of the parameters the rewrite added, numbered from the caller's count + 1.
    pub params: Vec<String>,
    /// `table.column` of every mask applied.
    pub columns_masked: Vec<String>,
    /// Tables whose row filter was applied.
    pub row_filters: Vec<String>,
    /// Policies whose filter the rewrite applied, by table (for WITH CHECK messages).
    pub filter_policies: Vec<String>,
}

/// Applies `eval`'s masks and row filters to `statement`. `None`: nothing applies and the
/// statement runs as it is. `first_param` is how many parameters the caller's statement
/// has; `hash_key` is the environment's key for `hash` masks (required when one applies).
pub fn enforce(
    statement: &Analyzed,
    eval: &Evaluation,
    catalog: &Catalog,
    dialect: Dialect,
    first_param: usize,
    hash_key: Option<&str>,
) -> Result<Option<Enforced>> {
    if eval.masks.is_empty() && eval.row_filters.is_empty() {
        return Ok(None);
    }
    statement
        .with_stack(|| rewrite_statement(statement, eval, catalog, dialect, first_param, hash_key))
}

fn rewrite_statement(
    statement: &Analyzed,
    eval: &Evaluation,
    catalog: &Catalog,
    dialect: Dialect,
    first_param: usize,
    hash_key: Option<&str>,
) -> Result<Option<Enforced>> {
    let mut cx = Context {
        catalog,
        eval,
        dialect,
        next_param: first_param,
        params: Vec::new(),
        bound: HashMap::new(),
        hash_param: None,
        hash_key,
        masked: BTreeSet::new(),
        filtered: BTreeSet::new(),
        policies: BTreeSet::new(),
        covers: 0,
        guard: needs_guard(&statement.statement),
    };
    refuse_shadowing_ctes(&statement.statement, eval)?;
    let mut out = statement.statement.clone();
    match &mut out {
        Statement::Query(q) => cx.rewrite(q.as_mut())?,
        Statement::Insert(insert) => cx.insert(insert)?,
        Statement::Update(update) => cx.update(update)?,
        Statement::Delete(delete) => cx.delete(delete)?,
        Statement::CreateTable(create) => {
            if let Some(q) = create.query.as_mut() {
                cx.rewrite(q.as_mut())?;
            }
        }
        Statement::CreateView(view) => {
            // A view stores its text: it would keep this caller's filter values and key.
            let mut probe = view.query.clone();
            cx.rewrite(probe.as_mut())?;
            if cx.covers > 0 {
                return Err(refuse(
                    "policy_view",
                    "a view may not be created over tables with masks or row filters for you: it would store them; ask a role they exempt",
                ));
            }
        }
        Statement::Explain {
            statement: inner, ..
        } => {
            let mut probe = (**inner).clone();
            let _ = cx.rewrite(&mut probe);
            if cx.covers > 0 || cx.tables_covered(&statement.relations, false) {
                return Err(refuse(
                    "policy_explain",
                    "EXPLAIN is not available for statements under masks or row filters: the plan would show their parameters",
                ));
            }
        }
        Statement::ExplainTable { .. }
        | Statement::CreateIndex(_)
        | Statement::Drop { .. }
        | Statement::CreateSchema { .. }
        | Statement::CreateSequence { .. } => {}
        Statement::Truncate(_) | Statement::Copy { .. } => {
            // Loads and truncation read nothing; they are refused only where a filter hides
            // rows (a load could not be checked row by row, truncation would empty them).
            if cx.tables_covered(&statement.relations, true) {
                return Err(refuse(
                    "policy_row_filter",
                    "this statement would write or remove rows your row filter hides; use INSERT or DELETE",
                ));
            }
        }
        _ => {
            // MERGE, ALTER, RENAME, COMMENT …: a covered table may not be changed by a
            // caller its policies apply to (renaming a table or column would shed them).
            if cx.tables_covered(&statement.relations, false) {
                return Err(refuse(
                    "policy_statement",
                    "this statement touches a table with masks or row filters for you and cannot be rewritten safely",
                ));
            }
        }
    }
    if cx.covers == 0 {
        return Ok(None);
    }
    Ok(Some(Enforced {
        statement: out,
        params: cx.params,
        columns_masked: cx.masked.into_iter().collect(),
        row_filters: cx.filtered.into_iter().collect(),
        filter_policies: cx.policies.into_iter().collect(),
    }))
}

fn refuse(rule: &str, message: &str) -> Error {
    with_sqlstate(Error::forbidden(rule, message), "42501")
}

/// What applies to one relation for this caller.
struct Cover<'c> {
    relation: &'c Relation,
    label: String,
    masks: Vec<ColumnMask>,
    /// The AND of the filters, bare column names, parameters renumbered.
    filter: Option<Expr>,
}

struct Context<'a> {
    catalog: &'a Catalog,
    eval: &'a Evaluation,
    dialect: Dialect,
    /// The last parameter number in use.
    next_param: usize,
    params: Vec<String>,
    /// Filters already bound, by table, so every reference shares its parameters.
    bound: HashMap<String, Option<Expr>>,
    hash_param: Option<usize>,
    hash_key: Option<&'a str>,
    masked: BTreeSet<String>,
    filtered: BTreeSet<String>,
    policies: BTreeSet<String>,
    covers: usize,
    /// Whether filtered columns are guarded (see [`needs_guard`]).
    guard: bool,
}

impl<'a> Context<'a> {
    /// A name's parts as the classifier lists them, so a reference resolves here exactly as
    /// it did when the policies were asked about it.
    fn parts(name: &ObjectName) -> Vec<String> {
        split(&object_name(name))
    }

    fn masks_of(&self, refs: &[TableRef]) -> Vec<ColumnMask> {
        let mut by_column: HashMap<String, ColumnMask> = HashMap::new();
        for m in &self.eval.masks {
            if !refs.iter().any(|r| r.display() == m.table) {
                continue;
            }
            let key = m.column.to_ascii_lowercase();
            match by_column.get(&key) {
                Some(held) if !m.stricter_than(held) => {}
                _ => {
                    by_column.insert(key, m.clone());
                }
            }
        }
        by_column.into_values().collect()
    }

    /// Whether masks (or, with `filters_only`, just row filters) apply to any of `tables`
    /// (names as the statement wrote them, views followed).
    fn tables_covered(&self, tables: &[String], filters_only: bool) -> bool {
        self.catalog.expand(tables).iter().any(|r| {
            let name = r.display();
            self.eval.row_filters.iter().any(|f| f.table == name)
                || (!filters_only && self.eval.masks.iter().any(|m| m.table == name))
        })
    }

    fn covered(&self, r: &TableRef) -> bool {
        let name = r.display();
        self.eval.row_filters.iter().any(|f| f.table == name)
            || self.eval.masks.iter().any(|m| m.table == name)
    }

    /// The masks and filter of the relation `name` resolves to, `None` when none apply.
    fn cover(&mut self, name: &ObjectName) -> Result<Option<Cover<'a>>> {
        let parts = Self::parts(name);
        let catalog = self.catalog;
        let relation = catalog.resolve(&parts);
        if let Some(view) = relation.filter(|r| r.kind == RelationKind::View) {
            if catalog.view_reads(view, &|r| self.covered(r)) {
                return Err(refuse(
                    "policy_view",
                    &format!(
                        "the view `{}` reads a table with masks or row filters for you; query the table itself",
                        view.name
                    ),
                ));
            }
        }
        let refs = catalog.refs(&parts);
        let masks = self.masks_of(&refs);
        let label = refs
            .first()
            .map(TableRef::display)
            .unwrap_or_else(|| parts.join("."));
        let filter = self.filter_of(&refs)?;
        if masks.is_empty() && filter.is_none() {
            return Ok(None);
        }
        let Some(relation) = relation else {
            return Err(with_sqlstate(
                Error::not_found("relation").with_details(serde_json::json!({
                    "rule": "policy_catalog", "relation": parts.join("."),
                })),
                "42P01",
            ));
        };
        Ok(Some(Cover {
            relation,
            label,
            masks,
            filter,
        }))
    }

    /// The filters of `refs`, AND-ed, with their parameters given numbers (once per table).
    fn filter_of(&mut self, refs: &[TableRef]) -> Result<Option<Expr>> {
        let mut parts: Vec<Expr> = Vec::new();
        let mut seen = BTreeSet::new();
        for r in refs {
            let name = r.display();
            if let Some(bound) = self.bound.get(&name) {
                parts.extend(bound.clone());
                continue;
            }
            let mut bound: Option<Expr> = None;
            for f in self.eval.row_filters.iter().filter(|f| f.table == name) {
                if !seen.insert((f.predicate.clone(), f.parameters.clone())) {
                    continue;
                }
                let mut expr = parse_expr(&f.predicate, self.dialect)?;
                let base = self.next_param;
                let _ = visit_expressions_mut(&mut expr, |e| {
                    match e {
                        Expr::Value(ValueWithSpan {
                            value: Value::Placeholder(p),
                            ..
                        }) => {
                            if let Some(n) =
                                p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
                            {
                                *p = format!("${}", n + base);
                            }
                        }
                        // Filters see only their own table: qualifiers go, so the same
                        // expression works in a derived table and (re-qualified) in DML.
                        Expr::CompoundIdentifier(idents) => {
                            if let Some(last) = idents.last().cloned() {
                                *e = Expr::Identifier(last);
                            }
                        }
                        _ => {}
                    }
                    ControlFlow::<()>::Continue(())
                });
                self.next_param += f.parameters.len();
                self.params.extend(f.parameters.iter().cloned());
                self.policies
                    .extend(f.sources.iter().map(|s| s.policy_name.clone()));
                bound = Some(match bound {
                    None => nested(expr),
                    Some(left) => Expr::BinaryOp {
                        left: Box::new(left),
                        op: sqlparser::ast::BinaryOperator::And,
                        right: Box::new(nested(expr)),
                    },
                });
            }
            self.bound.insert(name, bound.clone());
            parts.extend(bound);
        }
        Ok(parts.into_iter().reduce(|left, right| Expr::BinaryOp {
            left: Box::new(left),
            op: sqlparser::ast::BinaryOperator::And,
            right: Box::new(right),
        }))
    }

    fn hash_param(&mut self) -> Result<usize> {
        if let Some(n) = self.hash_param {
            return Ok(n);
        }
        let key = self.hash_key.ok_or_else(Error::internal)?;
        self.next_param += 1;
        self.params.push(key.to_string());
        self.hash_param = Some(self.next_param);
        Ok(self.next_param)
    }

    /// The SQL of one column as the caller sees it.
    fn column_sql(&mut self, cover: &Cover<'_>, column: &super::catalog::Column) -> Result<String> {
        let q = quote(&column.name);
        let mask = cover
            .masks
            .iter()
            .find(|m| m.column.eq_ignore_ascii_case(&column.name));
        let mut sql = match mask {
            None => q.clone(),
            Some(m) => {
                self.masked.insert(format!("{}.{}", cover.label, m.column));
                match m.function {
                    MaskFunction::Null => "NULL".to_string(),
                    MaskFunction::Full if column.is_text() => "'***'".to_string(),
                    MaskFunction::Full => "NULL".to_string(),
                    MaskFunction::Partial => format!(
                        "'***' || right(CAST({q} AS VARCHAR), {})",
                        m.visible_chars.unwrap_or(4)
                    ),
                    MaskFunction::Hash => {
                        let k = self.hash_param()?;
                        let keyed = format!("CAST(${k} AS VARCHAR) || CAST({q} AS VARCHAR)");
                        match self.dialect {
                            Dialect::DuckDb => format!("sha256({keyed})"),
                            Dialect::Postgres => {
                                format!("encode(sha256(convert_to({keyed}, 'UTF8')), 'hex')")
                            }
                        }
                    }
                }
            }
        };
        if let (Some(f), true) = (&cover.filter, self.guard) {
            sql = format!("CASE WHEN {f} THEN {sql} END");
        }
        Ok(format!("{sql} AS {q}"))
    }

    /// `(SELECT … FROM name WHERE …)` for a covered relation.
    fn derived(&mut self, name: &ObjectName, cover: &Cover<'_>) -> Result<Query> {
        if cover.relation.columns.is_empty() {
            return Err(refuse(
                "policy_catalog",
                "the relation's columns are unknown; it cannot be read under its policies",
            ));
        }
        let mut items = Vec::with_capacity(cover.relation.columns.len());
        for column in &cover.relation.columns {
            items.push(self.column_sql(cover, column)?);
        }
        if cover.filter.is_some() {
            self.filtered.insert(cover.label.clone());
        }
        let filter = cover
            .filter
            .as_ref()
            .map(|f| format!(" WHERE {f}"))
            .unwrap_or_default();
        let sql = format!("SELECT {} FROM {name}{filter}", items.join(", "));
        match parse_statement(&sql, self.dialect)? {
            Statement::Query(q) => Ok(*q),
            _ => Err(Error::internal()),
        }
    }

    /// Rewrites every relation reference under `node`.
    fn rewrite<N: VisitMut + ?Sized>(&mut self, node: &mut N) -> Result<()> {
        match node.visit(&mut Rewriter { cx: self }) {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// The cover of a DML target; targets other than a plain table name are refused when
    /// anything applies to the tables involved.
    fn target(&mut self, factor: &TableFactor) -> Result<Option<(Cover<'a>, Ident)>> {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        else {
            return Ok(None);
        };
        let Some(cover) = self.cover(name)? else {
            return Ok(None);
        };
        let qualifier = alias
            .as_ref()
            .map(|a| a.name.clone())
            .or_else(|| name.0.last().and_then(|p| p.as_ident().cloned()))
            .ok_or_else(Error::internal)?;
        self.covers += 1;
        Ok(Some((cover, qualifier)))
    }

    /// A masked column of `cover` named anywhere in `node` (over-approximated by name).
    fn refuse_masked_reads<N: Visit>(cover: &Cover<'_>, node: &N) -> Result<()> {
        if cover.masks.is_empty() {
            return Ok(());
        }
        let hit = visit_expressions(node, |e| {
            let name = match e {
                Expr::Identifier(i) => Some(&i.value),
                Expr::CompoundIdentifier(parts) => parts.last().map(|i| &i.value),
                _ => None,
            };
            match name {
                Some(n) if cover.masks.iter().any(|m| m.column.eq_ignore_ascii_case(n)) => {
                    ControlFlow::Break(n.clone())
                }
                _ => ControlFlow::Continue(()),
            }
        });
        if let ControlFlow::Break(column) = hit {
            return Err(refuse(
                "policy_masked_column",
                &format!(
                    "`{column}` is masked for you in `{}`: a write may not read it (WHERE, SET values, RETURNING)",
                    cover.label
                ),
            ));
        }
        Ok(())
    }

    fn refuse_returning_star(cover: &Cover<'_>, returning: &Option<Vec<SelectItem>>) -> Result<()> {
        let star = returning.iter().flatten().any(|i| {
            matches!(
                i,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        });
        if star && !cover.masks.is_empty() {
            return Err(refuse(
                "policy_masked_column",
                &format!(
                    "RETURNING * would show masked columns of `{}`; name the columns",
                    cover.label
                ),
            ));
        }
        Self::refuse_masked_reads(cover, returning)
    }

    fn update(&mut self, u: &mut sqlparser::ast::Update) -> Result<()> {
        if let Some((cover, qualifier)) = self.target(&u.table.relation)? {
            if !u.table.joins.is_empty() {
                return Err(refuse(
                    "policy_statement",
                    "UPDATE with joins on a table under policies is not supported; use FROM",
                ));
            }
            Self::refuse_masked_reads(&cover, &u.selection)?;
            Self::refuse_masked_reads(&cover, &u.from)?;
            for a in &u.assignments {
                Self::refuse_masked_reads(&cover, &a.value)?;
            }
            Self::refuse_returning_star(&cover, &u.returning)?;
            if let Some(filter) = &cover.filter {
                self.filtered.insert(cover.label.clone());
                u.selection = Some(and(u.selection.take(), qualify(filter, &qualifier)));
            }
        } else {
            self.rewrite(&mut u.table)?;
        }
        self.rewrite(&mut u.from)?;
        self.rewrite(&mut u.selection)?;
        for a in &mut u.assignments {
            self.rewrite(&mut a.value)?;
        }
        self.rewrite(&mut u.returning)
    }

    fn delete(&mut self, d: &mut sqlparser::ast::Delete) -> Result<()> {
        let targets = match &mut d.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        let single = targets.len() == 1 && targets[0].joins.is_empty() && d.tables.is_empty();
        let mut covered = None;
        for t in targets.iter() {
            if let Some(c) = self.target(&t.relation)? {
                covered = Some(c);
            }
        }
        if let Some((cover, qualifier)) = covered {
            if !single {
                return Err(refuse(
                    "policy_statement",
                    "DELETE from several tables is not supported when one is under policies; use USING",
                ));
            }
            Self::refuse_masked_reads(&cover, &d.selection)?;
            Self::refuse_masked_reads(&cover, &d.using)?;
            Self::refuse_returning_star(&cover, &d.returning)?;
            if let Some(filter) = &cover.filter {
                self.filtered.insert(cover.label.clone());
                d.selection = Some(and(d.selection.take(), qualify(filter, &qualifier)));
            }
        }
        let targets = match &mut d.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        for t in targets.iter_mut() {
            self.rewrite(&mut t.joins)?;
        }
        self.rewrite(&mut d.using)?;
        self.rewrite(&mut d.selection)?;
        self.rewrite(&mut d.returning)
    }

    fn insert(&mut self, ins: &mut sqlparser::ast::Insert) -> Result<()> {
        // The source reads like any query.
        self.rewrite(&mut ins.source)?;
        let TableObject::TableName(name) = &ins.table else {
            return Ok(());
        };
        let Some(cover) = self.cover(name)? else {
            return Ok(());
        };
        self.covers += 1;
        Self::refuse_returning_star(&cover, &ins.returning)?;
        let Some(filter) = cover.filter.clone() else {
            return Ok(());
        };
        if ins.on.is_some() || ins.or.is_some() || ins.replace_into || ins.overwrite {
            return Err(refuse(
                "policy_row_filter",
                "INSERT … ON CONFLICT / OR REPLACE could change rows your row filter hides",
            ));
        }
        let Some(source) = ins.source.take() else {
            return Err(refuse(
                "policy_row_filter",
                "INSERT … DEFAULT VALUES cannot be checked against your row filter; give the values",
            ));
        };
        let columns: Vec<String> = if ins.columns.is_empty() {
            cover
                .relation
                .columns
                .iter()
                .map(|c| c.name.clone())
                .collect()
        } else {
            ins.columns
                .iter()
                .map(|c| Self::parts(c).pop().unwrap_or_default())
                .collect()
        };
        // WITH CHECK: each new row must pass the filter; a column the INSERT does not give
        // is NULL to the check (defaults are not evaluated), so such a filter fails it.
        let check = {
            let mut f = filter;
            let _ = visit_expressions_mut(&mut f, |e| {
                if let Expr::Identifier(i) = e {
                    *e = if columns.iter().any(|c| c.eq_ignore_ascii_case(&i.value)) {
                        Expr::CompoundIdentifier(vec![
                            Ident::new("enclave_new"),
                            Ident::with_quote('"', columns_match(&columns, &i.value)),
                        ])
                    } else {
                        Expr::Value(Value::Null.into())
                    };
                }
                ControlFlow::<()>::Continue(())
            });
            f
        };
        self.filtered.insert(cover.label.clone());
        let quoted: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let sql = format!(
            "SELECT * FROM ({source}) AS enclave_new ({}) \
             WHERE CAST(CASE WHEN {check} THEN '1' ELSE '{WITH_CHECK_MARK}' END AS INTEGER) = 1",
            quoted.join(", ")
        );
        let Statement::Query(q) = parse_statement(&sql, self.dialect)? else {
            return Err(Error::internal());
        };
        ins.source = Some(q);
        ins.columns = columns
            .iter()
            .map(|c| ObjectName(vec![ObjectNamePart::Identifier(Ident::with_quote('"', c))]))
            .collect();
        Ok(())
    }
}

struct Rewriter<'r, 'a> {
    cx: &'r mut Context<'a>,
}

impl VisitorMut for Rewriter<'_, '_> {
    type Break = Error;

    // After the children: the derived table put in place is not visited again.
    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            with_hints,
            version,
            partitions,
            json_path,
            sample,
            index_hints,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let cover = match self.cx.cover(name) {
            Ok(Some(c)) => c,
            Ok(None) => return ControlFlow::Continue(()),
            Err(e) => return ControlFlow::Break(e),
        };
        if !with_hints.is_empty()
            || version.is_some()
            || !partitions.is_empty()
            || json_path.is_some()
            || !index_hints.is_empty()
        {
            return ControlFlow::Break(refuse(
                "policy_statement",
                "table hints, versions and partitions are not available on tables under policies",
            ));
        }
        let subquery = match self.cx.derived(name, &cover) {
            Ok(q) => q,
            Err(e) => return ControlFlow::Break(e),
        };
        self.cx.covers += 1;
        let alias = alias.take().or_else(|| {
            name.0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| TableAlias {
                    explicit: true,
                    name: i.clone(),
                    columns: vec![],
                    at: None,
                })
        });
        *factor = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(subquery),
            alias,
            sample: sample.take(),
        };
        ControlFlow::Continue(())
    }
}

/// A CTE named like a covered table would make its references ambiguous to the rewrite.
fn refuse_shadowing_ctes(statement: &Statement, eval: &Evaluation) -> Result<()> {
    struct Ctes(Vec<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if let Some(with) = &q.with {
                self.0.extend(
                    with.cte_tables
                        .iter()
                        .map(|c| c.alias.name.value.to_ascii_lowercase()),
                );
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(vec![]);
    let _ = statement.visit(&mut ctes);
    let covered = |name: &str| {
        let last = |t: &str| t.rsplit('.').next().unwrap_or(t).to_string();
        eval.masks.iter().any(|m| last(&m.table) == name)
            || eval.row_filters.iter().any(|f| last(&f.table) == name)
    };
    if let Some(name) = ctes.0.iter().find(|n| covered(n)) {
        return Err(refuse(
            "policy_cte_name",
            &format!("the CTE `{name}` has the name of a table under policies; rename it"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
