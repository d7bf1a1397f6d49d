//! Stage 8, translate: Snowflake-style SQL rewritten on the syntax tree into the SQL of the
//! environment's engine (DuckDB or PostgreSQL), with the same meaning. Each construct has one
//! translation per engine (`docs/sql.md` lists them); a Snowflake construct that cannot be
//! written faithfully is refused with `0A000` naming it — never run with another meaning.
//!
//! Translation is a property of the statement's text, so it runs once per text, at parse
//! (and the gateway caches it by the text's hash); the policy rewrite (stage 7) then applies
//! to the translated tree and is the last change made to it: the statement that runs is the
//! one the policy rewrite produced.

mod clauses;
mod dates;
mod functions;
mod json;
mod template;
mod types;

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AlterTableOperation, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    ObjectName, ObjectNamePart, Query, Statement, TableFactor, Value, Visit, VisitMut, Visitor,
    VisitorMut,
};

use crate::error::{Error, Result};
use crate::query::sqlstate::with_sqlstate;
use crate::query::Dialect;
use types::Ty;

/// Translates `statement` in place for the `target` engine.
pub(crate) fn translate(statement: &mut Statement, target: Dialect) -> Result<()> {
    let mut translator = Translator {
        target,
        json_columns: flatten_columns(statement),
    };
    match statement.visit(&mut translator) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// A Snowflake construct this engine cannot be given with the same meaning.
pub(super) fn unsupported(what: impl std::fmt::Display) -> Error {
    with_sqlstate(
        Error::validation(
            "sql",
            "unsupported",
            format!("{what} is not supported: it cannot be translated for this environment's engine with Snowflake's meaning"),
        ),
        "0A000",
    )
}

/// A function's name, upper-cased, when it is unqualified (Snowflake's built-ins are).
pub(super) fn name_of(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] if i.quote_style.is_none() => {
            Some(i.value.to_ascii_uppercase())
        }
        _ => None,
    }
}

/// The text of a string literal.
pub(super) fn string_literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::DoubleQuotedString(s)
            | Value::DollarQuotedString(sqlparser::ast::DollarQuotedString { value: s, .. }) => {
                Some(s.clone())
            }
            _ => None,
        },
        Expr::Nested(inner) => string_literal(inner),
        _ => None,
    }
}

/// `TRY_CAST(e AS ty)`: NULL where the value does not convert. PostgreSQL has none; its
/// sessions get `pg_temp.enclave_try_cast` (see the engine), which tries the cast and
/// answers NULL on any error.
pub(super) fn try_cast(target: Dialect, e: Expr, ty: &str) -> Expr {
    match target {
        Dialect::DuckDb => template::expr(target, &format!("TRY_CAST(_0 AS {ty})"), &[e]),
        Dialect::Postgres => template::expr(
            target,
            &format!(
                "CAST(pg_temp.enclave_try_cast(CAST(_0 AS TEXT), CAST(NULL AS {ty})) AS {ty})"
            ),
            &[e],
        ),
    }
}

/// The columns a `FLATTEN` produces that hold semi-structured values (`value`, `this`), by
/// the table alias they are reached through (`None`: unqualified, when a `FLATTEN` has no
/// alias).
#[derive(Default)]
struct FlattenColumns {
    aliases: HashSet<String>,
    unqualified: bool,
}

