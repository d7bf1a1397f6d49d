//! Bounds on the work one request's SQL may cause, enforced while it is parsed (stage 2),
//! before anything else looks at it.
//!
//! A syntax tree is walked by recursion everywhere — the classifier, the policy rewrite,
//! printing, cloning, dropping — and sqlparser builds a left-deep tree from a flat chain
//! (`1+1+1+…`, `a OR b OR …`, `… UNION ALL …`), so a few kilobytes of text can nest
//! thousands of levels deep. The parser therefore runs on a stack of its own, the depth of
//! what it built is measured (iteratively where trees grow without recursion in the parser),
//! and anything deeper than the limit is refused (`54001`) and dropped right there. A
//! statement that passes carries its depth, and the stages that recurse over it run with
//! room for that depth ([`with_stack`]) whatever thread they are on.

use std::ops::ControlFlow;

use serde_json::json;
use sqlparser::ast::{
    ArrayElemTypeDef, DataType, Expr, Query, Select, SetExpr, Statement, TableFactor, Visit,
    Visitor,
};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Error, ErrorCode};
use crate::query::sqlstate::with_sqlstate;

/// What one request's SQL may hold. The defaults follow the engines: DuckDB's own
/// `max_expression_depth` is 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in one request's SQL text (`54000`).
    pub max_statement_bytes: usize,
    /// Statements in one request's SQL text (`54000`).
    pub max_statements: usize,
    /// Nesting of a statement's syntax: expressions, subqueries, set operations, joins,
    /// array types (`54001`).
    pub max_depth: usize,
    /// Items in one select list (`54011`).
    pub max_select_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_statement_bytes: 1 << 20,
            max_statements: 1000,
            max_depth: 1000,
            max_select_items: 10_000,
        }
    }
}

/// The stack sqlparser runs on. Its own recursion limit (50 levels of statements,
/// subqueries and parenthesised expressions) bounds what it needs, but one level of its
/// statement parser is tens of kilobytes in an unoptimised build: far more than a 2 MiB
/// thread has. A join written without `ON` is not counted by that limit: the PostgreSQL
/// grammar recurses once a join, about 60 KiB a level unoptimised (1 KiB optimised), so an
/// unoptimised build needs room for [`Limits::max_depth`] of those. Mapped lazily: only the
/// pages a parse touches are ever committed.
pub(crate) const PARSE_STACK: usize = if cfg!(debug_assertions) {
    256 << 20
} else {
    64 << 20
};

/// Stack a parse may take per byte of its text, with a margin: nesting needs at least a byte a
/// level, and one level of the deepest form (a subquery in FROM, 15 bytes) measured about
/// 25 KiB optimised. A short text is parsed on the thread's own stack when it has this much
/// room, which saves mapping [`PARSE_STACK`] for every statement.
pub(crate) const PARSE_STACK_PER_BYTE: usize = if cfg!(debug_assertions) {
    64 << 10
} else {
    8 << 10
};

/// The room a parse of `bytes` of text needs on the stack it runs on.
pub(crate) fn parse_red_zone(bytes: usize) -> usize {
    STACK_BASE
        .saturating_add(bytes.saturating_mul(PARSE_STACK_PER_BYTE))
        .min(PARSE_STACK)
}

/// Stack one level of nesting may take in the stages after parsing, with a margin. Measured
/// with `Statement::clone`, the deepest of them, on 1 000-deep chains: about 7 KiB a level
/// unoptimised and 1.5 KiB optimised for expressions; a nested join (one level) is cloned by
/// five nested calls, about 20 KiB a level unoptimised (990 joins: 16 MiB too little, 24 MiB
/// enough).
const STACK_PER_LEVEL: usize = if cfg!(debug_assertions) {
    32 << 10
} else {
    8 << 10
};

/// Stack the stages need besides the statement's own nesting.
const STACK_BASE: usize = 256 << 10;

