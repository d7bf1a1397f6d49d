//! Parse (stage 2) and classify (stage 3): one statement at a time, its kind, the tables and
//! table functions it touches, and the allow-list of statements an engine may ever see.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use serde::Serialize;
use sqlparser::ast::{
    CopySource, CopyTarget, Expr, FunctionArguments, Ident, ObjectName, ObjectNamePart, ObjectType,
    Query, Select, Set, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::{GenericDialect, PostgreSqlDialect, SnowflakeDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use crate::error::{Error, Result};
use crate::query::cost::Cost;
use crate::query::limits::{
    check, check_joins, parse_red_zone, too_long, too_many_statements, with_stack, Limits,
    PARSE_STACK,
};
use crate::query::sqlstate::with_sqlstate;
use crate::query::translate::translate;

/// Which SQL grammar statements are read with: the engine's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    DuckDb,
    Postgres,
}

/// A statement's kind: what the caller's role and scopes must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Queries and `EXPLAIN` of queries.
    Read,
    /// `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `TRUNCATE`, `COPY … FROM STDIN`.
    Write,
    /// Creating, changing or dropping tables, views, indexes, schemas, sequences.
    Ddl,
    /// `SET`, `SHOW`, `RESET`, transaction control: never touches data.
    Session,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Ddl => "ddl",
            Kind::Session => "session",
        }
    }
}

/// What a session statement asks of the session; the gateway answers these itself, except
/// transaction control, which the engine's connection must also see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    /// `SET name = value` / `SET name TO value` / `SET TIME ZONE value`: kept on the session.
    Set { name: String, value: String },
    /// `RESET name`; `None` for `RESET ALL`.
    Reset { name: Option<String> },
    /// `SHOW name` (`SHOW ALL` is `all`).
    Show { name: String },
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, savepoints: passed on to the engine.
    Transaction,
    /// `DISCARD ALL` and friends: clears what the session kept.
    Discard,
}

/// One parsed and classified statement.
#[derive(Debug, Clone)]
pub struct Analyzed {
    pub statement: Statement,
    pub kind: Kind,
    /// For DDL: whether it creates something (`tables:create`) or changes or drops something
    /// (`tables:alter`).
    pub creates: bool,
    pub session: Option<SessionCommand>,
    /// Every table or view the statement names, through joins, subqueries, CTEs and set
    /// operations (CTE names themselves excluded), as `schema.table` when qualified; unquoted
    /// identifiers lower-cased as the engines fold them.
    pub tables: Vec<String>,
    /// Every name the statement reads or writes as a relation, CTE names included: what
    /// policies are asked about (a CTE may share a table's name, and scoping is the
    /// rewrite's business, not the classifier's).
    pub relations: Vec<String>,
    /// `COPY table [(columns)] FROM STDIN`: the table loaded.
    pub copy_in: Option<String>,
    /// The statement as the engine receives it (translated, re-serialised from the tree).
    pub sql: String,
    /// The statement as the caller wrote it, literals replaced: what the query audit keeps.
    pub redacted: String,
    /// How deep its syntax nests (at most the parse's `max_depth`): what the stages that
    /// walk it by recursion make room for ([`Analyzed::with_stack`]).
    pub depth: usize,
    /// A query whose answer depends only on the data it reads (no clock, randomness or
    /// sequence): what the result cache may keep.
    pub cacheable: bool,
    /// What it costs in credits, but for the rows it returns (stages 5 and 11).
    pub cost: Cost,
    /// Whether a number or string literal is a function's argument as the caller wrote it
    /// (the translation may read it): such a statement is remembered by its text alone.
    pub(crate) literal_arguments: bool,
}

/// Levels the policy rewrite may add above a statement's own: a derived table, its select
/// list and guard, and a row filter (whose own nesting is bounded when it is saved).
const REWRITE_LEVELS: usize = 16 + crate::policy::MAX_FILTER_DEPTH;

impl Analyzed {
    /// Runs `f` with room on the stack to walk this statement, or its rewrite under the
    /// policies, by recursion (printing, cloning, rewriting, dropping).
    pub fn with_stack<R>(&self, f: impl FnOnce() -> R) -> R {
        with_stack(self.depth + REWRITE_LEVELS, f)
    }
}

