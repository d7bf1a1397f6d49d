//! Semi-structured values: Snowflake's `VARIANT`, `OBJECT` and `ARRAY` are JSON in DuckDB and
//! `jsonb` in PostgreSQL; colon and bracket paths, `GET`/`GET_PATH`, the constructors and
//! `FLATTEN` are written with each engine's JSON functions.

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, JsonPath, JsonPathElem, TableAlias, TableAliasColumnDef,
    TableFactor, Value,
};

use super::template::{expr, slots};
use super::types::Ty;
use super::{string_literal, unsupported};
use crate::error::Result;
use crate::query::Dialect;

/// One step of a path: an object key or an array index (either may be computed).
#[derive(Debug, Clone)]
pub(super) enum Step {
    Key(Expr),
    Index(Expr),
}

/// The steps of a colon/bracket path (`v:a.b[0]`, `v['a']`).
pub(super) fn steps(path: &JsonPath) -> Result<Vec<Step>> {
    path.path
        .iter()
        .map(|elem| {
            Ok(match elem {
                JsonPathElem::Dot { key, .. } => {
                    Step::Key(Expr::value(Value::SingleQuotedString(key.clone())))
                }
                JsonPathElem::Bracket { key } | JsonPathElem::ColonBracket { key } => {
                    subscript(key.clone())
                }
            })
        })
        .collect()
}

/// A bracket's content: a string is a key, anything else an index.
pub(super) fn subscript(key: Expr) -> Step {
    if string_literal(&key).is_some() {
        Step::Key(key)
    } else {
        Step::Index(key)
    }
}

/// The steps of `GET_PATH`'s path text (`'a.b[0]'`, `'a["x y"]'`).
pub(super) fn parse_path(text: &str) -> Result<Vec<Step>> {
    let bad = || unsupported(format!("the path '{text}'"));
    let mut out = Vec::new();
    let mut rest = text.trim();
    let key = |k: &str| Step::Key(Expr::value(Value::SingleQuotedString(k.to_string())));
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(bad)?;
            let inside = after[..end].trim();
            if let Some(quoted) = inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                out.push(key(quoted));
            } else if let Some(quoted) =
                inside.strip_prefix('\'').and_then(|s| s.strip_suffix('\''))
            {
                out.push(key(quoted));
            } else {
                let n: i64 = inside.parse().map_err(|_| bad())?;
                out.push(Step::Index(Expr::value(Value::Number(
                    n.to_string(),
                    false,
                ))));
            }
            rest = &after[end + 1..];
        } else {
            rest = rest.strip_prefix('.').unwrap_or(rest);
            if let Some(after) = rest.strip_prefix('"') {
                let end = after.find('"').ok_or_else(bad)?;
                out.push(key(&after[..end]));
                rest = &after[end + 1..];
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                if end == 0 {
                    return Err(bad());
                }
                out.push(key(&rest[..end]));
                rest = &rest[end..];
            }
        }
    }
    Ok(out)
}

/// `v` followed by `steps`, as a semi-structured value.
pub(super) fn access(target: Dialect, v: Expr, v_ty: Ty, steps: &[Step]) -> Expr {
    match target {
        Dialect::DuckDb => expr(target, "json_extract(_0, _1)", &[v, duck_path(steps)]),
        Dialect::Postgres => {
            let mut args = vec![as_jsonb(v, v_ty)];
            args.extend(steps.iter().map(pg_step));
            expr(
                target,
                &format!("jsonb_extract_path({})", slots(args.len(), ", ")),
                &args,
            )
        }
    }
}

