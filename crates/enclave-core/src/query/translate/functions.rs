//! Snowflake's functions, each written as the engine's SQL with the same meaning. A call
//! this module does not name is left as it is (it may be the engine's own); a Snowflake form
//! it cannot write faithfully is refused with `0A000`.

use sqlparser::ast::{
    AccessExpr, BinaryOperator, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArgumentList, FunctionArguments, Ident, NullTreatment,
    ObjectName, OrderByExpr, OrderBySort, Subscript, Value, WindowFrame, WindowFrameBound,
    WindowFrameUnits, WindowType,
};

use super::dates::{self, Part};
use super::json::{self, Step};
use super::template::{expr, slots};
use super::types::Ty;
use super::{string_literal, try_cast, unsupported, Translator};
use crate::error::Result;
use crate::query::Dialect;

/// The arguments of a plain call `f(a, b, …)`: `None` when it has named or `*` arguments.
fn positional(f: &Function) -> Option<Vec<Expr>> {
    let FunctionArguments::List(list) = &f.args else {
        return match &f.args {
            FunctionArguments::None => Some(vec![]),
            _ => None,
        };
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Whether the call is a plain scalar call (no `DISTINCT`, `OVER`, `FILTER`, clauses).
fn scalar(f: &Function) -> bool {
    let plain_list = match &f.args {
        FunctionArguments::List(l) => l.duplicate_treatment.is_none() && l.clauses.is_empty(),
        FunctionArguments::None => true,
        FunctionArguments::Subquery(_) => false,
    };
    plain_list
        && f.over.is_none()
        && f.filter.is_none()
        && f.within_group.is_empty()
        && f.null_treatment.is_none()
        && matches!(f.parameters, FunctionArguments::None)
}

fn wrong_arity(name: &str, expected: &str) -> crate::error::Error {
    unsupported(format!("{name} with other than {expected} arguments"))
}

fn int(n: i64) -> Expr {
    Expr::value(Value::Number(n.to_string(), false))
}

fn text(s: &str) -> Expr {
    Expr::value(Value::SingleQuotedString(s.to_string()))
}

impl Translator {
    /// The translation of a function call, if the function is Snowflake's.
    pub(super) fn call(&self, f: &Function) -> Result<Option<Expr>> {
        let Some(name) = super::name_of(&f.name) else {
            return Ok(None);
        };
        let t = self.target;
        if let Some(e) = self.aggregate(&name, f)? {
            return Ok(Some(e));
        }
        if f.null_treatment.is_some() || has_null_treatment_clause(f) {
            return self.ignore_nulls(&name, f);
        }
        if !scalar(f) {
            return Ok(None);
        }
        let Some(args) = positional(f) else {
            return Ok(match name.as_str() {
                "OBJECT_CONSTRUCT" | "OBJECT_CONSTRUCT_KEEP_NULL" | "ARRAY_CONSTRUCT" => {
                    return Err(unsupported(format!("{name} with * or named arguments")))
                }
                _ => None,
            });
        };
        let n = args.len();
        let ty = |i: usize| self.ty(&args[i]);
        let e = |template: &str| Some(expr(t, template, &args));
        Ok(match (name.as_str(), n) {
            // Conditional expressions.
            ("IFF", 3) => e("CASE WHEN _0 THEN _1 ELSE _2 END"),
            ("NVL" | "IFNULL", 2) => e("COALESCE(_0, _1)"),
            ("NVL2", 3) => e("CASE WHEN _0 IS NOT NULL THEN _1 ELSE _2 END"),
            ("ZEROIFNULL", 1) => e("COALESCE(_0, 0)"),
            ("NULLIFZERO", 1) => e("NULLIF(_0, 0)"),
            ("DIV0", 2) => Some(expr(
                t,
                "CASE WHEN _1 = 0 THEN 0 ELSE _2 END",
                &[args[0].clone(), args[1].clone(), self.divide(&args[0], &args[1])],
            )),
            ("DIV0NULL", 2) => Some(expr(
                t,
                "CASE WHEN _1 = 0 OR _1 IS NULL THEN 0 ELSE _2 END",
                &[args[0].clone(), args[1].clone(), self.divide(&args[0], &args[1])],
            )),
            ("DECODE", n) if n >= 3 => {
                let mut template = String::from("CASE");
                let mut i = 1;
                while i + 1 < n {
                    template.push_str(&format!(" WHEN _0 IS NOT DISTINCT FROM _{i} THEN _{}", i + 1));
                    i += 2;
                }
                if i < n {
                    template.push_str(&format!(" ELSE _{i}"));
                }
                template.push_str(" END");
                e(&template)
            }
            ("EQUAL_NULL", 2) => e("(_0 IS NOT DISTINCT FROM _1)"),
            ("BOOLAND", 2) => e("((_0 <> 0) AND (_1 <> 0))"),
            ("BOOLOR", 2) => e("((_0 <> 0) OR (_1 <> 0))"),
            ("BOOLXOR", 2) => e("((_0 <> 0) <> (_1 <> 0))"),
            ("BOOLNOT", 1) => e("(NOT (_0 <> 0))"),
            ("GREATEST" | "LEAST", n) if n >= 2 => {
                // Snowflake's are NULL when any argument is; the engines skip NULLs.
                let any_null = (0..n).map(|i| format!("_{i} IS NULL")).collect::<Vec<_>>();
                e(&format!(
                    "CASE WHEN {} THEN NULL ELSE {name}({}) END",
                    any_null.join(" OR "),
                    slots(n, ", ")
                ))
            }
            ("CONCAT", n) if n >= 1 => {
                let ty = match t {
                    Dialect::DuckDb => "VARCHAR",
                    Dialect::Postgres => "TEXT",
                };
                let parts: Vec<String> = (0..n).map(|i| format!("CAST(_{i} AS {ty})")).collect();
                e(&parts.join(" || "))
            }

            // The clock. DuckDB's embedded build has no time zones (no ICU): its
            // `CURRENT_DATE`/`CURRENT_TIMESTAMP` keywords fail, so they are written with the
            // UTC timestamp it does have (the engines run in UTC).
            ("CURRENT_DATE", 0) if t == Dialect::DuckDb => {
                e("CAST(make_timestamp(epoch_us(get_current_timestamp())) AS DATE)")
            }
            ("CURRENT_TIME" | "LOCALTIME", 0) if t == Dialect::DuckDb => {
                e("CAST(make_timestamp(epoch_us(get_current_timestamp())) AS TIME)")
            }
            ("CURRENT_TIMESTAMP" | "GETDATE" | "SYSTIMESTAMP", 0) if t == Dialect::DuckDb => {
                e("get_current_timestamp()")
            }
            ("SYSDATE" | "LOCALTIMESTAMP", 0) if t == Dialect::DuckDb => {
                e("make_timestamp(epoch_us(get_current_timestamp()))")
            }
            ("GETDATE" | "SYSTIMESTAMP", 0) => e("now()"),
            ("SYSDATE", 0) => e("(now() AT TIME ZONE 'UTC')"),

            // Dates and times.
            ("DATEADD" | "TIMEADD" | "TIMESTAMPADD", 3) => {
                let part = dates::part_of(&args[0], &name)?;
                Some(dates::date_add(t, part, args[1].clone(), args[2].clone(), ty(2))?)
            }
            ("DATEDIFF" | "TIMEDIFF" | "TIMESTAMPDIFF", 3) => {
                let part = dates::part_of(&args[0], &name)?;
                Some(dates::date_diff(t, part, args[1].clone(), args[2].clone())?)
            }
            // An unquoted word is Snowflake's date part unless it names none (then it is a
            // column holding the part, as the engines read it).
            ("DATE_TRUNC", 2) => match (&args[0], string_literal(&args[0])) {
                (Expr::Identifier(i), _) => Part::parse(&i.value)
                    .map(|part| dates::date_trunc(t, part, args[1].clone(), ty(1))),
                (_, Some(_)) => {
                    let part = dates::part_of(&args[0], &name)?;
                    Some(dates::date_trunc(t, part, args[1].clone(), ty(1)))
                }
                _ => None,
            },
            ("LAST_DAY", 1) => Some(dates::last_day(t, Part::Month, args[0].clone())?),
            ("LAST_DAY", 2) => {
                let part = dates::part_of(&args[1], &name)?;
                Some(dates::last_day(t, part, args[0].clone())?)
            }
            ("NEXT_DAY", 2) => Some(dates::next_day(t, args[0].clone(), &args[1], true)?),
            ("PREVIOUS_DAY", 2) => Some(dates::next_day(t, args[0].clone(), &args[1], false)?),
            ("DAYNAME", 1) => match t {
                Dialect::DuckDb => e("strftime(_0, '%a')"),
                Dialect::Postgres => e("to_char(_0, 'Dy')"),
            },
            ("MONTHNAME", 1) => match t {
                Dialect::DuckDb => e("strftime(_0, '%b')"),
                Dialect::Postgres => e("to_char(_0, 'Mon')"),
            },
            ("YEAR" | "QUARTER" | "MONTH" | "DAY" | "DAYOFMONTH" | "HOUR" | "MINUTE" | "SECOND"
            | "DAYOFWEEK" | "DAYOFWEEKISO" | "DAYOFYEAR" | "WEEK" | "WEEKOFYEAR" | "WEEKISO"
            | "YEAROFWEEK" | "YEAROFWEEKISO", 1) => {
                let field = match name.as_str() {
                    "DAYOFMONTH" => "day",
                    "DAYOFWEEK" => "dow",
                    "DAYOFWEEKISO" => "isodow",
                    "DAYOFYEAR" => "doy",
                    "WEEK" | "WEEKOFYEAR" | "WEEKISO" => "week",
                    "YEAROFWEEK" | "YEAROFWEEKISO" => "isoyear",
                    other => &other.to_ascii_lowercase(),
                };
                e(&format!("CAST(floor(extract({field} FROM _0)) AS INTEGER)"))
            }
            ("DATE_FROM_PARTS" | "DATEFROMPARTS", 3) => e(
                "CAST(make_date(CAST(_0 AS INTEGER), 1, 1) + (_1 - 1) * INTERVAL '1 month' + (_2 - 1) * INTERVAL '1 day' AS DATE)",
            ),
            ("TIMESTAMP_FROM_PARTS" | "TIMESTAMP_NTZ_FROM_PARTS" | "TIMESTAMPFROMPARTS", 2) => {
                e("CAST(_0 AS DATE) + CAST(_1 AS TIME)")
            }
            ("TIMESTAMP_FROM_PARTS" | "TIMESTAMP_NTZ_FROM_PARTS" | "TIMESTAMPFROMPARTS", 6) => {
                e("make_timestamp(_0, _1, _2, _3, _4, _5)")
            }
            ("TIMESTAMP_FROM_PARTS" | "TIMESTAMP_NTZ_FROM_PARTS" | "TIMESTAMPFROMPARTS", 7) => {
                e("make_timestamp(_0, _1, _2, _3, _4, _5 + _6 / 1000000000.0)")
            }
            ("TIME_FROM_PARTS" | "TIMEFROMPARTS", 3) => e("make_time(_0, _1, _2)"),
            ("TO_DATE" | "DATE", 1) => e("CAST(_0 AS DATE)"),
            ("TRY_TO_DATE", 1) => Some(try_cast(t, args[0].clone(), "DATE")),
            ("TO_DATE" | "DATE" | "TRY_TO_DATE", 2) => {
                let format = dates::format_arg(&args[1], t, &name)?;
                let try_ = name.starts_with("TRY_");
                Some(match (t, try_) {
                    (Dialect::DuckDb, false) => expr(t, "CAST(strptime(_0, _1) AS DATE)", &[args[0].clone(), format]),
                    (Dialect::DuckDb, true) => expr(t, "CAST(try_strptime(_0, _1) AS DATE)", &[args[0].clone(), format]),
                    (Dialect::Postgres, false) => expr(t, "to_date(_0, _1)", &[args[0].clone(), format]),
                    (Dialect::Postgres, true) => {
                        return Err(unsupported("TRY_TO_DATE with a format on the PostgreSQL engine"))
                    }
                })
            }
            ("TO_TIMESTAMP" | "TO_TIMESTAMP_NTZ" | "TO_TIMESTAMP_LTZ" | "TO_TIMESTAMP_TZ"
            | "TRY_TO_TIMESTAMP" | "TRY_TO_TIMESTAMP_NTZ" | "TRY_TO_TIMESTAMP_LTZ"
            | "TRY_TO_TIMESTAMP_TZ", 1 | 2) => Some(self.to_timestamp(&name, &args)?),
            ("TO_TIME" | "TIME", 1) => e("CAST(_0 AS TIME)"),
            ("TRY_TO_TIME", 1) => Some(try_cast(t, args[0].clone(), "TIME")),
            ("TO_CHAR" | "TO_VARCHAR", 1) => e(match t {
                Dialect::DuckDb => "CAST(_0 AS VARCHAR)",
                Dialect::Postgres => "CAST(_0 AS TEXT)",
            }),
            ("TO_CHAR" | "TO_VARCHAR", 2) => Some(self.to_char(&args)?),

            // Numbers and booleans.
            ("TO_NUMBER" | "TO_DECIMAL" | "TO_NUMERIC" | "TRY_TO_NUMBER" | "TRY_TO_DECIMAL"
            | "TRY_TO_NUMERIC", 1..=4) => Some(self.to_number(&name, &args)?),
            ("TO_DOUBLE", 1) => e(match t {
                Dialect::DuckDb => "CAST(_0 AS DOUBLE)",
                Dialect::Postgres => "CAST(_0 AS DOUBLE PRECISION)",
            }),
            ("TRY_TO_DOUBLE", 1) => Some(try_cast(t, args[0].clone(), match t {
                Dialect::DuckDb => "DOUBLE",
                Dialect::Postgres => "DOUBLE PRECISION",
            })),
            ("TO_BOOLEAN" | "TRY_TO_BOOLEAN", 1) => {
                let otherwise = if name == "TO_BOOLEAN" { "CAST(_0 AS BOOLEAN)" } else { "NULL" };
                let as_text = match t {
                    Dialect::DuckDb => "lower(trim(CAST(_0 AS VARCHAR)))",
                    Dialect::Postgres => "lower(trim(CAST(_0 AS TEXT)))",
                };
                e(&format!(
                    "CASE WHEN {as_text} IN ('true', 't', 'yes', 'y', 'on', '1') THEN true \
                     WHEN {as_text} IN ('false', 'f', 'no', 'n', 'off', '0') THEN false \
                     ELSE {otherwise} END"
                ))
            }
            ("HASH", n) if n >= 1 => match t {
                Dialect::DuckDb => e(&format!("hash({})", slots(n, ", "))),
                Dialect::Postgres => {
                    let parts: Vec<String> = (0..n).map(|i| format!("CAST(_{i} AS TEXT)")).collect();
                    e(&format!("hashtextextended(concat_ws(chr(31), {}), 0)", parts.join(", ")))
                }
            },

            // Strings.
            ("LEN", 1) => e("length(_0)"),
            ("CHARINDEX", 2) => e("strpos(_1, _0)"),
            ("CHARINDEX", 3) => e(
                "CASE WHEN strpos(substr(_1, _2), _0) = 0 THEN 0 ELSE strpos(substr(_1, _2), _0) + _2 - 1 END",
            ),
            ("CONTAINS", 2) if t == Dialect::Postgres => e("(strpos(_0, _1) > 0)"),
            ("STARTSWITH", 2) => e("starts_with(_0, _1)"),
            ("ENDSWITH", 2) => match t {
                Dialect::DuckDb => e("ends_with(_0, _1)"),
                Dialect::Postgres => e("(right(_0, length(_1)) = _1)"),
            },
            ("SPLIT_PART", 3) if matches!(&args[2], Expr::Value(v) if v.value == Value::Number("0".into(), false)) => {
                Some(expr(t, "split_part(_0, _1, 1)", &args[..2]))
            }
            ("STRTOK", 1..=3) => Some(self.strtok(&args)?),
            ("SPLIT", 2) => match t {
                Dialect::DuckDb => e("to_json(string_split(_0, _1))"),
                Dialect::Postgres => e("to_jsonb(string_to_array(_0, _1))"),
            },
            ("INITCAP", 1) if t == Dialect::DuckDb => e(
                "list_aggr(list_transform(range(1, length(_0) + 1), lambda enclave_i: CASE WHEN enclave_i = 1 OR contains(' \t\n\r!?@\"^#$&~_,.:;+-*%/|\\[](){}<>', _0[enclave_i - 1]) THEN upper(_0[enclave_i]) ELSE lower(_0[enclave_i]) END), 'string_agg', '')",
            ),
            ("SHA2" | "SHA2_HEX", 1 | 2) => {
                let bits = match args.get(1) {
                    None => 256,
                    Some(Expr::Value(v)) => match &v.value {
                        Value::Number(n, _) => n.parse().unwrap_or(0),
                        _ => 0,
                    },
                    Some(_) => 0,
                };
                match (t, bits) {
                    (Dialect::DuckDb, 256) => Some(expr(t, "sha256(_0)", &args[..1])),
                    (Dialect::Postgres, 224 | 256 | 384 | 512) => Some(expr(
                        t,
                        &format!("encode(sha{bits}(convert_to(_0, 'UTF8')), 'hex')"),
                        &args[..1],
                    )),
                    _ => return Err(unsupported(format!("SHA2 with {bits} bits on this engine"))),
                }
            }
            ("REGEXP_LIKE" | "RLIKE", 2 | 3) => Some(self.regexp_like(&args, false)?),
            ("REGEXP_SUBSTR", 2..=6) => Some(self.regexp_substr(&args)?),
            ("REGEXP_REPLACE", 2..=6) => Some(self.regexp_replace(&args)?),
            ("REGEXP_COUNT", 2) => match t {
                Dialect::DuckDb => e("length(regexp_extract_all(_0, _1))"),
                Dialect::Postgres => e("regexp_count(_0, _1)"),
            },
            ("REGEXP_INSTR", 2) if t == Dialect::Postgres => e("regexp_instr(_0, _1)"),
            ("REGEXP_INSTR", _) => {
                return Err(unsupported("REGEXP_INSTR on this engine (use REGEXP_SUBSTR)"))
            }

            // Semi-structured data.
            ("PARSE_JSON", 1) => Some(json::parse(t, args[0].clone(), false)),
            ("TRY_PARSE_JSON", 1) => Some(json::parse(t, args[0].clone(), true)),
            ("TO_VARIANT" | "TO_OBJECT", 1) => Some(json::to_json(t, args[0].clone(), ty(0))),
            ("TO_ARRAY", 1) if ty(0) == Ty::Json => Some(args[0].clone()),
            ("TO_ARRAY", 1) => Some(json::array(t, args)),
            ("TO_JSON", 1) => match t {
                Dialect::DuckDb => e("CAST(to_json(_0) AS VARCHAR)"),
                Dialect::Postgres => e("CAST(to_jsonb(_0) AS TEXT)"),
            },
            ("OBJECT_CONSTRUCT", _) => Some(json::object(t, args, false)?),
            ("OBJECT_CONSTRUCT_KEEP_NULL", _) => Some(json::object(t, args, true)?),
            ("ARRAY_CONSTRUCT", _) => Some(json::array(t, args)),
            ("ARRAY_SIZE", 1) => Some(json::array_size(t, args[0].clone(), ty(0))),
            ("ARRAY_TO_STRING", 2) if ty(0) == Ty::Json => Some(json::array_to_string(
                t,
                args[0].clone(),
                ty(0),
                args[1].clone(),
            )),
            ("GET", 2) => Some(json::access(t, args[0].clone(), ty(0), &[json::subscript(args[1].clone())])),
            ("GET_PATH" | "JSON_EXTRACT_PATH_TEXT", 2) => {
                let path = string_literal(&args[1]).ok_or_else(|| {
                    unsupported(format!("{name} with a computed path (write the path)"))
                })?;
                let steps: Vec<Step> = json::parse_path(&path)?;
                let value = json::access(t, args[0].clone(), ty(0), &steps);
                Some(if name == "GET_PATH" { value } else { json::as_text(t, value) })
            }
            ("FLATTEN", _) => {
                return Err(unsupported("FLATTEN outside FROM (write FROM TABLE(FLATTEN(…)) or LATERAL FLATTEN(…))"))
            }
            ("IFF" | "NVL" | "IFNULL" | "NVL2" | "ZEROIFNULL" | "NULLIFZERO" | "DIV0" | "DIV0NULL"
            | "EQUAL_NULL" | "BOOLAND" | "BOOLOR" | "BOOLXOR" | "BOOLNOT" | "DATEADD"
            | "TIMEADD" | "TIMESTAMPADD" | "DATE_FROM_PARTS" | "NEXT_DAY" | "PREVIOUS_DAY"
            | "PARSE_JSON" | "TRY_PARSE_JSON" | "ARRAY_SIZE" | "GET" | "GET_PATH", _) => {
                return Err(unsupported(format!("{name} with {n} arguments")))
            }
            _ => None,
        })
    }

    /// `a / b` as Snowflake divides: exactly, never as integers (PostgreSQL divides integers
    /// as integers; DuckDB already divides exactly).
    pub(super) fn divide(&self, a: &Expr, b: &Expr) -> Expr {
        match self.target {
            Dialect::DuckDb => expr(self.target, "_0 / _1", &[a.clone(), b.clone()]),
            Dialect::Postgres => expr(self.target, "_0 * 1.0 / _1", &[a.clone(), b.clone()]),
        }
    }

    fn to_timestamp(&self, name: &str, args: &[Expr]) -> Result<Expr> {
        let t = self.target;
        let with_zone = name.ends_with("_LTZ") || name.ends_with("_TZ");
        let try_ = name.starts_with("TRY_");
        let ty = if with_zone {
            "TIMESTAMPTZ"
        } else {
            "TIMESTAMP"
        };
        let epoch = matches!(self.ty(&args[0]), Ty::Integer | Ty::Number);
        Ok(match (args.len(), epoch) {
            (1, true) => match (t, with_zone) {
                (Dialect::DuckDb, false) => {
                    expr(t, "make_timestamp(CAST(_0 * 1000000 AS BIGINT))", args)
                }
                (Dialect::Postgres, false) => {
                    expr(t, "(to_timestamp(_0) AT TIME ZONE 'UTC')", args)
                }
                (_, true) => expr(t, "to_timestamp(_0)", args),
            },
            (1, false) if try_ => try_cast(t, args[0].clone(), ty),
            (1, false) => expr(t, &format!("CAST(_0 AS {ty})"), args),
            (2, false) => {
                if try_ {
                    return Err(unsupported(format!("{name} with a format")));
                }
                let format = dates::format_arg(&args[1], t, name)?;
                match t {
                    Dialect::DuckDb => expr(
                        t,
                        &format!("CAST(strptime(_0, _1) AS {ty})"),
                        &[args[0].clone(), format],
                    ),
                    Dialect::Postgres => expr(
                        t,
                        &format!("CAST(to_timestamp(_0, _1) AS {ty})"),
                        &[args[0].clone(), format],
                    ),
                }
            }
            _ => return Err(unsupported(format!("{name} with a scale"))),
        })
    }

    fn to_char(&self, args: &[Expr]) -> Result<Expr> {
        let t = self.target;
        let Some(format) = string_literal(&args[1]) else {
            return Err(unsupported("TO_CHAR with a computed format (write it)"));
        };
        let numeric = format.contains(['9', '0']);
        Ok(match (t, numeric) {
            (Dialect::Postgres, true) => expr(t, "to_char(_0, _1)", args),
            (Dialect::DuckDb, true) => {
                return Err(unsupported(
                    "TO_CHAR with a number format on the embedded engine",
                ))
            }
            (_, false) => {
                let converted = dates::format_arg(&args[1], t, "TO_CHAR")?;
                let template = match t {
                    Dialect::DuckDb => "strftime(_0, _1)",
                    Dialect::Postgres => "to_char(_0, _1)",
                };
                expr(t, template, &[args[0].clone(), converted])
            }
        })
    }

    fn to_number(&self, name: &str, args: &[Expr]) -> Result<Expr> {
        let t = self.target;
        let number = |e: &Expr| match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n.parse::<u64>().ok(),
                _ => None,
            },
            _ => None,
        };
        let (format, rest) = match args.get(1).and_then(string_literal) {
            Some(f) => (Some(f), &args[2..]),
            None => (None, &args[1..]),
        };
        let (precision, scale) = match rest {
            [] => (38, 0),
            [p] => (
                number(p).ok_or_else(|| wrong_arity(name, "literal precision"))?,
                0,
            ),
            [p, s] => (
                number(p).ok_or_else(|| wrong_arity(name, "literal precision"))?,
                number(s).ok_or_else(|| wrong_arity(name, "literal scale"))?,
            ),
            _ => return Err(wrong_arity(name, "1 to 4")),
        };
        if precision == 0 || precision > 38 || scale > precision {
            return Err(unsupported(format!(
                "{name} with precision {precision} and scale {scale}"
            )));
        }
        let ty = format!("DECIMAL({precision}, {scale})");
        let try_ = name.starts_with("TRY_");
        Ok(match (format, t, try_) {
            (None, _, false) => expr(t, &format!("CAST(_0 AS {ty})"), args),
            (None, _, true) => try_cast(t, args[0].clone(), &ty),
            (Some(f), Dialect::Postgres, false) => expr(
                t,
                &format!("CAST(to_number(_0, _1) AS {ty})"),
                &[args[0].clone(), text(&f)],
            ),
            (Some(_), _, _) => {
                return Err(unsupported(format!("{name} with a format on this engine")))
            }
        })
    }

    fn strtok(&self, args: &[Expr]) -> Result<Expr> {
        let t = self.target;
        let delimiters = match args.get(1) {
            None => " ".to_string(),
            Some(d) => string_literal(d)
                .ok_or_else(|| unsupported("STRTOK with computed delimiters (write them)"))?,
        };
        let class: String = delimiters
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == ' ' {
                    c.to_string()
                } else {
                    format!("\\{c}")
                }
            })
            .collect();
        let pattern = text(&format!("[{class}]"));
        let position = args.get(2).cloned().unwrap_or_else(|| int(1));
        if delimiters.is_empty() {
            return Ok(expr(
                t,
                "CASE WHEN _1 = 1 THEN _0 END",
                &[args[0].clone(), position],
            ));
        }
        Ok(match t {
            Dialect::DuckDb => expr(
                t,
                "list_filter(regexp_split_to_array(_0, _1), lambda enclave_e: enclave_e <> '')[_2]",
                &[args[0].clone(), pattern, position],
            ),
            Dialect::Postgres => expr(
                t,
                "(array_remove(regexp_split_to_array(_0, _1), ''))[_2]",
                &[args[0].clone(), pattern, position],
            ),
        })
    }

    /// Regular-expression parameters Snowflake takes (`c`, `i`, `e`, `m`, `s`) → whether the
    /// match ignores case and whether `e` (extract a group) was given.
    fn regexp_parameters(args: &[Expr], at: usize) -> Result<(bool, bool)> {
        let Some(p) = args.get(at) else {
            return Ok((false, false));
        };
        let p = string_literal(p)
            .ok_or_else(|| unsupported("regular-expression parameters that are computed"))?;
        let mut ignore_case = false;
        let mut extract = false;
        for c in p.chars() {
            match c {
                'c' => ignore_case = false,
                'i' => ignore_case = true,
                'e' => extract = true,
                other => {
                    return Err(unsupported(format!(
                        "the regular-expression parameter '{other}'"
                    )))
                }
            }
        }
        Ok((ignore_case, extract))
    }

    /// `REGEXP_LIKE` / `RLIKE`: the whole string matches, as in Snowflake.
    pub(super) fn regexp_like(&self, args: &[Expr], negated: bool) -> Result<Expr> {
        let t = self.target;
        let (ignore_case, _) = Self::regexp_parameters(args, 2)?;
        let not = if negated { "NOT " } else { "" };
        Ok(match t {
            Dialect::DuckDb => expr(
                t,
                &format!(
                    "({not}regexp_full_match(_0, _1{}))",
                    if ignore_case { ", 'i'" } else { "" }
                ),
                &args[..2],
            ),
            Dialect::Postgres => expr(
                t,
                &format!(
                    "({not}(_0 {} ('^(?:' || _1 || ')$')))",
                    if ignore_case { "~*" } else { "~" }
                ),
                &args[..2],
            ),
        })
    }

    fn regexp_substr(&self, args: &[Expr]) -> Result<Expr> {
        let t = self.target;
        let (ignore_case, extract) = Self::regexp_parameters(args, 4)?;
        let position = args.get(2).cloned().unwrap_or_else(|| int(1));
        let occurrence = args.get(3).cloned().unwrap_or_else(|| int(1));
        let group = args
            .get(5)
            .cloned()
            .unwrap_or_else(|| int(if extract { 1 } else { 0 }));
        let template = match t {
            Dialect::DuckDb => format!(
                "regexp_extract_all(substr(_0, _2), _1, _4{})[_3]",
                if ignore_case { ", 'i'" } else { "" }
            ),
            Dialect::Postgres => format!(
                "regexp_substr(_0, _1, _2, _3, '{}', _4)",
                if ignore_case { "i" } else { "c" }
            ),
        };
        Ok(expr(
            t,
            &template,
            &[
                args[0].clone(),
                args[1].clone(),
                position,
                occurrence,
                group,
            ],
        ))
    }

    fn regexp_replace(&self, args: &[Expr]) -> Result<Expr> {
        let t = self.target;
        let (ignore_case, _) = Self::regexp_parameters(args, 5)?;
        let default_at = |i: usize, value: i64| match args.get(i) {
            None => true,
            Some(Expr::Value(v)) => v.value == Value::Number(value.to_string(), false),
            Some(_) => false,
        };
        if !default_at(3, 1) || !default_at(4, 0) {
            return Err(unsupported(
                "REGEXP_REPLACE from a position or of one occurrence (replace every occurrence)",
            ));
        }
        let replacement = args.get(2).cloned().unwrap_or_else(|| text(""));
        Ok(expr(
            t,
            &format!(
                "regexp_replace(_0, _1, _2, '{}')",
                if ignore_case { "gi" } else { "g" }
            ),
            &[args[0].clone(), args[1].clone(), replacement],
        ))
    }

    /// Aggregates whose Snowflake form the engines spell differently.
    fn aggregate(&self, name: &str, f: &Function) -> Result<Option<Expr>> {
        let t = self.target;
        let FunctionArguments::List(list) = &f.args else {
            return Ok(None);
        };
        let args: Option<Vec<Expr>> = positional(f);
        let Some(args) = args else { return Ok(None) };
        let distinct = list.duplicate_treatment == Some(DuplicateTreatment::Distinct);
        let mut order: Vec<OrderByExpr> = f.within_group.clone();
        for clause in &list.clauses {
            if let FunctionArgumentClause::OrderBy(o) = clause {
                order.extend(o.iter().cloned());
            }
        }
        let rebuild = |name: &str,
                       args: Vec<Expr>,
                       order: Vec<OrderByExpr>,
                       filter: Option<Expr>| {
            let mut clauses: Vec<FunctionArgumentClause> = list
                .clauses
                .iter()
                .filter(|c| !matches!(c, FunctionArgumentClause::OrderBy(_)))
                .cloned()
                .collect();
            if !order.is_empty() {
                clauses.push(FunctionArgumentClause::OrderBy(order));
            }
            Expr::Function(Function {
                name: ObjectName::from(vec![Ident::new(name)]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: list.duplicate_treatment,
                    args: args
                        .into_iter()
                        .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                        .collect(),
                    clauses,
                }),
                within_group: vec![],
                filter: match (filter, &f.filter) {
                    (Some(a), Some(b)) => Some(Box::new(expr(t, "_0 AND _1", &[a, (**b).clone()]))),
                    (Some(a), None) => Some(Box::new(a)),
                    (None, b) => b.clone(),
                },
                null_treatment: f.null_treatment,
                over: f.over.clone(),
            })
        };
        Ok(match (name, args.len()) {
            ("LISTAGG", 1 | 2) => {
                let separator = args.get(1).cloned().unwrap_or_else(|| text(""));
                Some(match t {
                    Dialect::DuckDb => rebuild(
                        "string_agg",
                        vec![expr(t, "CAST(_0 AS VARCHAR)", &args[..1]), separator],
                        order,
                        None,
                    ),
                    Dialect::Postgres => expr(
                        t,
                        "array_to_string(_0, _1)",
                        &[
                            rebuild("array_agg", args[..1].to_vec(), order, None),
                            separator,
                        ],
                    ),
                })
            }
            ("ARRAY_AGG" | "ARRAYAGG", 1) if !f.within_group.is_empty() => {
                let not_null = expr(t, "_0 IS NOT NULL", &args[..1]);
                let list = rebuild(
                    match t {
                        Dialect::DuckDb => "list",
                        Dialect::Postgres => "array_agg",
                    },
                    args,
                    order,
                    Some(not_null),
                );
                Some(match t {
                    Dialect::DuckDb => {
                        expr(t, "COALESCE(to_json(_0), CAST('[]' AS JSON))", &[list])
                    }
                    Dialect::Postgres => {
                        expr(t, "COALESCE(to_jsonb(_0), CAST('[]' AS JSONB))", &[list])
                    }
                })
            }
            ("MEDIAN", 1) if t == Dialect::Postgres && f.over.is_none() && !distinct => Some(expr(
                t,
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY _0)",
                &args,
            )),
            ("ANY_VALUE", 1) if t == Dialect::Postgres && !distinct => Some(expr(
                t,
                "(_0)[1]",
                &[rebuild("array_agg", args, vec![], None)],
            )),
            ("APPROX_COUNT_DISTINCT", 1) if t == Dialect::Postgres => {
                Some(expr(t, "count(DISTINCT _0)", &args))
            }
            ("MAX_BY" | "MIN_BY", 2) if t == Dialect::Postgres && f.over.is_none() => {
                let direction = if name == "MAX_BY" { "DESC" } else { "ASC" };
                Some(expr(
                    t,
                    &format!(
                        "(array_agg(_0 ORDER BY _1 {direction}) FILTER (WHERE _1 IS NOT NULL))[1]"
                    ),
                    &args,
                ))
            }
            ("HASH_AGG", n) if n >= 1 => {
                let hash = match t {
                    Dialect::DuckDb => expr(t, &format!("hash({})", slots(n, ", ")), &args),
                    Dialect::Postgres => {
                        let parts: Vec<String> =
                            (0..n).map(|i| format!("CAST(_{i} AS TEXT)")).collect();
                        expr(
                            t,
                            &format!(
                                "hashtextextended(concat_ws(chr(31), {}), 0)",
                                parts.join(", ")
                            ),
                            &args,
                        )
                    }
                };
                Some(rebuild("bit_xor", vec![hash], vec![], None))
            }
            _ => None,
        })
    }

    /// `LAG`/`LEAD` … `IGNORE NULLS`, which neither engine has: the nth non-NULL value
    /// before (after) the row, from the list of the window's values with NULLs left out.
    fn ignore_nulls(&self, name: &str, f: &Function) -> Result<Option<Expr>> {
        let t = self.target;
        let ignoring =
            f.null_treatment == Some(NullTreatment::IgnoreNulls) || has_null_treatment_clause(f);
        if !ignoring {
            // RESPECT NULLS is the engines' default.
            let mut plain = f.clone();
            plain.null_treatment = None;
            strip_null_treatment_clause(&mut plain);
            return Ok(Some(Expr::Function(plain)));
        }
        let (forward, Some(args)) = (name == "LEAD", positional(f)) else {
            return Err(unsupported(format!("{name} … IGNORE NULLS")));
        };
        if !matches!(name, "LAG" | "LEAD") || args.is_empty() || args.len() > 3 {
            return Err(unsupported(format!("{name} … IGNORE NULLS")));
        }
        let Some(WindowType::WindowSpec(spec)) = &f.over else {
            return Err(unsupported(format!(
                "{name} … IGNORE NULLS over a named window"
            )));
        };
        let mut spec = spec.clone();
        if !forward {
            for o in &mut spec.order_by {
                let descending = match o.options.sort {
                    Some(OrderBySort::Desc) => true,
                    None | Some(OrderBySort::Asc) => false,
                    Some(OrderBySort::Using(_)) => {
                        return Err(unsupported(format!(
                            "{name} … IGNORE NULLS ordered USING an operator"
                        )))
                    }
                };
                // Where NULLs sorted in the window as written: PostgreSQL puts them last
                // ascending and first descending, DuckDB last either way.
                let nulls_were_first = o.options.nulls_first.unwrap_or(match t {
                    Dialect::Postgres => descending,
                    Dialect::DuckDb => false,
                });
                o.options.sort = Some(if descending {
                    OrderBySort::Asc
                } else {
                    OrderBySort::Desc
                });
                o.options.nulls_first = Some(!nulls_were_first);
            }
        }
        spec.window_frame = Some(WindowFrame {
            units: WindowFrameUnits::Rows,
            start_bound: WindowFrameBound::Following(Some(Box::new(int(1)))),
            end_bound: Some(WindowFrameBound::Following(None)),
        });
        let values = Expr::Function(Function {
            name: ObjectName::from(vec![Ident::new(match t {
                Dialect::DuckDb => "list",
                Dialect::Postgres => "array_agg",
            })]),
            uses_odbc_syntax: false,
            parameters: FunctionArguments::None,
            args: FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(args[0].clone()))],
                clauses: vec![],
            }),
            within_group: vec![],
            filter: Some(Box::new(expr(t, "_0 IS NOT NULL", &args[..1]))),
            null_treatment: None,
            over: Some(WindowType::WindowSpec(spec)),
        });
        let offset = args.get(1).cloned().unwrap_or_else(|| int(1));
        let nth = Expr::CompoundFieldAccess {
            root: Box::new(Expr::Nested(Box::new(values))),
            access_chain: vec![AccessExpr::Subscript(Subscript::Index { index: offset })],
        };
        Ok(Some(match args.get(2) {
            Some(default) => expr(t, "COALESCE(_0, _1)", &[nth, default.clone()]),
            None => nth,
        }))
    }

    /// The division operator, for the expression visitor.
    pub(super) fn binary(&self, left: &Expr, op: &BinaryOperator, right: &Expr) -> Option<Expr> {
        match (self.target, op) {
            (Dialect::Postgres, BinaryOperator::Divide) => Some(self.divide(left, right)),
            _ => None,
        }
    }
}

fn has_null_treatment_clause(f: &Function) -> bool {
    matches!(&f.args, FunctionArguments::List(l)
        if l.clauses.iter().any(|c| matches!(c, FunctionArgumentClause::IgnoreOrRespectNulls(_))))
}

fn strip_null_treatment_clause(f: &mut Function) {
    if let FunctionArguments::List(l) = &mut f.args {
        l.clauses
            .retain(|c| !matches!(c, FunctionArgumentClause::IgnoreOrRespectNulls(_)));
    }
}
