//! Bulk load: what arrives through `POST …/tables/{table}/import` (CSV or Parquet) and
//! `COPY … FROM STDIN` on the wire is spooled to a file of the gateway's own, then read by
//! the engine into the table in one transaction.
//!
//! PostgreSQL's `text` COPY format (tab-separated, `\N` for NULL, backslash escapes) is
//! decoded while spooling and written as CSV, so every engine reads one of two formats.

use std::io::Write;
use std::path::{Path, PathBuf};

use enclave_core::query::with_sqlstate;
use enclave_core::{Error, Result};
use sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, Statement};

/// How the spooled file is read.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadFormat {
    Csv(CsvOptions),
    Parquet,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    /// The first line names the columns (and is not data).
    pub header: bool,
    pub delimiter: char,
    pub quote: char,
    pub escape: char,
    /// The unquoted text that stands for NULL.
    pub null: String,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            delimiter: ',',
            quote: '"',
            escape: '"',
            null: String::new(),
        }
    }
}

/// How the file's columns meet the table's.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapping {
    /// By name, from the file's header or Parquet schema (HTTP import): columns of the table
    /// the file lacks get their default; a file column the table lacks is an error.
    ByName,
    /// By position onto these columns of the table, or all of them in order (`COPY`).
    ByPosition(Vec<String>),
}

/// One bulk load, for the engine.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    pub table: String,
    pub path: PathBuf,
    pub format: LoadFormat,
    pub mapping: Mapping,
    /// Create the table from the file's columns when it does not exist (the caller may
    /// create tables); otherwise a missing table is 42P01.
    pub create: bool,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub rows: u64,
    pub created: bool,
}

/// A table name a load may name: one plain identifier (no schema, no quoting games).
pub fn validate_table(table: &str) -> Result<()> {
    let mut chars = table.chars();
    let ok = table.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(with_sqlstate(
            Error::validation(
                "table",
                "identifier",
                "a table name is a letter or underscore, then letters, digits or underscores (at most 63)",
            ),
            "42602",
        ))
    }
}

/// What `COPY table [(columns)] FROM STDIN [options]` asks for: the table, the columns in
/// the data's order, and the format. Only `text` and `csv` are taken (no `binary`).
pub fn copy_request(statement: &Statement) -> Result<(String, Vec<String>, CopyFormat)> {
    let Statement::Copy {
        source:
            sqlparser::ast::CopySource::Table {
                table_name,
                columns,
            },
        options,
        legacy_options,
        ..
    } = statement
    else {
        return Err(Error::internal());
    };
    let table = table_name.to_string();
    let columns = columns.iter().map(|c| c.value.clone()).collect();
    let mut csv = false;
    let mut header = false;
    let mut delimiter = None;
    let mut null = None;
    let mut quote = '"';
    let mut escape = None;
    let unsupported = |what: String| {
        with_sqlstate(
            Error::validation(
                "sql",
                "copy_option",
                format!("COPY option {what} is not supported"),
            ),
            "0A000",
        )
    };
    for option in options {
        match option {
            CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                "csv" => csv = true,
                "text" => csv = false,
                other => return Err(unsupported(format!("FORMAT {other}"))),
            },
            CopyOption::Header(h) => header = *h,
            CopyOption::Delimiter(d) => delimiter = Some(*d),
            CopyOption::Null(n) => null = Some(n.clone()),
            CopyOption::Quote(q) => quote = *q,
            CopyOption::Escape(e) => escape = Some(*e),
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            CopyOption::Freeze(_) => {}
            other => return Err(unsupported(other.to_string())),
        }
    }
    for option in legacy_options {
        match option {
            CopyLegacyOption::Csv(csv_options) => {
                csv = true;
                for o in csv_options {
                    match o {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(q) => quote = *q,
                        CopyLegacyCsvOption::Escape(e) => escape = Some(*e),
                        other => return Err(unsupported(other.to_string())),
                    }
                }
            }
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Delimiter(d) => delimiter = Some(*d),
            CopyLegacyOption::Null(n) => null = Some(n.clone()),
            other => return Err(unsupported(other.to_string())),
        }
    }
    let format = if csv {
        CopyFormat::Csv(CsvOptions {
            header,
            delimiter: delimiter.unwrap_or(','),
            quote,
            escape: escape.unwrap_or(quote),
            null: null.unwrap_or_default(),
        })
    } else {
        CopyFormat::Text {
            header,
            delimiter: delimiter.unwrap_or('\t'),
            null: null.unwrap_or_else(|| "\\N".to_string()),
        }
    };
    Ok((table, columns, format))
}

