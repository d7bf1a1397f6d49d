//! Types: Snowflake's type names as each engine spells them, and what the translator can
//! tell of an expression's type from the statement alone (casts, literals, functions).

use sqlparser::ast::{
    ArrayElemTypeDef, CastKind, DataType, ExactNumberInfo, Expr, ObjectName, TimezoneInfo, Value,
};

use super::name_of;
use crate::query::Dialect;

/// What the statement shows of an expression's type; `Unknown` for columns and parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Date,
    Time,
    Timestamp,
    TimestampTz,
    /// Snowflake's semi-structured values (`VARIANT`, `OBJECT`, `ARRAY`): JSON in DuckDB,
    /// `jsonb` in PostgreSQL.
    Json,
    Integer,
    Number,
    Text,
    Boolean,
    Unknown,
}

/// The type a data type names, after [`engine_type`].
pub(super) fn ty_of(data_type: &DataType) -> Ty {
    match data_type {
        DataType::Date => Ty::Date,
        DataType::Time(..) => Ty::Time,
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => Ty::TimestampTz,
        DataType::Timestamp(..) | DataType::Datetime(_) | DataType::TimestampNtz(_) => {
            Ty::Timestamp
        }
        DataType::JSON | DataType::JSONB => Ty::Json,
        DataType::Int(_)
        | DataType::Integer(_)
        | DataType::BigInt(_)
        | DataType::SmallInt(_)
        | DataType::TinyInt(_)
        | DataType::Int2(_)
        | DataType::Int4(_)
        | DataType::Int8(_)
        | DataType::HugeInt => Ty::Integer,
        DataType::Decimal(_)
        | DataType::Numeric(_)
        | DataType::Dec(_)
        | DataType::Float(_)
        | DataType::Float4
        | DataType::Float8
        | DataType::Double(_)
        | DataType::DoublePrecision
        | DataType::Real => Ty::Number,
        DataType::Text
        | DataType::String(_)
        | DataType::Varchar(_)
        | DataType::CharacterVarying(_)
        | DataType::CharVarying(_)
        | DataType::Char(_)
        | DataType::Character(_) => Ty::Text,
        DataType::Bool | DataType::Boolean => Ty::Boolean,
        DataType::Custom(name, _) => match custom(name).as_str() {
            "TIMESTAMPTZ" | "TIMESTAMP_TZ" | "TIMESTAMP_LTZ" => Ty::TimestampTz,
            "TIMESTAMP_NTZ" | "DATETIME" => Ty::Timestamp,
            "VARIANT" | "OBJECT" | "ARRAY" => Ty::Json,
            "NUMBER" => Ty::Number,
            _ => Ty::Unknown,
        },
        DataType::Array(ArrayElemTypeDef::None) => Ty::Json,
        _ => Ty::Unknown,
    }
}

fn custom(name: &ObjectName) -> String {
    name.to_string().to_ascii_uppercase()
}

/// Snowflake's type names as `target` spells them; `None` when the type is the engine's own.
/// Snowflake's `FLOAT` (every spelling) is a double; `NUMBER` without precision is
/// `NUMBER(38, 0)`; semi-structured types are JSON.
pub(super) fn engine_type(data_type: &DataType, target: Dialect) -> Option<DataType> {
    let json = || match target {
        Dialect::DuckDb => DataType::JSON,
        Dialect::Postgres => DataType::JSONB,
    };
    let double = || match target {
        Dialect::DuckDb => DataType::Double(ExactNumberInfo::None),
        Dialect::Postgres => DataType::DoublePrecision,
    };
    let tz = || DataType::Timestamp(None, TimezoneInfo::WithTimeZone);
    Some(match data_type {
        DataType::String(_) => DataType::Varchar(None),
        DataType::Float(_) | DataType::Float4 | DataType::Real | DataType::Float8 => double(),
        DataType::Double(_) if target == Dialect::Postgres => double(),
        DataType::Datetime(p) | DataType::TimestampNtz(p) => {
            DataType::Timestamp(*p, TimezoneInfo::None)
        }
        DataType::Binary(_) | DataType::Varbinary(_) => match target {
            Dialect::DuckDb => DataType::Blob(None),
            Dialect::Postgres => DataType::Bytea,
        },
        DataType::TinyInt(_) if target == Dialect::Postgres => DataType::SmallInt(None),
        DataType::Array(ArrayElemTypeDef::None) => json(),
        DataType::JSON if target == Dialect::Postgres => json(),
        DataType::Custom(name, modifiers) => match custom(name).as_str() {
            "VARIANT" | "OBJECT" => json(),
            "NUMBER" => DataType::Decimal(number_info(modifiers)?),
            "BYTEINT" => DataType::SmallInt(None),
            "TIMESTAMP_NTZ" => DataType::Timestamp(None, TimezoneInfo::None),
            "TIMESTAMP_LTZ" | "TIMESTAMP_TZ" => tz(),
            "FLOAT8" | "FLOAT4" => double(),
            _ => return None,
        },
        _ => return None,
    })
}

