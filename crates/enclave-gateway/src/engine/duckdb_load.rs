//! Bulk load into an environment's DuckDB database.
//!
//! The environment's database cannot read files (external access is off, and stays off).
//! The spooled file is read by a separate in-memory DuckDB that runs only the statements
//! written here, never a client's; its Arrow batches are appended to the table through the
//! environment connection's appender, inside one transaction.

use std::time::Instant;

use duckdb::{params_from_iter, Config, Connection};
use enclave_core::query::with_sqlstate;
use enclave_core::{Error, ErrorCode, Result};

use super::duckdb::engine_error;
use crate::load::{LoadFormat, LoadRequest, Loaded, Mapping};

/// A column: its name and type.
pub(super) type Column = (String, String);

/// Loads the spooled file into the table: in a transaction of its own, or in the session's
/// (`in_transaction`), which then commits or rolls it back.
pub(super) fn load(
    conn: &Connection,
    request: &LoadRequest,
    in_transaction: bool,
    deadline: Instant,
) -> Result<Loaded> {
    let target = table_columns(conn, &request.table)?;
    if target.is_empty() && !request.create {
        return Err(no_table(&request.table));
    }
    let empty = std::fs::metadata(&request.path).map_or(true, |m| m.len() == 0);
    if empty && !target.is_empty() {
        return Ok(Loaded {
            rows: 0,
            created: false,
        });
    }
    if empty {
        return Err(Error::validation(
            "body",
            "not_empty",
            "an empty file has no columns to create the table from",
        ));
    }
    let scratch = scratch()?;
    // An existing table's columns decide the types: CSV fields are read as text and cast,
    // so "007" stays "007" in a text column. A new table takes the types DuckDB infers.
    let reader = reader_sql(request, !target.is_empty());
    let source = describe(&scratch, &reader)?;

    if !in_transaction {
        conn.execute_batch("BEGIN TRANSACTION")
            .map_err(engine_error)?;
    }
    let result = append(conn, &scratch, request, &reader, source, target, deadline);
    if !in_transaction {
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        conn.execute_batch(end).map_err(engine_error)?;
    }
    result
}

fn append(
    conn: &Connection,
    scratch: &Connection,
    request: &LoadRequest,
    reader: &str,
    source: Vec<Column>,
    target: Vec<Column>,
    deadline: Instant,
) -> Result<Loaded> {
    let (table, target, created) = if target.is_empty() {
        let columns: Vec<String> = source
            .iter()
            .map(|(name, ty)| format!("{} {ty}", ident(name)))
            .collect();
        conn.execute_batch(&format!(
            "CREATE TABLE {} ({})",
            ident(&request.table),
            columns.join(", ")
        ))
        .map_err(engine_error)?;
        (request.table.clone(), source.clone(), true)
    } else {
        (actual_name(conn, &request.table)?, target, false)
    };
    let pairs = map_columns(&request.mapping, &table, &source, &target)?;
    let select: Vec<String> = pairs
        .iter()
        .map(|(from, (to, ty))| format!("CAST({} AS {ty}) AS {}", ident(from), ident(to)))
        .collect();
    let sql = format!("SELECT {} FROM {reader}", select.join(", "));
    let mut statement = scratch.prepare(&sql).map_err(file_error)?;
    let batches = statement
        .stream_arrow(params_from_iter(Vec::<String>::new()))
        .map_err(file_error)?;
    let names: Vec<&str> = pairs.iter().map(|(_, (to, _))| to.as_str()).collect();
    let mut appender = conn
        .appender_with_columns(&table, &names)
        .map_err(engine_error)?;
    let mut rows = 0;
    for batch in batches {
        if Instant::now() >= deadline {
            return Err(interrupted());
        }
        let batch = batch.map_err(file_error)?;
        rows += batch.num_rows() as u64;
        appender.append_record_batch(batch).map_err(engine_error)?;
    }
    appender.flush().map_err(engine_error)?;
    Ok(Loaded { rows, created })
}

