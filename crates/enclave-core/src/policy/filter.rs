//! Row-level security filters: a SQL boolean expression over one table's columns, with
//! `{placeholder}`s filled from the caller.
//!
//! When a policy is saved the filter is parsed (sqlparser, PostgreSQL dialect) and refused
//! unless it is a pure expression: no subqueries, no reference to another table, only
//! functions from [`PURE_FUNCTIONS`], no `$n` parameters of its own. Placeholders are turned
//! into positional parameters (`$1`, `$2`, …) before parsing, so a value is always bound,
//! never spliced into SQL text. Binding a caller who lacks a placeholder yields `FALSE`.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_expressions_mut, visit_relations, BinaryOperator, DataType, Expr,
    FunctionArguments, UnaryOperator, Value, ValueWithSpan,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::error::{Error, Result};

/// Placeholders every caller may have (docs/policies.md); any other well-formed name is a
/// user or key attribute (`{department}`).
pub const BUILTIN_PLACEHOLDERS: [&str; 8] = [
    "user_id",
    "email",
    "role",
    "org_id",
    "env_id",
    "key_id",
    "agent_id",
    "framework",
];

/// Deterministic functions without side effects that a filter may call.
pub const PURE_FUNCTIONS: &[&str] = &[
    "abs",
    "btrim",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "coalesce",
    "concat",
    "current_date",
    "current_timestamp",
    "date_part",
    "date_trunc",
    "ends_with",
    "floor",
    "greatest",
    "least",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "now",
    "nullif",
    "octet_length",
    "position",
    "regexp_matches",
    "replace",
    "right",
    "round",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substring",
    "trim",
    "trunc",
    "upper",
];

pub const MAX_FILTER_CHARS: usize = 4096;

/// How deep a filter's expression may nest (`a = 1 OR a = 2 OR …` nests one level a term):
/// the rewrite places it inside the caller's statement, which makes room for this much.
pub const MAX_FILTER_DEPTH: usize = 128;

/// A validated filter: its source text and the parsed expression, in which placeholder
/// `placeholders[i]` is the parameter `$(i+1)`.
#[derive(Debug, Clone)]
pub struct RowFilter {
    source: String,
    expr: Expr,
    placeholders: Vec<String>,
}

/// A filter with the caller's values: `predicate` uses `$n` parameters numbered from the
/// offset it was bound at; `parameters` holds their values in order.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundFilter {
    pub predicate: Expr,
    pub parameters: Vec<String>,
    /// Placeholders the caller lacked; when non-empty the predicate is `FALSE`.
    pub missing: Vec<String>,
}

fn invalid(field: &str, rule: &str, message: impl Into<String>) -> Error {
    Error::validation(field, rule, message)
}

