//! PostgreSQL compatibility for the embedded engine: clients introspect `pg_catalog` the way
//! PostgreSQL answers (psql's `\dt` and `\d`, drivers' type lookups). DuckDB has most of that
//! catalog; the few spellings and functions it lacks are rewritten in the syntax tree before
//! the statement is rendered for it.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions_mut, visit_relations_mut, ArrayElemTypeDef, BinaryOperator, DataType, Expr,
    FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, Statement, TableFactor,
    TableFunctionArgs, Value, VisitMut, VisitorMut,
};

/// The schema each environment database keeps the catalog shim in.
pub const SHIM_SCHEMA: &str = "enclave_catalog";

/// The shim's version: databases holding an older one get it rewritten when opened.
pub const SHIM_VERSION: i64 = 3;

/// Reads the version of the shim a database holds.
pub const SHIM_VERSION_SQL: &str = "SELECT version FROM enclave_catalog.shim_version";

/// The statements that (re)write the shim, recording its version last.
pub fn shim_sql() -> String {
    SHIM_SQL.replace(
        "COMMIT;",
        &format!(
            "CREATE OR REPLACE VIEW enclave_catalog.shim_version AS SELECT {SHIM_VERSION}::BIGINT AS version;\nCOMMIT;"
        ),
    )
}

/// `pg_catalog` relations DuckDB lacks (or lacks columns of), as views in [`SHIM_SCHEMA`]:
/// what psql's `\d` and drivers read. The empty ones describe features an embedded database
/// has none of (policies are Enclave's, not the engine's; no triggers, roles, publications).
pub const SHIM_SQL: &str = "
BEGIN TRANSACTION;
CREATE SCHEMA IF NOT EXISTS enclave_catalog;
CREATE OR REPLACE VIEW enclave_catalog.pg_class AS
  SELECT *, false AS relforcerowsecurity FROM pg_catalog.pg_class;
CREATE OR REPLACE VIEW enclave_catalog.pg_inherits AS
  SELECT NULL::BIGINT AS inhrelid, NULL::BIGINT AS inhparent, NULL::INTEGER AS inhseqno,
         NULL::BOOLEAN AS inhdetachpending WHERE false;
CREATE OR REPLACE VIEW enclave_catalog.pg_policy AS
  SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS polname, NULL::BIGINT AS polrelid,
         NULL::VARCHAR AS polcmd, NULL::BOOLEAN AS polpermissive, NULL::BIGINT[] AS polroles,
         NULL::VARCHAR AS polqual, NULL::VARCHAR AS polwithcheck WHERE false;
CREATE OR REPLACE VIEW enclave_catalog.pg_statistic_ext AS
  SELECT NULL::BIGINT AS oid, NULL::BIGINT AS stxrelid, NULL::VARCHAR AS stxname,
         NULL::BIGINT AS stxnamespace, NULL::BIGINT AS stxowner, NULL::INTEGER AS stxstattarget,
         NULL::INTEGER[] AS stxkeys, NULL::VARCHAR[] AS stxkind, NULL::VARCHAR AS stxexprs WHERE false;
CREATE OR REPLACE VIEW enclave_catalog.pg_publication AS
  SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS pubname, NULL::BIGINT AS pubowner,
         NULL::BOOLEAN AS puballtables, NULL::BOOLEAN AS pubinsert, NULL::BOOLEAN AS pubupdate,
         NULL::BOOLEAN AS pubdelete, NULL::BOOLEAN AS pubtruncate, NULL::BOOLEAN AS pubviaroot
  WHERE false;
CREATE OR REPLACE VIEW enclave_catalog.pg_publication_rel AS
  SELECT NULL::BIGINT AS oid, NULL::BIGINT AS prpubid, NULL::BIGINT AS prrelid,
         NULL::VARCHAR AS prqual, NULL::INTEGER[] AS prattrs WHERE false;
CREATE OR REPLACE VIEW enclave_catalog.pg_publication_namespace AS
  SELECT NULL::BIGINT AS oid, NULL::BIGINT AS pnpubid, NULL::BIGINT AS pnnspid WHERE false;