/// The format data arrives in on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyFormat {
    Csv(CsvOptions),
    /// PostgreSQL's text format.
    Text {
        header: bool,
        delimiter: char,
        null: String,
    },
}

/// A file being written in the gateway's spool directory; removed when dropped (loaded or
/// not), so nothing a client sent outlives its request.
pub struct Spool {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    written: u64,
    limit: u64,
    /// For the text format: the decoder and the line carried over between chunks.
    text: Option<TextDecoder>,
}

impl Spool {
    pub fn create(
        dir: &Path,
        name: &str,
        limit: u64,
        format: Option<&CopyFormat>,
    ) -> Result<Spool> {
        let path = dir.join(format!("{name}.spool"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                tracing::error!(error = %e, path = %path.display(), "cannot create a spool file");
                Error::internal()
            })?;
        let text = match format {
            Some(CopyFormat::Text {
                delimiter,
                null,
                header,
                ..
            }) => Some(TextDecoder {
                delimiter: *delimiter,
                null: null.clone(),
                skip_header: *header,
                pending: Vec::new(),
            }),
            _ => None,
        };
        Ok(Spool {
            path,
            file: std::io::BufWriter::new(file),
            written: 0,
            limit,
            text,
        })
    }

    /// [`Spool::create`] on the blocking pool (creating a file blocks).
    pub async fn open(
        dir: PathBuf,
        name: String,
        limit: u64,
        format: Option<CopyFormat>,
    ) -> Result<Spool> {
        tokio::task::spawn_blocking(move || Spool::create(&dir, &name, limit, format.as_ref()))
            .await
            .map_err(|_| Error::internal())?
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a chunk of what the client sent (chunks may split lines anywhere).
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.written += chunk.len() as u64;
        if self.written > self.limit {
            return Err(with_sqlstate(
                Error::validation(
                    "body",
                    "max_bytes",
                    format!("a load may hold at most {} bytes", self.limit),
                )
                .with_status(413),
                "54000",
            ));
        }
        match &mut self.text {
            Some(decoder) => {
                let csv = decoder.feed(chunk, false)?;
                self.file.write_all(&csv)
            }
            None => self.file.write_all(chunk),
        }
        .map_err(io_error)
    }