/// A semi-structured value as text, as Snowflake's `::STRING` gives it: a string without its
/// quotes, anything else as JSON text.
pub(super) fn as_text(target: Dialect, v: Expr) -> Expr {
    match target {
        Dialect::DuckDb => match v {
            Expr::Function(f) if super::name_of(&f.name).as_deref() == Some("JSON_EXTRACT") => {
                let mut f = f;
                f.name = sqlparser::ast::ObjectName::from(vec![Ident::new("json_extract_string")]);
                Expr::Function(f)
            }
            other => expr(target, "json_extract_string(_0, '$')", &[other]),
        },
        Dialect::Postgres => match v {
            Expr::Function(f)
                if super::name_of(&f.name).as_deref() == Some("JSONB_EXTRACT_PATH") =>
            {
                let mut f = f;
                f.name =
                    sqlparser::ast::ObjectName::from(vec![Ident::new("jsonb_extract_path_text")]);
                Expr::Function(f)
            }
            other => Expr::BinaryOp {
                left: Box::new(super::template::operand(other)),
                op: BinaryOperator::HashLongArrow,
                right: Box::new(Expr::value(Value::SingleQuotedString("{}".into()))),
            },
        },
    }
}

/// `v` as `jsonb` unless the statement shows it is already.
fn as_jsonb(v: Expr, ty: Ty) -> Expr {
    if ty == Ty::Json {
        v
    } else {
        expr(Dialect::Postgres, "CAST(_0 AS JSONB)", &[v])
    }
}

/// DuckDB's JSONPath for `steps`: a constant when every step is, else built at run time.
fn duck_path(steps: &[Step]) -> Expr {
    let mut constant = String::from("$");
    let mut parts: Vec<Expr> = Vec::new();
    let mut dynamic = false;
    for step in steps {
        match step {
            Step::Key(k) => match string_literal(k) {
                Some(k) => constant.push_str(&format!(
                    ".\"{}\"",
                    k.replace('\\', "\\\\").replace('"', "\\\"")
                )),
                None => {
                    dynamic = true;
                    parts.push(Expr::value(Value::SingleQuotedString(
                        std::mem::take(&mut constant) + ".\"",
                    )));
                    parts.push(expr(
                        Dialect::DuckDb,
                        "replace(replace(CAST(_0 AS VARCHAR), '\\', '\\\\'), '\"', '\\\"')",
                        std::slice::from_ref(k),
                    ));
                    constant.push('"');
                }
            },
            Step::Index(i) => match i {
                Expr::Value(v) if matches!(v.value, Value::Number(..)) => {
                    constant.push_str(&format!("[{}]", v.value));
                }
                other => {
                    dynamic = true;
                    parts.push(Expr::value(Value::SingleQuotedString(
                        std::mem::take(&mut constant) + "[",
                    )));
                    parts.push(expr(
                        Dialect::DuckDb,
                        "CAST(CAST(_0 AS BIGINT) AS VARCHAR)",
                        std::slice::from_ref(other),
                    ));
                    constant.push(']');
                }
            },
        }
    }
    if !dynamic {
        return Expr::value(Value::SingleQuotedString(constant));
    }
    parts.push(Expr::value(Value::SingleQuotedString(constant)));
    expr(Dialect::DuckDb, &slots(parts.len(), " || "), &parts)
}

/// A step as an argument of `jsonb_extract_path` (indexes as text, which it reads as such).
fn pg_step(step: &Step) -> Expr {
    match step {
        Step::Key(k) => match string_literal(k) {
            Some(_) => k.clone(),
            None => expr(
                Dialect::Postgres,
                "CAST(_0 AS TEXT)",
                std::slice::from_ref(k),
            ),
        },
        Step::Index(Expr::Value(v)) if matches!(v.value, Value::Number(..)) => {
            Expr::value(Value::SingleQuotedString(v.value.to_string()))
        }
        Step::Index(i) => expr(
            Dialect::Postgres,
            "CAST(CAST(_0 AS BIGINT) AS TEXT)",
            std::slice::from_ref(i),
        ),
    }
}

/// `PARSE_JSON(text)`.
pub(super) fn parse(target: Dialect, text: Expr, try_: bool) -> Expr {
    match (target, try_) {
        (Dialect::DuckDb, false) => expr(target, "CAST(_0 AS JSON)", &[text]),
        (Dialect::DuckDb, true) => expr(
            target,
            "CASE WHEN json_valid(_0) THEN CAST(_0 AS JSON) END",
            &[text],
        ),
        (Dialect::Postgres, false) => expr(target, "CAST(_0 AS JSONB)", &[text]),
        (Dialect::Postgres, true) => super::try_cast(target, text, "JSONB"),
    }
}