CREATE OR REPLACE VIEW enclave_catalog.pg_trigger AS
  SELECT NULL::BIGINT AS oid, NULL::BIGINT AS tgrelid, NULL::BIGINT AS tgparentid,
         NULL::VARCHAR AS tgname, NULL::BIGINT AS tgfoid, NULL::INTEGER AS tgtype,
         NULL::VARCHAR AS tgenabled, NULL::BOOLEAN AS tgisinternal WHERE false;
CREATE OR REPLACE VIEW enclave_catalog.pg_roles AS
  SELECT 0::BIGINT AS oid, 'enclave' AS rolname, false AS rolsuper, true AS rolinherit,
         false AS rolcreaterole, false AS rolcreatedb, true AS rolcanlogin,
         false AS rolreplication, -1 AS rolconnlimit, NULL::VARCHAR AS rolvaliduntil,
         false AS rolbypassrls;
CREATE OR REPLACE VIEW enclave_catalog.pg_rewrite AS
  SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS rulename, NULL::BIGINT AS ev_class,
         NULL::VARCHAR AS ev_type, NULL::VARCHAR AS ev_enabled, NULL::BOOLEAN AS is_instead,
         NULL::VARCHAR AS ev_qual, NULL::VARCHAR AS ev_action WHERE false;
CREATE OR REPLACE VIEW enclave_catalog.pg_matviews AS
  SELECT NULL::VARCHAR AS schemaname, NULL::VARCHAR AS matviewname,
         NULL::VARCHAR AS matviewowner, NULL::VARCHAR AS tablespace, NULL::BOOLEAN AS hasindexes,
         NULL::BOOLEAN AS ispopulated, NULL::VARCHAR AS definition WHERE false;
CREATE OR REPLACE MACRO enclave_catalog.pg_database_of(db) AS TABLE
  SELECT 0::BIGINT AS oid, db AS datname, 0::BIGINT AS datdba, 6 AS encoding,
         'c' AS datlocprovider, 'C' AS datcollate, 'C' AS datctype,
         NULL::VARCHAR AS daticulocale, NULL::VARCHAR AS daticurules, NULL::VARCHAR[] AS datacl,
         true AS datallowconn, false AS datistemplate, -1 AS datconnlimit,
         0::BIGINT AS dattablespace;
COMMIT;
";

const SHIMMED: [&str; 11] = [
    "pg_class",
    "pg_matviews",
    "pg_rewrite",
    "pg_inherits",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_trigger",
    "pg_roles",
];

/// Functions DuckDB lacks, answered with what they mean for an embedded database.
fn replacement(name: &str) -> Option<Expr> {
    let text = |s: &str| Expr::value(Value::SingleQuotedString(s.to_string()));
    match name {
        // Objects belong to the environment; there are no database users.
        "pg_get_userbyid" => Some(text("enclave")),
        // Definitions of objects an embedded database never has (extended statistics,
        // triggers, rules, partitions): the shim's views for them are empty.
        "pg_get_statisticsobjdef_columns"
        | "pg_get_triggerdef"
        | "pg_get_ruledef"
        | "pg_get_partkeydef"
        | "pg_get_partition_constraintdef" => Some(Expr::value(Value::Null)),
        "pg_relation_is_publishable" => Some(Expr::value(Value::Boolean(false))),
        // Every environment database is UTF-8.
        "pg_encoding_to_char" => Some(text("UTF8")),
        // What PostgreSQL clients parse (`PostgreSQL <major>.<minor> …`), as `server_version`.
        "version" => Some(text(&format!(
            "PostgreSQL {} on the embedded DuckDB engine",
            crate::session::SERVER_VERSION
        ))),
        _ => None,
    }
}

/// Functions whose trailing `pretty` argument DuckDB's version does not take: their arity.
fn arity_without_pretty(name: &str) -> Option<usize> {
    match name {
        "pg_get_expr" => Some(2),
        "pg_get_constraintdef" | "pg_get_viewdef" => Some(1),
        _ => None,
    }
}