/// Parses `sql` into statements, each classified, within the default [`Limits`].
pub fn parse(sql: &str, dialect: Dialect) -> Result<Vec<Analyzed>> {
    parse_within(sql, dialect, &Limits::default())
}

/// Parses `sql` into statements, each translated for the engine and classified; the first
/// statement that may not run, or that breaks one of `limits`, stops the whole string before
/// anything runs.
pub fn parse_within(sql: &str, dialect: Dialect, limits: &Limits) -> Result<Vec<Analyzed>> {
    if sql.len() > limits.max_statement_bytes {
        return Err(too_long(limits));
    }
    check_joins(sql, grammar(dialect).as_ref(), limits)?;
    // Whatever is refused is dropped in here too, on the parser's stack.
    stacker::maybe_grow(parse_red_zone(sql.len()), PARSE_STACK, || {
        let statements = read(sql, dialect, limits)?;
        statements
            .into_iter()
            .map(|(mut statement, _)| {
                let redacted = crate::query::redact(&statement);
                let literal_arguments = crate::query::shapes::literal_in_call(&statement);
                translate(&mut statement, dialect)?;
                // Translation may nest deeper than the statement as written.
                let depth = check(&statement, limits)?;
                let mut analyzed = classify(statement, depth, redacted)?;
                analyzed.literal_arguments = literal_arguments;
                Ok(analyzed)
            })
            .collect()
    })
}