/// Any value as a semi-structured one (`TO_VARIANT`, a cast to `VARIANT`).
pub(super) fn to_json(target: Dialect, v: Expr, ty: Ty) -> Expr {
    if ty == Ty::Json {
        return v;
    }
    match target {
        Dialect::DuckDb => expr(target, "to_json(_0)", &[v]),
        Dialect::Postgres => expr(target, "to_jsonb(_0)", &[v]),
    }
}

/// `OBJECT_CONSTRUCT(k1, v1, …)`: keys with a NULL value are left out (unless `keep_null`).
pub(super) fn object(target: Dialect, args: Vec<Expr>, keep_null: bool) -> Result<Expr> {
    if !args.len().is_multiple_of(2) {
        return Err(unsupported(
            "OBJECT_CONSTRUCT with an odd number of arguments (it takes key, value pairs)",
        ));
    }
    let (to_json, build, agg, empty) = match target {
        Dialect::DuckDb => ("to_json", "json_object", "json_group_object", "'{}'"),
        Dialect::Postgres => (
            "to_jsonb",
            "jsonb_build_object",
            "jsonb_object_agg",
            "CAST('{}' AS JSONB)",
        ),
    };
    if args.is_empty() {
        return Ok(expr(
            target,
            &format!("CAST({empty} AS {})", json_name(target)),
            &[],
        ));
    }
    let args = typed_literals(target, args);
    if keep_null {
        let pairs: Vec<String> = (0..args.len() / 2)
            .map(|i| format!("_{}, {to_json}(_{})", 2 * i, 2 * i + 1))
            .collect();
        return Ok(expr(
            target,
            &format!("{build}({})", pairs.join(", ")),
            &args,
        ));
    }
    let rows: Vec<String> = (0..args.len() / 2)
        .map(|i| format!("(CAST(_{} AS VARCHAR), {to_json}(_{}))", 2 * i, 2 * i + 1))
        .collect();
    Ok(expr(
        target,
        &format!(
            "(SELECT CAST(COALESCE({agg}(enclave_k, enclave_v), {empty}) AS {json}) \
             FROM (VALUES {}) AS enclave_pairs(enclave_k, enclave_v) WHERE enclave_v IS NOT NULL)",
            rows.join(", "),
            json = json_name(target)
        ),
        &args,
    ))
}

fn json_name(target: Dialect) -> &'static str {
    match target {
        Dialect::DuckDb => "JSON",
        Dialect::Postgres => "JSONB",
    }
}

/// PostgreSQL's JSON constructors cannot tell the type of a bare string literal: it is text.
fn typed_literals(target: Dialect, args: Vec<Expr>) -> Vec<Expr> {
    if target != Dialect::Postgres {
        return args;
    }
    args.into_iter()
        .map(|a| match string_literal(&a) {
            Some(_) => expr(target, "CAST(_0 AS TEXT)", &[a]),
            None => a,
        })
        .collect()
}

/// `ARRAY_CONSTRUCT(…)`.
pub(super) fn array(target: Dialect, args: Vec<Expr>) -> Expr {
    let args = typed_literals(target, args);
    let function = match target {
        Dialect::DuckDb => "json_array",
        Dialect::Postgres => "jsonb_build_array",
    };
    if args.is_empty() {
        return expr(target, &format!("CAST('[]' AS {})", json_name(target)), &[]);
    }
    expr(
        target,
        &format!("{function}({})", slots(args.len(), ", ")),
        &args,
    )
}

/// `ARRAY_SIZE(a)`.
pub(super) fn array_size(target: Dialect, a: Expr, ty: Ty) -> Expr {
    match target {
        Dialect::DuckDb => expr(target, "json_array_length(_0)", &[a]),
        Dialect::Postgres => expr(target, "jsonb_array_length(_0)", &[as_jsonb(a, ty)]),
    }
}

