//! Printing answers: aligned tables for people, JSON for scripts.

use std::io::Write;

use serde_json::Value;

/// Prints one line; a closed pipe (`enclave env list | head`) ends the output quietly
/// instead of panicking.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        std::process::exit(0);
    }
}

/// Prints `rows` under `headers`, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        line(padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// A JSON value as a table cell: strings bare, null empty.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn json(v: &Value) {
    line(&serde_json::to_string_pretty(v).unwrap_or_default());
}

/// One object as `key  value` lines (nested objects flattened with dots).
pub fn record(v: &Value) {
    let mut rows = Vec::new();
    flatten("", v, &mut rows);
    table(&["FIELD", "VALUE"], &rows);
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, child, out);
            }
        }
        other => out.push(vec![prefix.to_string(), cell(other)]),
    }
}