fn bare(parts: &[ObjectNamePart]) -> Option<String> {
    let last = parts.last()?;
    let first = if parts.len() == 2 {
        parts.first().map(|p| p.to_string().to_ascii_lowercase())
    } else {
        None
    };
    match first.as_deref() {
        None | Some("pg_catalog") => Some(last.to_string().to_ascii_lowercase()),
        _ => None,
    }
}

/// A PostgreSQL type name as DuckDB spells it (arrays of them too).
fn duckdb_type(data_type: &mut DataType) {
    match data_type {
        DataType::Custom(name, _) => {
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| p.to_string().to_ascii_lowercase())
                .collect();
            let last = parts.last().cloned().unwrap_or_default();
            if last.starts_with("reg") || last == "oid" {
                *data_type = DataType::BigInt(None);
            } else if parts.len() == 2 && parts[0] == "pg_catalog" {
                let duck = match last.as_str() {
                    "int2" => "SMALLINT",
                    "int4" => "INTEGER",
                    "int8" => "BIGINT",
                    "float4" => "REAL",
                    "float8" => "DOUBLE",
                    "bool" => "BOOLEAN",
                    "text" | "name" | "char" | "bpchar" => "VARCHAR",
                    other => other,
                };
                *data_type = DataType::Custom(ObjectName::from(vec![Ident::new(duck)]), vec![]);
            }
        }
        DataType::Array(
            ArrayElemTypeDef::SquareBracket(inner, _)
            | ArrayElemTypeDef::AngleBracket(inner)
            | ArrayElemTypeDef::Parenthesis(inner)
            | ArrayElemTypeDef::Qualified(inner, _),
        ) => duckdb_type(inner),
        _ => {}
    }
}

/// `pg_catalog.pg_database` is the one database the client is connected to, named as it
/// named it: the shim's table macro, called with that name.
struct OneDatabase<'a>(&'a str);

impl VisitorMut for OneDatabase<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args, .. } = factor {
            let qualified = name.0.len() == 2
                && name.0[0].to_string().eq_ignore_ascii_case("pg_catalog")
                && name.0[1].to_string().eq_ignore_ascii_case("pg_database");
            if qualified && args.is_none() {
                *name =
                    ObjectName::from(vec![Ident::new(SHIM_SCHEMA), Ident::new("pg_database_of")]);
                *args = Some(TableFunctionArgs {
                    args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                        Value::SingleQuotedString(self.0.to_string()),
                    )))],
                    settings: None,
                });
            }
        }
        ControlFlow::Continue(())
    }
}