/// Runs `f` where a statement nested `depth` levels deep can be walked by recursion: on
/// this thread's stack when it has room, else on a fresh stack of the size needed.
pub fn with_stack<R>(depth: usize, f: impl FnOnce() -> R) -> R {
    let need = STACK_BASE + depth.saturating_mul(STACK_PER_LEVEL);
    stacker::maybe_grow(need, need + STACK_BASE, f)
}

/// The refusal of a string longer than `limits.max_statement_bytes`.
pub(crate) fn too_long(limits: &Limits) -> Error {
    refusal(
        "54000",
        "max_statement_bytes",
        limits.max_statement_bytes,
        format!(
            "the SQL text is longer than {} bytes (limit max_statement_bytes)",
            limits.max_statement_bytes
        ),
    )
}

/// The refusal of a string holding more than `limits.max_statements` statements.
pub(crate) fn too_many_statements(limits: &Limits) -> Error {
    refusal(
        "54000",
        "max_statements",
        limits.max_statements,
        format!(
            "the SQL text holds more than {} statements (limit max_statements)",
            limits.max_statements
        ),
    )
}

fn refusal(sqlstate: &str, rule: &str, limit: usize, message: String) -> Error {
    with_sqlstate(
        Error::new(ErrorCode::ValidationError, message)
            .with_details(json!({"field": "sql", "rule": rule, "limit": limit})),
        sqlstate,
    )
}