impl RowFilter {
    /// Parses and validates `text` as a filter on `table` (a validated, lower-case
    /// `table` or `schema.table`). Errors name `field`.
    pub fn parse(field: &str, text: &str, table: &str) -> Result<RowFilter> {
        let source = text.trim();
        if source.is_empty() {
            return Err(invalid(field, "required", "a filter must not be empty"));
        }
        if source.chars().count() > MAX_FILTER_CHARS {
            return Err(invalid(
                field,
                "max_length",
                format!("a filter must be at most {MAX_FILTER_CHARS} characters"),
            ));
        }
        let (sql, placeholders) = substitute(field, source)?;
        let dialect = PostgreSqlDialect {};
        let syntax = |e: sqlparser::parser::ParserError| {
            invalid(
                field,
                "sql_syntax",
                format!("the filter is not valid SQL: {e}"),
            )
        };
        let mut parser = Parser::new(&dialect)
            .with_recursion_limit(64)
            .try_with_sql(&sql)
            .map_err(syntax)?;
        let expr = parser.parse_expr().map_err(syntax)?;
        let rest = parser.peek_token().token;
        if rest != Token::EOF {
            return Err(invalid(
                field,
                "single_expression",
                format!("the filter must be one expression; unexpected `{rest}` after it"),
            ));
        }
        if crate::query::limits::expression_depth(&expr, MAX_FILTER_DEPTH).is_none() {
            return Err(invalid(
                field,
                "max_depth",
                format!("a filter may nest at most {MAX_FILTER_DEPTH} levels deep"),
            ));
        }
        check_pure(field, &expr, table)?;
        if !boolean_shaped(&expr) {
            return Err(invalid(
                field,
                "boolean",
                "the filter must be a boolean expression (a comparison, IN, LIKE, IS NULL, AND/OR …)",
            ));
        }
        Ok(RowFilter {
            source: source.to_string(),
            expr,
            placeholders,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Distinct placeholder names, in the order of their parameters.
    pub fn placeholders(&self) -> &[String] {
        &self.placeholders
    }

    /// Binds the caller's values; parameters are numbered from `offset + 1`. A missing
    /// placeholder makes the whole filter `FALSE` (no rows), never an error.
    pub fn bind(&self, offset: usize, value: impl Fn(&str) -> Option<String>) -> BoundFilter {
        let mut parameters = Vec::with_capacity(self.placeholders.len());
        let mut missing = Vec::new();
        for name in &self.placeholders {
            match value(name) {
                Some(v) => parameters.push(v),
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            return BoundFilter {
                predicate: Expr::Value(Value::Boolean(false).into()),
                parameters: Vec::new(),
                missing,
            };
        }
        let mut predicate = self.expr.clone();
        if offset > 0 {
            let _ = visit_expressions_mut(&mut predicate, |e| {
                if let Expr::Value(ValueWithSpan {
                    value: Value::Placeholder(p),
                    ..
                }) = e
                {
                    if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                        *p = format!("${}", n + offset);
                    }
                }
                ControlFlow::<()>::Continue(())
            });
        }
        BoundFilter {
            predicate,
            parameters,
            missing,
        }
    }
}

fn placeholder_name_ok(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Replaces each `{name}` outside quotes, and each string literal that is exactly one
/// placeholder (`'{department}'`, the form HatiData documents), by `$n` (one number per
/// distinct name): either way the caller's value is bound as a string. Refuses `$` outside
/// quotes (no parameters or dollar quoting of the filter's own) and a placeholder mixed with
/// other text inside a literal, which would compare with its literal text.
fn substitute(field: &str, text: &str) -> Result<(String, Vec<String>)> {
    let mut out = String::with_capacity(text.len());
    let mut names: Vec<String> = Vec::new();
    let mut number = |name: String| match names.iter().position(|x| *x == name) {
        Some(i) => i + 1,
        None => {
            names.push(name);
            names.len()
        }
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let literal_start = out.len();
                out.push(c);
                let mut literal = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c && chars.peek() == Some(&c) => {
                            chars.next();
                            out.push(q);
                            out.push(q);
                            literal.push(q);
                        }
                        Some(q) if q == c => {
                            out.push(q);
                            break;
                        }
                        Some(x) => {
                            out.push(x);
                            literal.push(x);
                        }
                        None => break, // unterminated: the parser says so
                    }
                }
                if c == '\'' {
                    if let Some(name) = whole_placeholder(&literal) {
                        out.truncate(literal_start);
                        out.push_str(&format!("${}", number(name)));
                    } else if quoted_placeholder(&literal) {
                        return Err(invalid(
                            field,
                            "quoted_placeholder",
                            "a {placeholder} mixed with other text inside quotes is plain text; \
                             write the placeholder alone ('{department}' or {department}) and \
                             join text with || (name LIKE {prefix} || '%')",
                        ));
                    }
                }
            }
            '$' => {
                return Err(invalid(
                    field,
                    "no_parameters",
                    "`$` is not allowed in a filter: write caller values as {placeholder}",
                ))
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for x in chars.by_ref() {
                    if x == '}' {
                        closed = true;
                        break;
                    }
                    name.push(x);
                }
                let name = name.trim().to_string();
                if !closed || !placeholder_name_ok(&name) {
                    return Err(invalid(
                        field,
                        "unknown_placeholder",
                        format!(
                            "`{{{name}` is not a placeholder: use one of {} or a user attribute name ({{department}})",
                            BUILTIN_PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                        ),
                    ));
                }
                out.push_str(&format!("${}", number(name)));
            }
            _ => out.push(c),
        }
    }
    Ok((out, names))
}

/// The placeholder a literal consists of, as in `'{department}'`.
fn whole_placeholder(literal: &str) -> Option<String> {
    let name = literal.strip_prefix('{')?.strip_suffix('}')?.trim();
    (!name.contains(['{', '}']) && placeholder_name_ok(name)).then(|| name.to_string())
}

fn quoted_placeholder(literal: &str) -> bool {
    literal.split('{').skip(1).any(|rest| {
        rest.split_once('}')
            .is_some_and(|(name, _)| placeholder_name_ok(name.trim()))
    })
}