/// `ARRAY_TO_STRING(a, separator)` over a semi-structured array.
pub(super) fn array_to_string(target: Dialect, a: Expr, ty: Ty, separator: Expr) -> Expr {
    match target {
        Dialect::DuckDb => expr(
            target,
            "array_to_string(json_extract_string(_0, '$[*]'), _1)",
            &[a, separator],
        ),
        Dialect::Postgres => expr(
            target,
            "(SELECT string_agg(enclave_e, _1 ORDER BY enclave_i) \
             FROM jsonb_array_elements_text(_0) WITH ORDINALITY AS enclave_a(enclave_e, enclave_i))",
            &[as_jsonb(a, ty), separator],
        ),
    }
}

/// `FLATTEN(input => v)` as a lateral derived table with Snowflake's columns: `seq`, `key`
/// (objects), `path`, `index` (arrays), `value` and `this`.
pub(super) fn flatten(
    target: Dialect,
    input: Expr,
    ty: Ty,
    alias: Option<TableAlias>,
) -> TableFactor {
    let template = match target {
        Dialect::DuckDb => {
            "(SELECT 1 AS seq, enclave_k AS key, enclave_k AS path, CAST(NULL AS BIGINT) AS index, \
                     json_extract(_0, '$.\"' || replace(replace(enclave_k, '\\', '\\\\'), '\"', '\\\"') || '\"') AS value, \
                     CAST(_0 AS JSON) AS this \
              FROM (SELECT unnest(CASE WHEN json_type(_0) = 'OBJECT' THEN json_keys(_0) ELSE [] END) AS enclave_k) \
              UNION ALL \
              SELECT 1, NULL, '[' || enclave_i || ']', enclave_i, json_extract(_0, '$[' || enclave_i || ']'), CAST(_0 AS JSON) \
              FROM (SELECT unnest(range(CASE WHEN json_type(_0) = 'ARRAY' THEN CAST(json_array_length(_0) AS BIGINT) ELSE 0 END)) AS enclave_i))"
        }
        Dialect::Postgres => {
            "(SELECT 1 AS seq, enclave_o.key AS key, enclave_o.key AS path, CAST(NULL AS BIGINT) AS index, \
                     enclave_o.value AS value, _0 AS this \
              FROM jsonb_each(CASE WHEN jsonb_typeof(_0) = 'object' THEN _0 END) AS enclave_o \
              UNION ALL \
              SELECT 1, NULL, '[' || (enclave_a.n - 1) || ']', enclave_a.n - 1, enclave_a.value, _0 \
              FROM jsonb_array_elements(CASE WHEN jsonb_typeof(_0) = 'array' THEN _0 END) \
                   WITH ORDINALITY AS enclave_a(value, n))"
        }
    };
    let input = match target {
        Dialect::DuckDb => input,
        Dialect::Postgres => as_jsonb(input, ty),
    };
    let Expr::Subquery(query) = expr(target, template, &[input]) else {
        unreachable!("the FLATTEN template is a subquery")
    };
    TableFactor::Derived {
        lateral: true,
        subquery: query,
        alias: Some(alias.unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::new("flatten"),
            columns: Vec::<TableAliasColumnDef>::new(),
            at: None,
        })),
        sample: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_text_reads_keys_indexes_and_quotes() {
        let shown: Vec<String> = parse_path("a.b[0][\"x y\"]")
            .unwrap()
            .into_iter()
            .map(|s| match s {
                Step::Key(k) => format!("key {k}"),
                Step::Index(i) => format!("index {i}"),
            })
            .collect();
        assert_eq!(shown, ["key 'a'", "key 'b'", "index 0", "key 'x y'"]);
        assert!(parse_path("a[").is_err());
        assert!(parse_path("a[x]").is_err());
    }

    #[test]
    fn duckdb_paths_are_constant_when_they_can_be() {
        let steps = parse_path("a.\"b c\"[1]").unwrap();
        assert_eq!(duck_path(&steps).to_string(), r#"'$."a"."b c"[1]'"#);
    }
}