/// For engines that load CSV text (PostgreSQL's `COPY … FROM STDIN (FORMAT csv)`): reads the
/// spooled file as [`load`] does and writes the columns that fill `target` (or, when `target`
/// is empty and the request may create the table, all of the file's) to `out` as headerless
/// CSV. Returns the filled columns in order, each with the DuckDB type the file's column was
/// read as (what a new table's column types are chosen from).
pub(super) fn export_csv(
    request: &LoadRequest,
    target: &[Column],
    out: &std::path::Path,
) -> Result<Vec<Column>> {
    if target.is_empty() && !request.create {
        return Err(no_table(&request.table));
    }
    let scratch = scratch()?;
    let reader = reader_sql(request, !target.is_empty());
    let source = describe(&scratch, &reader)?;
    let target = if target.is_empty() { &source } else { target };
    let pairs = map_columns(&request.mapping, &request.table, &source, target)?;
    let select: Vec<String> = pairs
        .iter()
        .map(|(from, (to, _))| format!("CAST({} AS VARCHAR) AS {}", ident(from), ident(to)))
        .collect();
    scratch
        .execute_batch(&format!(
            "COPY (SELECT {} FROM {reader}) TO {} (FORMAT csv, HEADER false)",
            select.join(", "),
            literal(&out.to_string_lossy())
        ))
        .map_err(engine_error)?;
    let types: std::collections::HashMap<&str, &str> = source
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    Ok(pairs
        .iter()
        .map(|(from, (to, _))| {
            (
                to.clone(),
                types.get(from.as_str()).unwrap_or(&"VARCHAR").to_string(),
            )
        })
        .collect())
}

/// An error reading the uploaded file, as its sender can act on it: the line (and column) of
/// the file where it failed, never the spool file's path on the server nor the row's values.
fn file_error(e: duckdb::Error) -> Error {
    let message = e.to_string();
    let after = |marker: &str, end: char| -> Option<String> {
        let from = message.find(marker)? + marker.len();
        let rest = &message[from..];
        let len = rest.find(end).unwrap_or(rest.len());
        Some(rest[..len].trim().to_string()).filter(|s| !s.is_empty())
    };
    let line = after("Line: ", '\n').and_then(|l| l.parse::<u64>().ok());
    let column = after("converting column \"", '"');
    let target = after("to '", '\'');
    let count = message
        .lines()
        .find(|l| l.contains("Expected Number of Columns"))
        .map(str::trim);
    let (state, text) = if message.contains("sniffing file") {
        (
            "22P04",
            "the file could not be read as CSV: its delimiter, quoting or columns could not be \
             detected (is every line the same number of fields?)"
                .to_string(),
        )
    } else if let Some(line) = line {
        let what = match (&column, &target, count) {
            (Some(c), Some(t), _) => format!("a value of column \"{c}\" does not convert to {t}"),
            (Some(c), None, _) => format!("a value of column \"{c}\" is not valid"),
            (None, _, Some(n)) => n.to_string(),
            _ => "the line is not valid".to_string(),
        };
        let state = if column.is_some() { "22P02" } else { "22P04" };
        (state, format!("line {line} of the file: {what}"))
    } else {
        let mut error = engine_error(e);
        error.message = without_paths(&error.message);
        return error;
    };
    let mut details = serde_json::json!({"field": "body", "rule": "file"});
    if let Some(line) = line {
        details["line"] = line.into();
    }
    if let Some(column) = column {
        details["column"] = column.into();
    }
    with_sqlstate(
        Error::new(ErrorCode::ValidationError, text).with_details(details),
        state,
    )
}