/// The statement as DuckDB should receive it; `database` is the name the client connected
/// with (the environment's slug).
pub fn render(statement: &Statement, database: &str) -> String {
    let mut copy = statement.clone();
    crate::result_columns::alias(&mut copy, &pg_column_name);
    let _ = copy.visit(&mut OneDatabase(database));
    super::strip_database(&mut copy, database);
    let _ = visit_expressions_mut(&mut copy, |expr| {
        match expr {
            Expr::Function(f) => {
                let name = bare(&f.name.0);
                if name.as_deref() == Some("pg_get_indexdef") {
                    // DuckDB keeps an index's definition in `duckdb_indexes()`.
                    if let sqlparser::ast::FunctionArguments::List(list) = &f.args {
                        if let Some(sqlparser::ast::FunctionArg::Unnamed(
                            sqlparser::ast::FunctionArgExpr::Expr(oid),
                        )) = list.args.first()
                        {
                            let sql = format!(
                                "SELECT COALESCE((SELECT sql FROM duckdb_indexes() WHERE index_oid = {oid}), '')"
                            );
                            if let Ok(q) = sqlparser::parser::Parser::new(
                                &sqlparser::dialect::GenericDialect {},
                            )
                            .try_with_sql(&sql)
                            .and_then(|mut p| p.parse_query())
                            {
                                *expr = Expr::Subquery(q);
                            }
                        }
                    }
                } else if name.as_deref() == Some("array_upper") {
                    // One-dimensional lists: the upper bound is the length.
                    f.name = ObjectName::from(vec![Ident::new("len")]);
                    if let sqlparser::ast::FunctionArguments::List(list) = &mut f.args {
                        list.args.truncate(1);
                    }
                } else if name.as_deref() == Some("array_to_string") && f.name.0.len() == 2 {
                    // `pg_catalog.array_to_string` is a narrower macro than DuckDB's own.
                    f.name = ObjectName::from(vec![Ident::new("array_to_string")]);
                } else if let Some(e) = name.as_deref().and_then(replacement) {
                    *expr = e;
                } else if let (Some(arity), sqlparser::ast::FunctionArguments::List(list)) =
                    (name.as_deref().and_then(arity_without_pretty), &mut f.args)
                {
                    // DuckDB's versions take no trailing `pretty` flag.
                    list.args.truncate(arity);
                }
            }
            // `x::pg_catalog.text` is `x::text`; the `reg*` object-id types DuckDB lacks are
            // plain numbers there (a name cast to one fails instead of answering wrongly).
            Expr::Cast {
                data_type: DataType::Regclass,
                expr: inner,
                ..
            } => {
                // `'pg_class'::regclass` (dbt's dependency query): the relation's oid, or NULL
                // for a catalog DuckDB does not have.
                if let Expr::Value(v) = &**inner {
                    if let Value::SingleQuotedString(name) = &v.value {
                        let bare = name.rsplit('.').next().unwrap_or(name).replace('\'', "''");
                        let sql = format!(
                            "SELECT (SELECT oid FROM pg_catalog.pg_class WHERE relname = '{bare}' LIMIT 1)"
                        );
                        if let Ok(q) =
                            sqlparser::parser::Parser::new(&sqlparser::dialect::GenericDialect {})
                                .try_with_sql(&sql)
                                .and_then(|mut p| p.parse_query())
                        {
                            *expr = Expr::Subquery(q);
                            return ControlFlow::Continue(());
                        }
                    }
                }
                if let Expr::Cast { data_type, .. } = expr {
                    *data_type = DataType::BigInt(None);
                }
            }
            Expr::Cast { data_type, .. } => duckdb_type(data_type),
            // `COLLATE pg_catalog.default` (psql) means the default collation.
            Expr::Collate {
                expr: inner,
                collation,
            } if collation
                .to_string()
                .to_ascii_lowercase()
                .ends_with("default") =>
            {
                *expr = (**inner).clone();
            }
            // `OPERATOR(pg_catalog.~)` is the plain operator.
            Expr::BinaryOp { op, .. } => {
                if let BinaryOperator::PGCustomBinaryOperator(parts) = op {
                    let symbol = parts.last().cloned().unwrap_or_default();
                    let plain = match symbol.as_str() {
                        "~" => Some(BinaryOperator::PGRegexMatch),
                        "~*" => Some(BinaryOperator::PGRegexIMatch),
                        "!~" => Some(BinaryOperator::PGRegexNotMatch),
                        "!~*" => Some(BinaryOperator::PGRegexNotIMatch),
                        "=" => Some(BinaryOperator::Eq),
                        "<>" => Some(BinaryOperator::NotEq),
                        _ => None,
                    };
                    if let Some(p) = plain {
                        *op = p;
                    }
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    // `pg_catalog.X` of a shimmed relation reads the shim. So does a bare `X`, as in
    // PostgreSQL, which looks in `pg_catalog` before the search path (dbt lists relations
    // from a bare `pg_matviews`); a quoted name is left to the search path.
    let _ = visit_relations_mut(&mut copy, |name| {
        if let [ObjectNamePart::Identifier(table)] = name.0.as_slice() {
            let table_name = table.value.to_ascii_lowercase();
            if table.quote_style.is_none() && SHIMMED.contains(&table_name.as_str()) {
                *name = ObjectName::from(vec![Ident::new(SHIM_SCHEMA), Ident::new(table_name)]);
            }
        } else if let [ObjectNamePart::Identifier(schema), ObjectNamePart::Identifier(table)] =
            name.0.as_slice()
        {
            let table_name = table.value.to_ascii_lowercase();
            if schema.value.eq_ignore_ascii_case("pg_catalog") {
                if SHIMMED.contains(&table_name.as_str()) {
                    *name = ObjectName::from(vec![Ident::new(SHIM_SCHEMA), Ident::new(table_name)]);
                } else if matches!(table_name.as_str(), "generate_series" | "unnest") {
                    // DuckDB's table functions live outside its `pg_catalog`.
                    *name = ObjectName::from(vec![Ident::new(table_name)]);
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    copy.to_string()
}

// Result columns are named as PostgreSQL names them where DuckDB would name them otherwise: a
// function call by the function (`count(*)` is `count`, not `count_star()`), a cast of a column
// by the column, `CASE` as `case` — see `pg_column_name`.

/// The name PostgreSQL gives an unaliased result column of `expr`, where it differs from
/// DuckDB's; `None` where DuckDB's is already right (plain columns) or left as it is.
fn pg_column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Function(f) => f.name.0.last().map(|part| match part {
            ObjectNamePart::Identifier(i) if i.quote_style.is_some() => i.value.clone(),
            other => other.to_string().to_ascii_lowercase(),
        }),
        Expr::Cast { expr, .. } => match expr.as_ref() {
            Expr::Identifier(i) => Some(i.value.clone()),
            Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
            inner => pg_column_name(inner),
        },
        Expr::Nested(inner) => pg_column_name(inner),
        Expr::Case { .. } => Some("case".to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_core::query::{parse, Dialect};

    fn rendered(sql: &str) -> String {
        render(
            &parse(sql, Dialect::DuckDb).unwrap()[0].statement,
            "development",
        )
    }

    #[test]
    fn psql_spellings_become_duckdb_ones() {
        assert_eq!(
            rendered("SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(items)$' COLLATE pg_catalog.default"),
            "SELECT c.oid FROM enclave_catalog.pg_class c WHERE c.relname ~ '^(items)$'"
        );
        assert_eq!(
            rendered("SELECT pg_catalog.pg_get_userbyid(c.relowner) AS \"Owner\" FROM pg_class c"),
            "SELECT 'enclave' AS \"Owner\" FROM enclave_catalog.pg_class c"
        );
        // Other schemas' functions of the same name are left alone.
        assert_eq!(
            rendered("SELECT app.pg_get_userbyid(1)"),
            "SELECT app.pg_get_userbyid(1) AS \"pg_get_userbyid\""
        );
        // Arrays of catalog types (psql describing a table) and the one database (listing them).
        assert_eq!(
            rendered("SELECT version()"),
            "SELECT 'PostgreSQL 15.0 (Enclave) on the embedded DuckDB engine' AS \"version\""
        );
        assert_eq!(
            rendered("SELECT x::pg_catalog.int2[] FROM t"),
            "SELECT x::SMALLINT[] AS \"x\" FROM t"
        );
        assert_eq!(
            rendered("SELECT d.datname FROM pg_catalog.pg_database d"),
            "SELECT d.datname FROM enclave_catalog.pg_database_of('development') d"
        );
    }

    #[test]
    fn result_columns_are_named_as_postgresql_names_them() {
        assert_eq!(
            rendered("SELECT count(*), sum(amount), x::int, CAST(t.y AS TEXT), CASE WHEN a THEN 1 END FROM t"),
            "SELECT count(*) AS \"count\", sum(amount) AS \"sum\", x::INT AS \"x\", CAST(t.y AS TEXT) AS \"y\", \
             CASE WHEN a THEN 1 END AS \"case\" FROM t"
        );
        // Aliases, plain columns, stars and inner queries are left alone; a set operation is
        // named by its first branch.
        assert_eq!(
            rendered("SELECT count(*) AS n, a, t.b, * FROM (SELECT max(c) FROM u) t"),
            "SELECT count(*) AS n, a, t.b, * FROM (SELECT max(c) FROM u) t"
        );
        assert_eq!(
            rendered("SELECT min(a) FROM t UNION ALL SELECT max(a) FROM t"),
            "SELECT min(a) AS \"min\" FROM t UNION ALL SELECT max(a) FROM t"
        );
        // A quoted function name keeps its case.
        assert_eq!(
            rendered("SELECT \"Upper\"(a) FROM t"),
            "SELECT \"Upper\"(a) AS \"Upper\" FROM t"
        );
    }
}