/// Refuses, before it is parsed, a statement with more joins than `max_depth`. The
/// PostgreSQL and Snowflake grammars read `a JOIN b JOIN c …` (joins without `ON`) as
/// `a JOIN (b JOIN (c …))`, by recursion, one level a join, and nothing bounds that recursion
/// until the tree is built and measured: a long enough chain overflows the parser's stack
/// (in an unoptimised build, about a thousand joins). A statement's `JOIN` keywords bound
/// that nesting. The text is tokenized only when it holds the word more often than the
/// limit at all, so ordinary statements pay one scan of their bytes.
pub(crate) fn check_joins(
    sql: &str,
    grammar: &dyn sqlparser::dialect::Dialect,
    limits: &Limits,
) -> Result<(), Error> {
    let max = limits.max_depth;
    let words = sql
        .as_bytes()
        .windows(4)
        .filter(|w| w.eq_ignore_ascii_case(b"join"))
        .count();
    if words <= max {
        return Ok(());
    }
    // A text the tokenizer cannot read is the parser's to report, as a syntax error.
    let Ok(tokens) = Tokenizer::new(grammar, sql).tokenize() else {
        return Ok(());
    };
    let mut joins = 0;
    for token in tokens {
        match token {
            Token::SemiColon => joins = 0,
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::JOIN => {
                joins += 1;
                if joins > max {
                    return Err(refusal(
                        "54001",
                        "max_depth",
                        max,
                        format!(
                            "statement too complex: more than {max} joins, each of which may \
                             nest a level (limit max_depth)"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The statement's nesting depth, or the refusal of a statement deeper or wider than the
/// limits allow. The walk stops at the first level past the limit, so it never goes deeper
/// than the limit itself.
pub(crate) fn check(statement: &Statement, limits: &Limits) -> Result<usize, Error> {
    let mut walk = Walk::new(limits);
    let outcome = match walk.enter(own_type_depth(statement)) {
        ControlFlow::Continue(()) => statement.visit(&mut walk),
        refused => refused,
    };
    match outcome {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(walk.deepest),
    }
}

/// The nesting depth of an expression, or `None` past `max_depth` (the walk stops there).
pub(crate) fn expression_depth(expr: &Expr, max_depth: usize) -> Option<usize> {
    let limits = Limits {
        max_depth,
        ..Limits::default()
    };
    let mut walk = Walk::new(&limits);
    match expr.visit(&mut walk) {
        ControlFlow::Break(_) => None,
        ControlFlow::Continue(()) => Some(walk.deepest),
    }
}

struct Walk<'a> {
    limits: &'a Limits,
    /// How many levels each node entered added (popped when it is left).
    entered: Vec<usize>,
    depth: usize,
    deepest: usize,
}

impl<'a> Walk<'a> {
    fn new(limits: &'a Limits) -> Self {
        Walk {
            limits,
            entered: Vec::new(),
            depth: 0,
            deepest: 0,
        }
    }

    fn enter(&mut self, levels: usize) -> ControlFlow<Error> {
        self.entered.push(levels);
        self.depth += levels;
        self.deepest = self.deepest.max(self.depth);
        if self.depth > self.limits.max_depth {
            return ControlFlow::Break(refusal(
                "54001",
                "max_depth",
                self.limits.max_depth,
                format!(
                    "statement too complex: nested more than {} levels deep (limit max_depth)",
                    self.limits.max_depth
                ),
            ));
        }
        ControlFlow::Continue(())
    }

    fn leave(&mut self) -> ControlFlow<Error> {
        self.depth -= self.entered.pop().unwrap_or(0);
        ControlFlow::Continue(())
    }
}

impl Visitor for Walk<'_> {
    type Break = Error;

    fn pre_visit_statement(&mut self, _: &Statement) -> ControlFlow<Error> {
        self.enter(1)
    }

    fn post_visit_statement(&mut self, _: &Statement) -> ControlFlow<Error> {
        self.leave()
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Error> {
        // A chain of set operations is a left-deep tree the parser builds in a loop: its
        // depth is measured here, before the walk descends into it.
        self.enter(1 + set_operation_depth(&query.body))
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<Error> {
        self.leave()
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Error> {
        let max = self.limits.max_select_items;
        if select.projection.len() > max {
            return ControlFlow::Break(refusal(
                "54011",
                "max_select_items",
                max,
                format!("a select list may hold at most {max} items (limit max_select_items)"),
            ));
        }
        self.enter(1)
    }

    fn post_visit_select(&mut self, _: &Select) -> ControlFlow<Error> {
        self.leave()
    }

    fn pre_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<Error> {
        self.enter(1)
    }

    fn post_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<Error> {
        self.leave()
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Error> {
        let types = match expr {
            Expr::Cast { data_type, .. } => type_depth(data_type),
            Expr::TypedString(typed) => type_depth(&typed.data_type),
            _ => 0,
        };
        self.enter(1 + types)
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<Error> {
        self.leave()
    }
}

/// How deep set operations nest in a query body (not counting nested queries, which the
/// walk measures as it enters them).
fn set_operation_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(body, 0)];
    while let Some((node, depth)) = pending.pop() {
        match node {
            SetExpr::SetOperation { left, right, .. } => {
                pending.push((left, depth + 1));
                pending.push((right, depth + 1));
            }
            _ => deepest = deepest.max(depth),
        }
    }
    deepest
}

/// How deep array types nest (`INT[][]…`): the parser builds them in a loop.
fn type_depth(data_type: &DataType) -> usize {
    let mut depth = 0;
    let mut current = data_type;
    loop {
        match current {
            DataType::Array(
                ArrayElemTypeDef::SquareBracket(inner, _)
                | ArrayElemTypeDef::AngleBracket(inner)
                | ArrayElemTypeDef::Parenthesis(inner)
                | ArrayElemTypeDef::Qualified(inner, _),
            ) => {
                depth += 1;
                current = inner;
            }
            _ => return depth,
        }
    }
}

/// Array types nested in a statement's own column definitions (`CREATE TABLE`), which no
/// expression holds.
fn own_type_depth(statement: &Statement) -> usize {
    match statement {
        Statement::CreateTable(t) => t
            .columns
            .iter()
            .map(|c| type_depth(&c.data_type))
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{parse, parse_within, sqlstate, Analyzed, Dialect};

    fn refusal_of(sql: &str, limits: &Limits) -> (String, String) {
        let e = parse_within(sql, Dialect::DuckDb, limits).expect_err(sql);
        (
            sqlstate(&e).to_string(),
            e.details["rule"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// Chains of `n` terms the parser nests one level a term, in both dialects' grammar.
    fn chains(n: usize) -> Vec<(&'static str, String)> {
        vec![
            ("+", format!("SELECT 1{}", "+1".repeat(n))),
            (
                "OR",
                format!("SELECT * FROM t WHERE a = 1{}", " OR a = 1".repeat(n)),
            ),
            (
                "AND",
                format!("SELECT * FROM t WHERE a = 1{}", " AND a = 1".repeat(n)),
            ),
            ("||", format!("SELECT 'a'{}", " || 'a'".repeat(n))),
            ("=", format!("SELECT 1{}", " = 1".repeat(n))),
            (
                "UNION ALL",
                format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(n)),
            ),
            ("::", format!("SELECT 1{}", "::INT".repeat(n))),
            ("[]", format!("SELECT CAST(1 AS INT{})", "[]".repeat(n))),
            ("IS NULL", format!("SELECT 1{}", " IS NULL".repeat(n))),
            ("->", format!("SELECT a{}", "->'b'".repeat(n))),
            ("[]", format!("CREATE TABLE t (a INT{})", "[]".repeat(n))),
        ]
    }

    #[test]
    fn deep_chains_are_refused_while_parsing_not_crashing() {
        // The 2 000-term query of the finding (about 4 KB) took the server down.
        for (name, sql) in chains(2000) {
            for dialect in [Dialect::DuckDb, Dialect::Postgres] {
                let e = parse_within(&sql, dialect, &Limits::default()).expect_err(name);
                assert_eq!(sqlstate(&e), "54001", "{name}: {e:?}");
                assert_eq!(e.details["rule"], "max_depth", "{name}");
                assert_eq!(e.details["limit"], 1000, "{name}");
                assert!(e.message.contains("max_depth"), "{}", e.message);
            }
        }
        // As long as the limit allows: a megabyte of one chain is refused the same way.
        let mb = format!("SELECT 1{}", "+1".repeat(500_000));
        let limits = Limits::default();
        assert_eq!(refusal_of(&mb, &limits).0, "54001");
    }

    #[test]
    fn join_chains_are_refused_before_the_parser_recurses() {
        // The fuzz test's finding: 1 100 joins without `ON` (58 KB) overflowed the parse
        // stack of an unoptimised build, and 70 000 would overflow any build's.
        for n in [1_100, 70_000] {
            let sql = format!(
                "SELECT email, ssn FROM customers c{}",
                " JOIN order c".repeat(n)
            );
            for dialect in [Dialect::DuckDb, Dialect::Postgres] {
                let e = parse_within(&sql, dialect, &Limits::default()).expect_err("refused");
                assert_eq!(sqlstate(&e), "54001", "{n} joins: {e:?}");
                assert_eq!(e.details["rule"], "max_depth");
            }
        }
        // Joins are counted per statement, as keywords: not in strings, quoted names or
        // other statements.
        let many = "SELECT * FROM a JOIN b ON true JOIN c ON true;".repeat(600);
        assert_eq!(parse(&many, Dialect::DuckDb).unwrap().len(), 600);
        let quoted = format!("SELECT '{}', 1 AS \"join\"", "join ".repeat(2_000));
        assert!(parse(&quoted, Dialect::DuckDb).is_ok());
        let tight = Limits {
            max_depth: 10,
            ..Limits::default()
        };
        let eleven = format!("SELECT * FROM t{}", " JOIN t AS u ON true".repeat(11));
        assert_eq!(refusal_of(&eleven, &tight).1, "max_depth");
        // Just under the limit, the PostgreSQL grammar nests every join, and the parse and
        // the stages after it have the room it takes.
        let nested = format!("SELECT * FROM t{}", " JOIN t AS u".repeat(990));
        let analyzed = parse(&nested, Dialect::Postgres).unwrap().remove(0);
        assert!(analyzed.depth > 990, "depth {}", analyzed.depth);
        let printed = analyzed.with_stack(|| analyzed.statement.clone().to_string());
        assert!(printed.len() > nested.len() / 2);
    }

    #[test]
    fn statements_at_the_limit_are_walked_with_room_to_spare() {
        // On this test's thread (2 MiB, unoptimised), each chain just under the limit
        // parses, and the recursive stages after it — clone, print, redact, drop — run with
        // the room `with_stack` makes for its depth.
        for (name, sql) in chains(950) {
            let analyzed: Analyzed = parse(&sql, Dialect::DuckDb)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"))
                .remove(0);
            assert!(analyzed.depth > 950, "{name}: depth {}", analyzed.depth);
            let printed = analyzed.with_stack(|| {
                let copy = analyzed.statement.clone();
                let text = copy.to_string();
                let redacted = crate::query::redact(&copy);
                drop(copy);
                (text, redacted)
            });
            assert!(printed.0.len() > 950, "{name}");
            assert!(!printed.1.is_empty(), "{name}");
        }
    }

    #[test]
    fn statement_count_size_and_width_are_bounded() {
        let limits = Limits::default();
        // 100 000 statements in 900 KB: refused at the 1 001st, before the rest is parsed.
        let many = "select 1;".repeat(100_000);
        assert_eq!(
            refusal_of(&many, &limits),
            ("54000".into(), "max_statements".into())
        );
        assert_eq!(
            parse(&"select 1;".repeat(1000), Dialect::DuckDb)
                .unwrap()
                .len(),
            1000
        );
        let long = format!("SELECT '{}'", "x".repeat(1 << 20));
        assert_eq!(
            refusal_of(&long, &limits),
            ("54000".into(), "max_statement_bytes".into())
        );
        let wide = format!("SELECT 1{}", ",1".repeat(250_000));
        let small = Limits {
            max_statement_bytes: 4 << 20,
            ..limits
        };
        assert_eq!(
            refusal_of(&wide, &small),
            ("54011".into(), "max_select_items".into())
        );
        // Nested: a subquery's select list counts too.
        let nested = format!("SELECT * FROM (SELECT 1{}) AS s", ",1".repeat(10_000));
        assert_eq!(refusal_of(&nested, &limits).0, "54011");
        assert!(parse(&format!("SELECT 1{}", ",1".repeat(9_999)), Dialect::DuckDb).is_ok());
    }

    #[test]
    fn limits_are_configurable() {
        let tight = Limits {
            max_statement_bytes: 64,
            max_statements: 2,
            max_depth: 20,
            max_select_items: 3,
        };
        assert_eq!(
            refusal_of("select 1; select 2; select 3", &tight).1,
            "max_statements"
        );
        assert_eq!(
            refusal_of(&format!("SELECT 1{}", "+1".repeat(25)), &tight).1,
            "max_depth"
        );
        assert_eq!(
            refusal_of("SELECT 1, 2, 3, 4", &tight).1,
            "max_select_items"
        );
        assert_eq!(refusal_of(&"x".repeat(65), &tight).1, "max_statement_bytes");
        assert!(parse_within("select 1; select 2", Dialect::DuckDb, &tight).is_ok());
    }

    #[test]
    fn nesting_is_measured_through_subqueries_and_joins() {
        let d = |sql: &str| parse(sql, Dialect::DuckDb).unwrap().remove(0).depth;
        let flat = d("SELECT a FROM t");
        assert!(d("SELECT (SELECT (SELECT 1))") > flat + 4);
        assert!(d("SELECT * FROM (SELECT * FROM (SELECT * FROM t) a) b") > flat + 4);
        // Siblings do not add up: a wide statement is not a deep one.
        let wide = format!("SELECT {}", vec!["a + 1"; 500].join(", "));
        assert!(d(&wide) < 10, "{}", d(&wide));
        assert_eq!(
            expression_depth(&sqlparser::ast::Expr::value(sqlparser::ast::Value::Null), 5),
            Some(1)
        );
    }
}