fn flatten_columns(statement: &Statement) -> FlattenColumns {
    struct Find(FlattenColumns);
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let Some((_, alias)) = flatten_call(factor) {
                match alias {
                    Some(a) => {
                        self.0.aliases.insert(a.name.value.to_ascii_lowercase());
                    }
                    None => self.0.unqualified = true,
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut find = Find(FlattenColumns::default());
    let _ = statement.visit(&mut find);
    find.0
}

/// A `FLATTEN(…)` in FROM, in any of the forms the grammars give it: its arguments and alias.
fn flatten_call(
    factor: &TableFactor,
) -> Option<(Vec<FunctionArg>, Option<&sqlparser::ast::TableAlias>)> {
    match factor {
        TableFactor::TableFunction {
            expr: Expr::Function(f),
            alias,
        } if name_of(&f.name).as_deref() == Some("FLATTEN") => match &f.args {
            FunctionArguments::List(l) => Some((l.args.clone(), alias.as_ref())),
            _ => None,
        },
        TableFactor::Function {
            name, args, alias, ..
        } if name_of(name).as_deref() == Some("FLATTEN") => Some((args.clone(), alias.as_ref())),
        TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } if name_of(name).as_deref() == Some("FLATTEN") => {
            Some((args.args.clone(), alias.as_ref()))
        }
        _ => None,
    }
}

struct Translator {
    target: Dialect,
    json_columns: FlattenColumns,
}

impl Translator {
    /// What the statement shows of `e`'s type.
    fn ty(&self, e: &Expr) -> Ty {
        types::infer(e, &|e| self.is_flatten_json(e))
    }

    fn is_flatten_json(&self, e: &Expr) -> bool {
        let json_column =
            |name: &str| matches!(name.to_ascii_lowercase().as_str(), "value" | "this");
        match e {
            Expr::Identifier(i) => self.json_columns.unqualified && json_column(&i.value),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [alias, column] => {
                    self.json_columns
                        .aliases
                        .contains(&alias.value.to_ascii_lowercase())
                        && json_column(&column.value)
                }
                _ => false,
            },
            _ => false,
        }
    }

    fn expression(&self, e: &Expr) -> Result<Option<Expr>> {
        let t = self.target;
        Ok(match e {
            Expr::Function(f) => {
                if name_of(&f.name).as_deref() == Some("FLATTEN") {
                    // Translated with its table factor; anywhere else it is refused at the end.
                    return Ok(None);
                }
                self.call(f)?
            }
            Expr::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if format.is_some() {
                    return Ok(None);
                }
                self.cast(kind.clone(), expr, data_type)?
            }
            Expr::JsonAccess { value, path } => {
                let steps = json::steps(path)?;
                Some(json::access(t, (**value).clone(), self.ty(value), &steps))
            }
            Expr::CompoundFieldAccess { root, access_chain } if self.ty(root) == Ty::Json => {
                let steps = access_chain
                    .iter()
                    .map(|a| match a {
                        sqlparser::ast::AccessExpr::Subscript(
                            sqlparser::ast::Subscript::Index { index },
                        ) => Ok(json::subscript(index.clone())),
                        sqlparser::ast::AccessExpr::Dot(Expr::Identifier(i)) => {
                            Ok(json::Step::Key(Expr::value(Value::SingleQuotedString(
                                i.value.clone(),
                            ))))
                        }
                        other => Err(unsupported(format!("the path step {other}"))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Some(json::access(t, (**root).clone(), Ty::Json, &steps))
            }
            Expr::RLike {
                negated,
                expr,
                pattern,
                ..
            } => Some(self.regexp_like(&[(**expr).clone(), (**pattern).clone()], *negated)?),
            Expr::Like {
                negated,
                any: true,
                expr,
                pattern,
                escape_char,
            }
            | Expr::ILike {
                negated,
                any: true,
                expr,
                pattern,
                escape_char,
            } => {
                let operator = if matches!(e, Expr::Like { .. }) {
                    "LIKE"
                } else {
                    "ILIKE"
                };
                Some(clauses::like_any(
                    t,
                    operator,
                    *negated,
                    expr,
                    pattern,
                    escape_char.is_some(),
                )?)
            }
            Expr::BinaryOp { left, op, right } => self.binary(left, op, right),
            // `[1, 2]` is Snowflake's array constant; PostgreSQL's arrays are `ARRAY[…]`.
            Expr::Array(array) if !array.named && t == Dialect::Postgres => {
                Some(json::array(t, array.elem.clone()))
            }
            _ => None,
        })
    }

    /// A cast: Snowflake's types in the engine's spelling; a semi-structured value cast to a
    /// scalar type is its text (`v:name::STRING` is `ada`, not `"ada"`); any value cast to
    /// `VARIANT` becomes one.
    fn cast(&self, kind: CastKind, inner: &Expr, data_type: &DataType) -> Result<Option<Expr>> {
        let t = self.target;
        let mapped = types::engine_type(data_type, t);
        let engine_type = mapped.clone().unwrap_or_else(|| data_type.clone());
        let to = types::ty_of(&engine_type);
        let from = self.ty(inner);
        if to == Ty::Json {
            return Ok(mapped.map(|_| json::to_json(t, inner.clone(), from)));
        }
        let (value, as_text) = if from == Ty::Json {
            (json::as_text(t, inner.clone()), true)
        } else {
            (inner.clone(), false)
        };
        if kind == CastKind::TryCast && t == Dialect::Postgres {
            return Ok(Some(try_cast(t, value, &engine_type.to_string())));
        }
        if as_text
            && to == Ty::Text
            && matches!(engine_type, DataType::Varchar(None) | DataType::Text)
        {
            return Ok(Some(value));
        }
        if mapped.is_none() && !as_text {
            return Ok(None);
        }
        Ok(Some(Expr::Cast {
            kind,
            expr: Box::new(template::operand(value)),
            data_type: engine_type,
            format: None,
        }))
    }
}

impl VisitorMut for Translator {
    type Break = Error;

    fn pre_visit_statement(&mut self, statement: &mut Statement) -> ControlFlow<Error> {
        let t = self.target;
        let map = |dt: &mut DataType| {
            if let Some(mapped) = types::engine_type(dt, t) {
                *dt = mapped;
            }
        };
        match statement {
            Statement::CreateTable(create) => {
                for column in &mut create.columns {
                    map(&mut column.data_type);
                }
            }
            Statement::AlterTable(alter) => {
                for op in &mut alter.operations {
                    if let AlterTableOperation::AddColumn { column_def, .. } = op {
                        map(&mut column_def.data_type);
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, statement: &mut Statement) -> ControlFlow<Error> {
        // A FLATTEN left over is one outside FROM.
        let mut left: Option<Error> = None;
        let _ = sqlparser::ast::visit_expressions(statement, |e| {
            if let Expr::Function(f) = e {
                if name_of(&f.name).as_deref() == Some("FLATTEN") {
                    left = Some(unsupported(
                        "FLATTEN outside FROM (write FROM TABLE(FLATTEN(…)) or LATERAL FLATTEN(…))",
                    ));
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        match left {
            Some(e) => ControlFlow::Break(e),
            None => ControlFlow::Continue(()),
        }
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        match self.expression(e) {
            Ok(Some(translated)) => {
                *e = translated;
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(err) => ControlFlow::Break(err),
        }
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<Error> {
        match clauses::query(self.target, query) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }

    fn post_visit_select(&mut self, select: &mut sqlparser::ast::Select) -> ControlFlow<Error> {
        if self.target == Dialect::Postgres {
            clauses::type_null_columns(select, &|e| self.ty(e));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
        if let Some((args, alias)) = flatten_call(factor) {
            let alias = alias.cloned();
            return match self.flatten(args) {
                Ok((input, ty)) => {
                    *factor = json::flatten(self.target, input, ty, alias);
                    ControlFlow::Continue(())
                }
                Err(e) => ControlFlow::Break(e),
            };
        }
        clauses::derived_names(self.target, factor);
        ControlFlow::Continue(())
    }
}

impl Translator {
    /// `FLATTEN`'s input (after its `path`), from its arguments; the options whose meaning
    /// a lateral join of the elements does not have are refused.
    fn flatten(&self, args: Vec<FunctionArg>) -> Result<(Expr, Ty)> {
        let mut input = None;
        let mut path = None;
        for (i, arg) in args.into_iter().enumerate() {
            let (name, value) = match arg {
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                }
                | FunctionArg::ExprNamed {
                    name: Expr::Identifier(name),
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => (name.value.to_ascii_lowercase(), e),
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) if i == 0 => ("input".into(), e),
                other => return Err(unsupported(format!("the FLATTEN argument {other}"))),
            };
            let flag = |v: &Expr| matches!(v, Expr::Value(x) if x.value == Value::Boolean(true));
            match name.as_str() {
                "input" => input = Some(value),
                "path" => path = Some(value),
                "outer" if flag(&value) => return Err(unsupported("FLATTEN with outer => TRUE")),
                "recursive" if flag(&value) => {
                    return Err(unsupported("FLATTEN with recursive => TRUE"))
                }
                "outer" | "recursive" => {}
                "mode"
                    if string_literal(&value).is_some_and(|m| m.eq_ignore_ascii_case("both")) => {}
                other => return Err(unsupported(format!("FLATTEN with {other} => {value}"))),
            }
        }
        let input = input.ok_or_else(|| unsupported("FLATTEN without input"))?;
        let ty = self.ty(&input);
        Ok(match path {
            None => (input, ty),
            Some(p) => {
                let text = string_literal(&p)
                    .ok_or_else(|| unsupported("FLATTEN with a computed path"))?;
                let steps = json::parse_path(&text)?;
                (json::access(self.target, input, ty, &steps), Ty::Json)
            }
        })
    }
}

#[cfg(test)]
mod tests;