/// The grammars a statement for `dialect`'s engine is read with, in order: the engine's own
/// first (what clients and tools send), then PostgreSQL's (DuckDB's grammar reads a column
/// named `key` as MySQL's `KEY` constraint), then Snowflake's (colon paths after a call,
/// `FROM VALUES` without parentheses, backslash escapes in strings). The first grammar that
/// reads the whole text wins; its meaning is what runs.
fn grammars(dialect: Dialect) -> &'static [Grammar] {
    match dialect {
        Dialect::DuckDb => &[Grammar::Engine, Grammar::Postgres, Grammar::Snowflake],
        Dialect::Postgres => &[Grammar::Engine, Grammar::Snowflake],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grammar {
    Engine,
    Postgres,
    Snowflake,
}

/// The statements of `sql` with their depths, read with the first of [`grammars`] that
/// reads all of it; a text none reads reports the engine grammar's syntax error.
fn read(sql: &str, dialect: Dialect, limits: &Limits) -> Result<Vec<(Statement, usize)>> {
    let mut first_error = None;
    let mut misread = None;
    for grammar in grammars(dialect) {
        let parser: Box<dyn sqlparser::dialect::Dialect> = match grammar {
            Grammar::Engine => self::grammar(dialect),
            Grammar::Postgres => Box::new(PostgreSqlDialect {}),
            Grammar::Snowflake => Box::new(SnowflakeDialect {}),
        };
        match split(sql, parser.as_ref(), limits) {
            // A `:name` placeholder is the grammar misreading a colon path
            // (`f(x)[1]:name`); neither door binds named parameters.
            Ok(statements) if statements.iter().any(|(s, _)| has_named_placeholder(s)) => {
                misread.get_or_insert(statements);
            }
            Ok(statements) => return Ok(statements),
            Err(e) if e.details.get("sqlstate").and_then(|v| v.as_str()) == Some("42601") => {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match (misread, first_error) {
        (Some(statements), _) => Ok(statements),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(vec![]),
    }
}

fn has_named_placeholder(statement: &Statement) -> bool {
    struct Named;
    impl Visitor for Named {
        type Break = ();
        fn pre_visit_value(&mut self, v: &sqlparser::ast::ValueWithSpan) -> ControlFlow<()> {
            match &v.value {
                sqlparser::ast::Value::Placeholder(p) if !p.starts_with('$') => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    statement.visit(&mut Named).is_break()
}

/// The statements of `sql` with their depths, stopping at the first one past `limits` (as
/// sqlparser's `parse_statements`, one statement at a time).
fn split(
    sql: &str,
    grammar: &dyn sqlparser::dialect::Dialect,
    limits: &Limits,
) -> Result<Vec<(Statement, usize)>> {
    let syntax = |e| syntax_error(sql, e);
    let mut parser = Parser::new(grammar).try_with_sql(sql).map_err(syntax)?;
    let mut statements = Vec::new();
    let mut expecting_delimiter = false;
    loop {
        while parser.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        match &parser.peek_token_ref().token {
            Token::EOF => break,
            Token::Word(w) if expecting_delimiter && w.keyword == Keyword::END => break,
            _ => {}
        }
        if expecting_delimiter {
            let found = parser.peek_token();
            return Err(syntax(
                parser
                    .expected::<()>("end of statement", found)
                    .unwrap_err(),
            ));
        }
        if statements.len() == limits.max_statements {
            return Err(too_many_statements(limits));
        }
        let statement = parser.parse_statement().map_err(syntax)?;
        let depth = check(&statement, limits)?;
        statements.push((statement, depth));
        expecting_delimiter = true;
    }
    Ok(statements)
}

/// sqlparser's grammar for an engine's dialect. Clients speak PostgreSQL (psql's catalog
/// queries use `OPERATOR(pg_catalog.~)`), and users DuckDB: the generic grammar reads both.
pub(crate) fn grammar(dialect: Dialect) -> Box<dyn sqlparser::dialect::Dialect> {
    match dialect {
        Dialect::DuckDb => Box::new(GenericDialect {}),
        Dialect::Postgres => Box::new(PostgreSqlDialect {}),
    }
}

/// A parser error as `42601` with the 1-based character position PostgreSQL reports.
fn syntax_error(sql: &str, e: ParserError) -> Error {
    let text = match &e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "statement nested too deeply".to_string(),
    };
    // PostgreSQL reports an unexpected end of input at the end of the string.
    let position =
        position_of(sql, &text).or_else(|| text.contains("EOF").then(|| sql.chars().count() + 1));
    let message = text
        .split(" at Line: ")
        .next()
        .unwrap_or(&text)
        .trim()
        .to_string();
    let mut details = serde_json::json!({"field": "sql", "rule": "syntax"});
    if let Some(p) = position {
        details["position"] = p.into();
    }
    with_sqlstate(
        Error::new(
            crate::error::ErrorCode::ValidationError,
            format!("syntax error: {message}"),
        )
        .with_details(details),
        "42601",
    )
}

/// `… at Line: L, Column: C` → the character offset (1-based) of that place in `sql`.
fn position_of(sql: &str, message: &str) -> Option<usize> {
    let tail = message.rsplit_once("Line: ")?.1;
    let (line, rest) = tail.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let column: usize = rest
        .trim()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    let before: usize = sql
        .split('\n')
        .take(line.saturating_sub(1))
        .map(|l| l.chars().count() + 1)
        .sum();
    Some(before + column)
}

fn not_allowed(what: &str) -> Error {
    with_sqlstate(
        Error::forbidden(
            "statement_not_allowed",
            format!("{what} is not allowed through the gateway"),
        ),
        "42501",
    )
}

/// Table functions a query may call: they compute rows, none reads a file or the network.
const TABLE_FUNCTIONS: &[&str] = &[
    "generate_series",
    "range",
    "unnest",
    // What FLATTEN and the semi-structured functions become on PostgreSQL.
    "jsonb_each",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
];

/// Whether `name` (as written, possibly `pg_catalog.`-qualified) is an allowed table function.
fn allowed_table_function(name: &str) -> bool {
    let bare = name.strip_prefix("pg_catalog.").unwrap_or(name);
    TABLE_FUNCTIONS.contains(&bare)
}

/// Scalar functions refused anywhere in a statement: they reach the host, the server's files
/// or other databases (the engines' sandboxes refuse them too; this names the reason early).
const HOST_FUNCTIONS: &[&str] = &[
    "getenv",
    "read_text",
    "read_blob",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_import",
    "lo_export",
    "dblink",
    "dblink_exec",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "set_config",
    // Run SQL text of their own, out of the rewrite's reach (PostgreSQL).
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    // Would show what the rewrite added (filter values, the hash key) or a column's
    // statistics over every row, hidden ones too.
    "current_query",
    "pg_stat_get_activity",
    "stats",
    // Raises an error carrying any value it is given: an oracle on values the optimizer
    // evaluates early.
    "error",
];

/// Functions whose answer changes between calls with the same arguments (time, randomness,
/// sequences, the session): a query calling one is never answered from the result cache.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "uuid",
    "gen_random_uuid",
    "uuidv4",
    "setseed",
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtimestamp",
    "localtime",
    "get_current_timestamp",
    "get_current_time",
    "today",
    "transaction_timestamp",
    "statement_timestamp",
    "clock_timestamp",
    "timeofday",
    "epoch_ms",
    "nextval",
    "currval",
    "lastval",
    "txid_current",
    "pg_backend_pid",
    "current_setting",
    "inet_client_addr",
];

/// Relations refused by name: they show column values (statistics) or other sessions'
/// statements, out of the policies' reach (PostgreSQL catalogs).
const HIDDEN_RELATIONS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_stat_activity",
    "pg_stat_statements",
    // Every setting, among them the server's paths (DuckDB's temp and secret directories,
    // PostgreSQL's data directory and configuration files).
    "pg_settings",
    "pg_file_settings",
    "pg_hba_file_rules",
    "pg_config",
];

/// Settings `current_setting` may read: what clients ask for, none of them a path on the
/// server (`temp_directory`, `secret_directory`, `data_directory`, … are not).
const SETTINGS_SHOWN: &[&str] = &[
    "application_name",
    "block_size",
    "bytea_output",
    "client_encoding",
    "datestyle",
    "default_collation",
    "default_null_order",
    "default_order",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "extra_float_digits",
    "idle_in_transaction_session_timeout",
    "integer_datetimes",
    "intervalstyle",
    "is_superuser",
    "lc_collate",
    "lc_ctype",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "lock_timeout",
    "max_identifier_length",
    "max_memory",
    "memory_limit",
    "search_path",
    "server_encoding",
    "server_version",
    "server_version_num",
    "standard_conforming_strings",
    "statement_timeout",
    "threads",
    "timezone",
    "transaction_isolation",
    "transaction_read_only",
    "worker_threads",
];

/// Whether a `current_setting(…)` call reads only a setting of [`SETTINGS_SHOWN`] (named by
/// a literal: a computed name could be any setting).
fn setting_shown(args: &FunctionArguments) -> bool {
    let FunctionArguments::List(list) = args else {
        return false;
    };
    let Some(sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(
        Expr::Value(v),
    ))) = list.args.first()
    else {
        return false;
    };
    match &v.value {
        sqlparser::ast::Value::SingleQuotedString(name) => {
            SETTINGS_SHOWN.contains(&name.to_ascii_lowercase().as_str())
        }
        _ => false,
    }
}

pub(crate) fn classify(statement: Statement, depth: usize, redacted: String) -> Result<Analyzed> {
    let mut creates = false;
    let mut session = None;
    let mut copy_in = None;
    let kind = match &statement {
        Statement::Query(_) => Kind::Read,
        Statement::Explain {
            statement: inner,
            analyze,
            ..
        } => {
            let inner = classify((**inner).clone(), depth, String::new())?;
            match inner.kind {
                Kind::Read => Kind::Read,
                // EXPLAIN ANALYZE runs the statement.
                k if *analyze => k,
                Kind::Session => return Err(not_allowed("EXPLAIN of a session statement")),
                _ => Kind::Read,
            }
        }
        Statement::ExplainTable { .. } => Kind::Read,
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_)
        | Statement::Truncate(_) => Kind::Write,
        Statement::Copy {
            source, to, target, ..
        } => match (source, to, target) {
            (CopySource::Table { table_name, .. }, false, CopyTarget::Stdin) => {
                copy_in = Some(object_name(table_name));
                Kind::Write
            }
            _ => {
                return Err(not_allowed(
                    "COPY other than COPY table FROM STDIN (files, programs and COPY TO)",
                ))
            }
        },
        Statement::CreateTable(t) => {
            if t.location.is_some() {
                return Err(not_allowed("CREATE TABLE … LOCATION"));
            }
            creates = true;
            Kind::Ddl
        }
        Statement::CreateView(_)
        | Statement::CreateIndex(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateSequence { .. } => {
            creates = true;
            Kind::Ddl
        }
        Statement::AlterTable(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterView { .. }
        | Statement::RenameTable(_)
        | Statement::Comment { .. } => Kind::Ddl,
        Statement::Drop { object_type, .. } => match object_type {
            ObjectType::Table
            | ObjectType::View
            | ObjectType::Index
            | ObjectType::Schema
            | ObjectType::Sequence
            | ObjectType::MaterializedView => Kind::Ddl,
            other => return Err(not_allowed(&format!("DROP {other}"))),
        },
        Statement::Set(set) => {
            session = Some(set_command(set)?);
            Kind::Session
        }
        Statement::ShowVariable { variable } => {
            session = Some(SessionCommand::Show {
                name: ident_path(variable),
            });
            Kind::Session
        }
        Statement::Reset(reset) => {
            let text = reset.to_string();
            let name = text.trim_start_matches("RESET").trim().to_ascii_lowercase();
            session = Some(SessionCommand::Reset {
                name: (name != "all").then_some(name),
            });
            Kind::Session
        }
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => {
            session = Some(SessionCommand::Transaction);
            Kind::Session
        }
        Statement::Discard { .. } => {
            session = Some(SessionCommand::Discard);
            Kind::Session
        }
        other => {
            let text = other.to_string();
            let word: String = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            return Err(not_allowed(&word.to_ascii_uppercase()));
        }
    };
    let mut touched = Touched::default();
    let _ = statement.visit(&mut touched);
    if let Some(f) = touched.refused_function {
        return Err(not_allowed(&f));
    }
    let mut relations: Vec<String> = touched.tables.iter().cloned().collect();
    let mut tables: Vec<String> = touched
        .tables
        .into_iter()
        .filter(|t| !touched.ctes.contains(t))
        .collect();
    // The visitor sees relations in queries; COPY's table is not one of them.
    if let Some(table) = copy_in.as_ref().filter(|t| !tables.contains(t)) {
        tables.push(table.clone());
        relations.push(table.clone());
    }
    // `CURRENT_TIMESTAMP` and friends without parentheses are values, not calls.
    let cacheable = kind == Kind::Read
        && matches!(statement, Statement::Query(_))
        && !touched.volatile
        && !mentions_clock_values(&statement);
    let mut analyzed = Analyzed {
        cacheable,
        sql: statement.to_string(),
        redacted,
        statement,
        kind,
        creates,
        session,
        tables,
        relations,
        copy_in,
        depth,
        cost: Cost::free(),
        literal_arguments: false,
    };
    analyzed.cost = Cost::of(&analyzed);
    Ok(analyzed)
}

/// Whether the statement reads the clock through a keyword value (`CURRENT_DATE`, …), which
/// the parser may keep as a bare identifier rather than a call.
fn mentions_clock_values(statement: &Statement) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(statement, |e| {
        if let Expr::Identifier(i) = e {
            if i.quote_style.is_none()
                && VOLATILE_FUNCTIONS.contains(&i.value.to_ascii_lowercase().as_str())
            {
                found = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    found
}

fn set_command(set: &Set) -> Result<SessionCommand> {
    Ok(match set {
        Set::SingleAssignment {
            variable, values, ..
        } => SessionCommand::Set {
            name: object_name(variable),
            value: values.iter().map(expr_text).collect::<Vec<_>>().join(", "),
        },
        Set::SetTimeZone { value, .. } => SessionCommand::Set {
            name: "timezone".into(),
            value: expr_text(value),
        },
        Set::SetNames { charset_name, .. } => SessionCommand::Set {
            name: "client_encoding".into(),
            value: charset_name.value.clone(),
        },
        Set::SetTransaction { .. } => SessionCommand::Transaction,
        Set::SetRole { .. } | Set::SetSessionAuthorization(_) => {
            return Err(not_allowed("SET ROLE / SET SESSION AUTHORIZATION"))
        }
        other => {
            let text = other.to_string();
            SessionCommand::Set {
                name: text.trim_start_matches("SET").trim().to_ascii_lowercase(),
                value: String::new(),
            }
        }
    })
}

/// A `SET` value as the session keeps it: string literals without their quotes.
fn expr_text(e: &Expr) -> String {
    match e {
        Expr::Value(v) => match &v.value {
            sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// A name as the engines resolve it: unquoted parts folded to lower case.
pub(crate) fn ident(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_ascii_lowercase(),
    }
}

fn ident_path(parts: &[Ident]) -> String {
    parts.iter().map(ident).collect::<Vec<_>>().join(".")
}

pub(crate) fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => ident(i),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// What a query body may not hold, through set operations (nested queries are visited on
/// their own).
fn refused_body(body: &SetExpr) -> Option<&'static str> {
    match body {
        SetExpr::SetOperation { left, right, .. } => refused_body(left).or(refused_body(right)),
        // A write inside a query (`WITH d AS (DELETE … RETURNING *) SELECT …`) would run under
        // the query's kind.
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            Some("a data-modifying statement inside a query")
        }
        // `TABLE name` names a table without a relation the policy rewrite could see.
        SetExpr::Table(_) => Some("TABLE name (write SELECT * FROM name)"),
        _ => None,
    }
}

/// Collects tables, CTE names and anything refused while walking a statement.
#[derive(Default)]
struct Touched {
    tables: BTreeSet<String>,
    ctes: BTreeSet<String>,
    refused_function: Option<String>,
    /// A function whose answer changes from one call to the next was called.
    volatile: bool,
    /// The next relation visited is an allowed table function's name, not a table.
    function_name_next: bool,
}

impl Touched {
    fn refuse(&mut self, name: String) -> ControlFlow<()> {
        self.refused_function = Some(format!("the function {name}"));
        ControlFlow::Break(())
    }
}

impl Visitor for Touched {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(ident(&cte.alias.name));
            }
        }
        match refused_body(&query.body) {
            Some(what) => {
                self.refused_function = Some(what.into());
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if select.into.is_some() {
            // `SELECT … INTO t` creates a table under a read's kind.
            self.refused_function = Some("SELECT … INTO (use CREATE TABLE … AS)".into());
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if std::mem::take(&mut self.function_name_next) {
            return ControlFlow::Continue(());
        }
        let name = object_name(relation);
        let bare = name
            .rsplit('.')
            .next()
            .unwrap_or(&name)
            .to_ascii_lowercase();
        if HIDDEN_RELATIONS.contains(&bare.as_str()) {
            self.refused_function = Some(format!("the relation {name}"));
            return ControlFlow::Break(());
        }
        self.tables.insert(name);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => {
                let name = object_name(name);
                if !allowed_table_function(&name) {
                    return self.refuse(name);
                }
                self.function_name_next = true;
            }
            TableFactor::TableFunction {
                expr: Expr::Function(f),
                ..
            } => {
                let name = object_name(&f.name);
                if !allowed_table_function(&name) {
                    return self.refuse(name);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr {
            let name = object_name(&f.name);
            let bare = name.rsplit('.').next().unwrap_or(&name);
            if VOLATILE_FUNCTIONS.contains(&bare) {
                self.volatile = true;
            }
            if HOST_FUNCTIONS.contains(&bare) {
                return self.refuse(name);
            }
            if bare == "current_setting" && !setting_shown(&f.args) {
                self.refused_function =
                    Some("current_setting of a setting that may name the server's files".into());
                return ControlFlow::Break(());
            }
            // `read_csv(…)` and friends as scalar calls are refused like table functions.
            if bare.starts_with("read_") || bare == "glob" {
                if let FunctionArguments::List(_) = f.args {
                    return self.refuse(name);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests;