/// `message` with every quoted absolute path (the spool file's) said as "the file".
fn without_paths(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(start) = rest.find("\"/") {
        out.push_str(&rest[..start]);
        match rest[start + 1..].find('"') {
            Some(len) => {
                out.push_str("the file");
                rest = &rest[start + 1 + len + 1..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// 42P01 for a load into a table that does not exist.
pub(super) fn no_table(table: &str) -> Error {
    with_sqlstate(
        Error::validation(
            "table",
            "exists",
            format!("relation \"{table}\" does not exist"),
        )
        .with_status(404),
        "42P01",
    )
}

/// Which file column fills which table column.
fn map_columns<'t>(
    mapping: &Mapping,
    table: &str,
    source: &[Column],
    target: &'t [Column],
) -> Result<Vec<(String, &'t Column)>> {
    let find = |name: &str| target.iter().find(|(t, _)| t.eq_ignore_ascii_case(name));
    let unknown = |name: &str| {
        with_sqlstate(
            Error::validation(
                "columns",
                "exists",
                format!("column \"{name}\" of relation \"{table}\" does not exist"),
            ),
            "42703",
        )
    };
    match mapping {
        Mapping::ByName => source
            .iter()
            .map(|(name, _)| Ok((name.clone(), find(name).ok_or_else(|| unknown(name))?)))
            .collect(),
        Mapping::ByPosition(columns) => {
            let columns: Vec<&Column> = if columns.is_empty() {
                target.iter().collect()
            } else {
                columns
                    .iter()
                    .map(|c| find(c).ok_or_else(|| unknown(c)))
                    .collect::<Result<_>>()?
            };
            if columns.len() != source.len() {
                return Err(with_sqlstate(
                    Error::validation(
                        "data",
                        "columns",
                        format!(
                            "the data has {} columns; {} expected",
                            source.len(),
                            columns.len()
                        ),
                    ),
                    "22P04",
                ));
            }
            Ok(source
                .iter()
                .zip(columns)
                .map(|((from, _), to)| (from.clone(), to))
                .collect())
        }
    }
}

/// The table function that reads the spooled file.
fn reader_sql(request: &LoadRequest, all_text: bool) -> String {
    let path = literal(&request.path.to_string_lossy());
    match &request.format {
        LoadFormat::Parquet => format!("read_parquet({path})"),
        LoadFormat::Csv(o) => format!(
            "read_csv({path}, header = {}, delim = {}, quote = {}, escape = {}, nullstr = {}, \
             allow_quoted_nulls = false, all_varchar = {all_text})",
            o.header,
            literal(&o.delimiter.to_string()),
            literal(&o.quote.to_string()),
            literal(&o.escape.to_string()),
            literal(&o.null),
        ),
    }
}

/// The file's columns as DuckDB reads them.
fn describe(scratch: &Connection, reader: &str) -> Result<Vec<Column>> {
    let mut statement = scratch
        .prepare(&format!("DESCRIBE SELECT * FROM {reader}"))
        .map_err(file_error)?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(file_error)?;
    rows.collect::<std::result::Result<_, _>>()
        .map_err(file_error)
}

/// The table's columns in order (none: there is no such table).
fn table_columns(conn: &Connection, table: &str) -> Result<Vec<Column>> {
    let mut statement = conn
        .prepare(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = current_schema() AND lower(table_name) = lower(?) \
             ORDER BY ordinal_position",
        )
        .map_err(engine_error)?;
    let rows = statement
        .query_map([table], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(engine_error)?;
    rows.collect::<std::result::Result<_, _>>()
        .map_err(engine_error)
}

/// The table's name as the catalog spells it (the appender looks it up exactly).
fn actual_name(conn: &Connection, table: &str) -> Result<String> {
    conn.query_row(
        "SELECT table_name FROM information_schema.tables \
         WHERE table_schema = current_schema() AND lower(table_name) = lower(?)",
        [table],
        |row| row.get(0),
    )
    .map_err(engine_error)
}

/// The in-memory database that reads spooled files: it may read files (the spool is ours),
/// but loads no extension.
fn scratch() -> Result<Connection> {
    let config = || -> duckdb::Result<Config> {
        Config::default()
            .enable_autoload_extension(false)?
            .with("allow_community_extensions", "false")
    };
    let config = config().map_err(engine_error)?;
    Connection::open_in_memory_with_flags(config).map_err(engine_error)
}

pub(super) fn interrupted() -> Error {
    with_sqlstate(
        Error::new(ErrorCode::ValidationError, "the load was interrupted").with_status(408),
        "57014",
    )
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub(super) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_paths_never_reach_the_sender() {
        assert_eq!(
            super::without_paths(
                "Invalid Input Error: Error when sniffing file \"/var/lib/enclave/spool/qry_1.spool\"."
            ),
            "Invalid Input Error: Error when sniffing file the file."
        );
        assert_eq!(super::without_paths("no \"path\" here"), "no \"path\" here");
        assert_eq!(super::without_paths("dangling \"/tmp"), "dangling \"/tmp");
    }
}