    /// [`Spool::write`] on the blocking pool (file writes block); an error drops the spool.
    pub async fn append<B: AsRef<[u8]> + Send + 'static>(mut self, chunk: B) -> Result<Spool> {
        tokio::task::spawn_blocking(move || self.write(chunk.as_ref()).map(|()| self))
            .await
            .map_err(|_| Error::internal())?
    }

    /// [`Spool::finish`] on the blocking pool.
    pub async fn complete(mut self) -> Result<Spool> {
        tokio::task::spawn_blocking(move || self.finish().map(|()| self))
            .await
            .map_err(|_| Error::internal())?
    }

    /// Writes what is left and closes the file for reading.
    pub fn finish(&mut self) -> Result<()> {
        if let Some(decoder) = &mut self.text {
            let csv = decoder.feed(&[], true)?;
            self.file.write_all(&csv).map_err(io_error)?;
        }
        self.file.flush().map_err(io_error)
    }

    /// How the engine reads the finished file.
    pub fn format_for(copy: &CopyFormat) -> LoadFormat {
        match copy {
            CopyFormat::Csv(options) => LoadFormat::Csv(options.clone()),
            // The decoder wrote CSV: NULL unquoted and empty, every value quoted.
            CopyFormat::Text { .. } => LoadFormat::Csv(CsvOptions {
                header: false,
                ..CsvOptions::default()
            }),
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn io_error(e: std::io::Error) -> Error {
    tracing::error!(error = %e, "cannot write a spool file");
    Error::internal()
}

/// PostgreSQL's text COPY format to CSV: each line one row, fields split at the delimiter,
/// the null string (before unescaping) for NULL, backslash escapes decoded. The end marker
/// `\.` on its own line ends the data.
struct TextDecoder {
    delimiter: char,
    null: String,
    skip_header: bool,
    pending: Vec<u8>,
}

impl TextDecoder {
    fn feed(&mut self, chunk: &[u8], last: bool) -> Result<Vec<u8>> {
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(pending.len() + 64);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            self.line(&pending[start..start + end], &mut out)?;
            start += end + 1;
        }
        pending.drain(..start);
        if last && !pending.is_empty() {
            self.line(&pending, &mut out)?;
            pending.clear();
        }
        self.pending = pending;
        Ok(out)
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.skip_header {
            self.skip_header = false;
            return Ok(());
        }
        if line == b"\\." {
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| {
            with_sqlstate(
                Error::validation("data", "utf8", "COPY data must be UTF-8"),
                "22021",
            )
        })?;
        for (i, field) in line.split(self.delimiter).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if field == self.null {
                continue; // NULL: empty and unquoted
            }
            out.push(b'"');
            for c in unescape(field).chars() {
                if c == '"' {
                    out.push(b'"');
                }
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            out.push(b'"');
        }
        out.push(b'\n');
        Ok(())
    }
}

/// The text format's backslash sequences: `\b \f \n \r \t \v`, octal `\ooo`, hex `\xhh`, and
/// any other character taken as itself.
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{b}'),
            Some('x') => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match chars.peek().and_then(|d| d.to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            chars.next();
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    out.push('x');
                } else {
                    out.extend(char::from_u32(value));
                }
            }
            Some(d @ '0'..='7') => {
                let mut value = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.extend(char::from_u32(value));
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(format: &CopyFormat, chunks: &[&[u8]]) -> String {
        let dir = std::env::temp_dir();
        let name = format!("enclave-load-test-{}-{}", std::process::id(), chunks.len());
        let mut spool = Spool::create(&dir, &name, 1 << 20, Some(format)).unwrap();
        for c in chunks {
            spool.write(c).unwrap();
        }
        spool.finish().unwrap();
        std::fs::read_to_string(spool.path()).unwrap()
    }

    #[test]
    fn text_format_becomes_csv_across_chunk_boundaries() {
        let text = CopyFormat::Text {
            header: false,
            delimiter: '\t',
            null: "\\N".into(),
        };
        let csv = decode(
            &text,
            &[
                b"1\tsay \"hi\"\t\\N\n2\ttab\\there\\nnew",
                b"line\t\\\\\n3\t\\x41\\101\t\r\n\\.\n",
            ],
        );
        assert_eq!(
            csv,
            "\"1\",\"say \"\"hi\"\"\",\n\"2\",\"tab\there\nnewline\",\"\\\"\n\"3\",\"AA\",\"\"\n"
        );
    }

    #[test]
    fn copy_options_are_read_and_binary_refused() {
        let parse = |sql: &str| {
            let statements = sqlparser::parser::Parser::parse_sql(
                &sqlparser::dialect::PostgreSqlDialect {},
                sql,
            )
            .unwrap();
            copy_request(&statements[0])
        };
        let (table, columns, format) =
            parse("COPY items (id, name) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';')")
                .unwrap();
        assert_eq!(table, "items");
        assert_eq!(columns, ["id", "name"]);
        assert_eq!(
            format,
            CopyFormat::Csv(CsvOptions {
                header: true,
                delimiter: ';',
                ..CsvOptions::default()
            })
        );
        let (_, _, format) = parse("COPY items FROM STDIN").unwrap();
        assert!(matches!(
            format,
            CopyFormat::Text {
                delimiter: '\t',
                ..
            }
        ));
        // psql's \copy … csv header
        let (_, _, format) = parse("COPY items FROM STDIN csv header").unwrap();
        assert!(matches!(
            format,
            CopyFormat::Csv(CsvOptions { header: true, .. })
        ));
        let e = parse("COPY items FROM STDIN (FORMAT binary)").unwrap_err();
        assert_eq!(enclave_core::query::sqlstate(&e), "0A000");
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        for ok in ["items", "_t", "Orders_2024"] {
            validate_table(ok).unwrap();
        }
        for bad in ["", "1t", "a.b", "a b", "t\"", &"x".repeat(64)] {
            assert!(validate_table(bad).is_err(), "{bad}");
        }
    }
}