/// No subqueries, no tables, no impure or aggregate functions, no columns of another table.
fn check_pure(field: &str, expr: &Expr, table: &str) -> Result<()> {
    if visit_relations(expr, |_| ControlFlow::Break(())).is_break() {
        return Err(subquery(field));
    }
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, table),
    };
    let verdict = visit_expressions(expr, |e| {
        let refusal = match e {
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                Some(subquery(field))
            }
            Expr::Function(f) => {
                let fname = f.name.to_string().to_ascii_lowercase();
                if !PURE_FUNCTIONS.contains(&fname.as_str()) {
                    Some(invalid(
                        field,
                        "function_not_allowed",
                        format!(
                            "`{fname}` is not allowed in a filter (only deterministic functions without side effects: {})",
                            PURE_FUNCTIONS.join(", ")
                        ),
                    ))
                } else if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
                    Some(invalid(
                        field,
                        "function_not_allowed",
                        format!("`{fname}` may not be used as a window or aggregate in a filter"),
                    ))
                } else if matches!(f.args, FunctionArguments::Subquery(_)) {
                    Some(subquery(field))
                } else {
                    None
                }
            }
            Expr::CompoundIdentifier(parts) => {
                let p: Vec<String> = parts.iter().map(|i| i.value.to_ascii_lowercase()).collect();
                let ours = match p.as_slice() {
                    [t, _col] => t == name,
                    [s, t, _col] => t == name && schema == Some(s.as_str()),
                    _ => false,
                };
                (!ours).then(|| {
                    invalid(
                        field,
                        "other_table",
                        format!(
                            "`{}` is not a column of `{table}`: a filter sees only its own table's columns",
                            p.join(".")
                        ),
                    )
                })
            }
            Expr::Value(ValueWithSpan {
                value: Value::DollarQuotedString(_),
                ..
            }) => Some(invalid(
                field,
                "no_parameters",
                "dollar-quoted strings are not allowed in a filter",
            )),
            _ => None,
        };
        match refusal {
            Some(err) => ControlFlow::Break(err),
            None => ControlFlow::Continue(()),
        }
    });
    match verdict {
        ControlFlow::Break(err) => Err(err),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn subquery(field: &str) -> Error {
    invalid(
        field,
        "subquery",
        "a filter may not contain subqueries or read other tables",
    )
}

/// Whether the expression's top level yields a boolean (or may: a column, a CASE, a
/// function). Arithmetic, strings and numbers at the top are refused.
fn boolean_shaped(expr: &Expr) -> bool {
    use BinaryOperator as B;
    match expr {
        Expr::BinaryOp { op, .. } => matches!(
            op,
            B::Eq
                | B::NotEq
                | B::Lt
                | B::LtEq
                | B::Gt
                | B::GtEq
                | B::And
                | B::Or
                | B::Xor
                | B::PGRegexMatch
                | B::PGRegexIMatch
                | B::PGRegexNotMatch
                | B::PGRegexNotIMatch
                | B::PGLikeMatch
                | B::PGILikeMatch
                | B::PGNotLikeMatch
                | B::PGNotILikeMatch
        ),
        Expr::UnaryOp { op, .. } => *op == UnaryOperator::Not,
        Expr::Nested(e) => boolean_shaped(e),
        Expr::Value(v) => matches!(v.value, Value::Boolean(_)),
        Expr::Cast { data_type, .. } => matches!(data_type, DataType::Boolean | DataType::Bool),
        Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotUnknown(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::InList { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::SimilarTo { .. }
        | Expr::AnyOp { .. }
        | Expr::AllOp { .. }
        | Expr::Identifier(_)
        | Expr::CompoundIdentifier(_)
        | Expr::Function(_)
        | Expr::Case { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RowFilter> {
        RowFilter::parse("rules[0].filter", text, "orders")
    }

    fn refusal(text: &str) -> String {
        let e = parse(text).unwrap_err();
        assert_eq!(e.details["field"], "rules[0].filter", "{text}");
        e.details["rule"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_quoted_placeholder_is_the_same_bound_parameter() {
        let quoted = parse("department = '{department}' OR owner = '{ user_id }'").unwrap();
        let bare = parse("department = {department} OR owner = {user_id}").unwrap();
        assert_eq!(quoted.placeholders(), ["department", "user_id"]);
        assert_eq!(quoted.placeholders(), bare.placeholders());
        let value = |name: &str| Some(format!("{name}'; DROP TABLE orders; --"));
        let (q, b) = (quoted.bind(2, value), bare.bind(2, value));
        assert_eq!(q.predicate.to_string(), b.predicate.to_string());
        assert_eq!(q.predicate.to_string(), "department = $3 OR owner = $4");
        assert_eq!(q.parameters, b.parameters);
        // The same name quoted and bare is one parameter.
        let mixed = parse("a = '{department}' AND b = {department}").unwrap();
        assert_eq!(mixed.placeholders(), ["department"]);
        // Text that only looks like a placeholder stays text.
        assert!(parse("note = '{}'").is_ok());
        assert!(parse("note = '{not a placeholder}'").is_ok());
    }

    #[test]
    fn accepts_pure_expressions() {
        for ok in [
            "department = {department}",
            "owner_id = {user_id} OR {role} = 'admin'",
            "region IN ('eu', 'us') AND NOT archived",
            "lower(email) LIKE '%@example.com' AND amount BETWEEN 0 AND 100",
            "orders.department = {department}",
            "created_at > now() - INTERVAL '30 days'",
            "coalesce(team, 'none') = {team} AND deleted_at IS NULL",
            "archived",
            "CASE WHEN {role} = 'analyst' THEN region = 'eu' ELSE true END",
            "name = 'it''s {not a placeholder'",
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok).err());
        }
    }

    #[test]
    fn refuses_everything_else() {
        for (bad, rule) in [
            ("", "required"),
            ("department = ", "sql_syntax"),
            ("a = 1; DROP TABLE orders", "single_expression"),
            ("a = 1 b", "single_expression"),
            ("id IN (SELECT id FROM secrets)", "subquery"),
            ("EXISTS (SELECT 1 FROM users)", "subquery"),
            ("(SELECT count(*) FROM users) > 0", "subquery"),
            ("pg_sleep(10) IS NULL", "function_not_allowed"),
            ("random() < 0.5", "function_not_allowed"),
            ("nextval('s') > 0", "function_not_allowed"),
            ("read_csv('/etc/passwd') IS NULL", "function_not_allowed"),
            ("count(*) > 1", "function_not_allowed"),
            ("lower(a) OVER () = 'x'", "function_not_allowed"),
            ("users.id = {user_id}", "other_table"),
            ("other.orders.id = 1", "other_table"),
            ("id = $1", "no_parameters"),
            ("note = $$x$$", "no_parameters"),
            ("department = 'x-{department}'", "quoted_placeholder"),
            ("department LIKE '{department}%'", "quoted_placeholder"),
            ("department = {}", "unknown_placeholder"),
            ("department = {1st}", "unknown_placeholder"),
            ("department = {user id}", "unknown_placeholder"),
            ("department = {department", "unknown_placeholder"),
            ("amount + 1", "boolean"),
            ("'yes'", "boolean"),
            ("42", "boolean"),
        ] {
            assert_eq!(refusal(bad), rule, "{bad}");
        }
        assert_eq!(refusal(&"a = 1 AND ".repeat(500)), "max_length");
    }

    #[test]
    fn binds_values_as_parameters() {
        let f = parse("department = {department} AND (owner = {user_id} OR {department} = 'all')")
            .unwrap();
        assert_eq!(f.placeholders(), ["department", "user_id"]);
        let value = |name: &str| match name {
            "department" => Some("sales'; DROP TABLE x; --".to_string()),
            "user_id" => Some("usr_1".to_string()),
            _ => None,
        };
        let b = f.bind(0, value);
        assert_eq!(
            b.predicate.to_string(),
            "department = $1 AND (owner = $2 OR $1 = 'all')"
        );
        assert_eq!(b.parameters, ["sales'; DROP TABLE x; --", "usr_1"]);
        assert!(b.missing.is_empty());
        let shifted = f.bind(3, value);
        assert_eq!(
            shifted.predicate.to_string(),
            "department = $4 AND (owner = $5 OR $4 = 'all')"
        );
        let missing = f.bind(0, |name| (name == "user_id").then(|| "usr_1".to_string()));
        assert_eq!(missing.predicate.to_string(), "false");
        assert!(missing.parameters.is_empty());
        assert_eq!(missing.missing, ["department"]);
    }

    #[test]
    fn schema_qualified_own_columns() {
        let f = RowFilter::parse("f", "crm.orders.region = 'eu'", "crm.orders");
        assert!(f.is_ok());
        let other = RowFilter::parse("f", "ops.orders.region = 'eu'", "crm.orders");
        assert_eq!(other.unwrap_err().details["rule"], "other_table");
    }
}