/// `NUMBER`, `NUMBER(p)`, `NUMBER(p, s)` → the precision and scale of a decimal.
fn number_info(modifiers: &[String]) -> Option<ExactNumberInfo> {
    let numbers: Vec<u64> = modifiers
        .iter()
        .map(|m| m.trim().parse().ok())
        .collect::<Option<_>>()?;
    Some(match numbers.as_slice() {
        [] => ExactNumberInfo::PrecisionAndScale(38, 0),
        [p] => ExactNumberInfo::PrecisionAndScale(*p, 0),
        [p, s] => ExactNumberInfo::PrecisionAndScale(*p, *s as i64),
        _ => return None,
    })
}

/// What the statement shows of `e`'s type. `json_names` are the columns of translated
/// `FLATTEN`s (their `value` and `this` are semi-structured).
pub(super) fn infer(e: &Expr, json_names: &dyn Fn(&Expr) -> bool) -> Ty {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) if n.contains(['.', 'e', 'E']) => Ty::Number,
            Value::Number(..) => Ty::Integer,
            Value::SingleQuotedString(_) => Ty::Text,
            Value::Boolean(_) => Ty::Boolean,
            _ => Ty::Unknown,
        },
        Expr::TypedString(t) => ty_of(&t.data_type),
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon | CastKind::TryCast | CastKind::SafeCast,
            data_type,
            ..
        } => ty_of(data_type),
        Expr::Nested(inner) => infer(inner, json_names),
        Expr::JsonAccess { .. } => Ty::Json,
        Expr::BinaryOp {
            op: sqlparser::ast::BinaryOperator::HashLongArrow,
            ..
        } => Ty::Text,
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) if json_names(e) => Ty::Json,
        Expr::Case {
            conditions,
            else_result,
            ..
        } => conditions
            .iter()
            .map(|w| infer(&w.result, json_names))
            .chain(else_result.iter().map(|e| infer(e, json_names)))
            .find(|t| *t != Ty::Unknown)
            .unwrap_or(Ty::Unknown),
        Expr::Function(f) => function_type(&name_of(&f.name).unwrap_or_default()),
        _ => Ty::Unknown,
    }
}

/// The result type of a function the translator writes or Snowflake defines, by name.
fn function_type(name: &str) -> Ty {
    match name {
        "CURRENT_DATE" | "TO_DATE" | "DATE" | "TRY_TO_DATE" | "DATE_FROM_PARTS"
        | "DATEFROMPARTS" | "MAKE_DATE" | "LAST_DAY" | "NEXT_DAY" | "PREVIOUS_DAY" => Ty::Date,
        "CURRENT_TIMESTAMP" | "SYSDATE" | "GETDATE" | "LOCALTIMESTAMP" | "TO_TIMESTAMP_LTZ"
        | "TO_TIMESTAMP_TZ" | "NOW" => Ty::TimestampTz,
        "TO_TIMESTAMP"
        | "TO_TIMESTAMP_NTZ"
        | "TIMESTAMP_FROM_PARTS"
        | "MAKE_TIMESTAMP"
        | "TRY_TO_TIMESTAMP"
        | "TRY_TO_TIMESTAMP_NTZ"
        | "STRPTIME" => Ty::Timestamp,
        "TO_TIME" | "TIME_FROM_PARTS" | "MAKE_TIME" => Ty::Time,
        "PARSE_JSON"
        | "TRY_PARSE_JSON"
        | "OBJECT_CONSTRUCT"
        | "OBJECT_CONSTRUCT_KEEP_NULL"
        | "ARRAY_CONSTRUCT"
        | "ARRAY_CONSTRUCT_COMPACT"
        | "GET"
        | "GET_PATH"
        | "TO_VARIANT"
        | "JSON_EXTRACT"
        | "JSON_ARRAY"
        | "JSON_OBJECT"
        | "TO_JSON"
        | "JSON"
        | "JSONB_EXTRACT_PATH"
        | "JSONB_BUILD_ARRAY"
        | "JSONB_BUILD_OBJECT"
        | "TO_JSONB"
        | "JSON_GROUP_OBJECT"
        | "JSONB_OBJECT_AGG" => Ty::Json,
        "JSON_EXTRACT_STRING" | "JSONB_EXTRACT_PATH_TEXT" => Ty::Text,
        _ => Ty::Unknown,
    }
}
