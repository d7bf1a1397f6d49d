//! `.env` text: what `import` reads and `export?format=dotenv` writes. Read the common way
//! (`KEY=value`, optional `export `, `#` comments, single quotes literal, double quotes with
//! `\n \r \t \" \\ \$` escapes, quoted values may span lines) — but never with `${VAR}`
//! expansion: a server must not fill values from its own environment. Written so that reading
//! it back gives exactly the same values.

use std::collections::BTreeMap;

use serde_json::json;

use crate::error::{Error, Result};

/// One `KEY=value` of a file, with its line number (1-based) for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub key: String,
    pub value: String,
}

fn syntax(line: usize, message: impl Into<String>) -> Error {
    let message = format!("line {line}: {}", message.into());
    Error::validation("body", "dotenv", message).with_details(json!({
        "field": "body",
        "rule": "dotenv",
        "line": line,
    }))
}

/// Parses `.env` text. Keys are checked against the secret key rule; a key given twice is
/// refused (naming both lines). Error messages never quote a value.
pub fn parse(text: &str) -> Result<Vec<Entry>> {
    let text = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .replace("\r\n", "\n");
    let chars: Vec<char> = text.chars().collect();
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let start_line = line;
        // Leading blanks, then a blank line or a comment.
        while i < chars.len() && matches!(chars[i], ' ' | '\t') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        if chars[i] == '\n' {
            i += 1;
            line += 1;
            continue;
        }
        if chars[i] == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        // KEY (after an optional `export `) up to `=`.
        let rest_of_line: String = chars[i..].iter().take_while(|c| **c != '\n').collect();
        let Some(eq) = rest_of_line.find('=') else {
            return Err(syntax(start_line, "expected KEY=value"));
        };
        let mut key = rest_of_line[..eq].trim();
        if let Some(k) = key
            .strip_prefix("export ")
            .or_else(|| key.strip_prefix("export\t"))
        {
            key = k.trim();
        }
        super::validate_key("key", key).map_err(|_| {
            syntax(
                start_line,
                format!("`{key}` is not a valid key (^[A-Za-z_][A-Za-z0-9_.-]{{0,255}}$)"),
            )
        })?;
        let key = key.to_string();
        i += rest_of_line[..eq].chars().count() + 1;
        while i < chars.len() && matches!(chars[i], ' ' | '\t') {
            i += 1;
        }
        let value = match chars.get(i) {
            Some(&q @ ('"' | '\'')) => {
                i += 1;
                let mut value = String::new();
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(syntax(
                            start_line,
                            format!("the value of {key} has no closing {q}"),
                        ));
                    };
                    i += 1;
                    if c == q {
                        break;
                    }
                    if c == '\n' {
                        line += 1;
                    }
                    if c == '\\' && q == '"' {
                        let Some(&e) = chars.get(i) else { continue };
                        i += 1;
                        match e {
                            'n' => value.push('\n'),
                            'r' => value.push('\r'),
                            't' => value.push('\t'),
                            '"' | '\\' | '$' => value.push(e),
                            other => {
                                if other == '\n' {
                                    line += 1;
                                }
                                value.push('\\');
                                value.push(other);
                            }
                        }
                    } else {
                        value.push(c);
                    }
                }
                // Only blanks or a comment may follow the closing quote.
                let mut j = i;
                while j < chars.len() && matches!(chars[j], ' ' | '\t') {
                    j += 1;
                }
                if j < chars.len() && chars[j] != '\n' && chars[j] != '#' {
                    return Err(syntax(
                        line,
                        format!("unexpected text after the quoted value of {key}"),
                    ));
                }
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                value
            }
            _ => {
                let raw: String = chars[i..].iter().take_while(|c| **c != '\n').collect();
                i += raw.chars().count();
                // An inline comment starts at a `#` preceded by a blank.
                let cut = raw
                    .char_indices()
                    .find(|&(at, c)| c == '#' && raw[..at].ends_with([' ', '\t']))
                    .map_or(raw.len(), |(at, _)| at);
                raw[..cut].trim_end().to_string()
            }
        };
        if let Some(first) = seen.insert(key.clone(), start_line) {
            return Err(syntax(
                start_line,
                format!("{key} is given twice (first on line {first})"),
            ));
        }
        entries.push(Entry {
            line: start_line,
            key,
            value,
        });
    }
    Ok(entries)
}

/// Writes `KEY=value` lines in the order given: plain when the value needs no quoting,
/// single-quoted when it has no `'` or line break, else double-quoted with escapes.
pub fn render<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (key, value) in entries {
        out.push_str(key);
        out.push('=');
        let plain = value.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '@' | '+' | ',')
        });
        if plain {
            out.push_str(value);
        } else if !value.contains(['\'', '\n', '\r']) {
            out.push('\'');
            out.push_str(value);
            out.push('\'');
        } else {
            out.push('"');
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '$' => out.push_str("\\$"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    other => out.push(other),
                }
            }
            out.push('"');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    #[test]
    fn reads_the_common_forms() {
        let text = "\u{feff}# a comment\n\
            PLAIN=abc\n\
            export EXPORTED = spaced value   # trailing comment\n\
            \n\
            HASH=a#b\n\
            SINGLE='lit $HOME \\n # not a comment'\n\
            DOUBLE=\"line1\\nline2\\t\\\"q\\\" \\$HOME \\x\"\n\
            MULTI=\"first\r\nsecond\"\n\
            EMPTY=\n\
            EMPTY_QUOTED=''  # nothing\n\
            dotted.key-1=v\n";
        assert_eq!(
            pairs(text),
            [
                ("PLAIN", "abc"),
                ("EXPORTED", "spaced value"),
                ("HASH", "a#b"),
                ("SINGLE", "lit $HOME \\n # not a comment"),
                ("DOUBLE", "line1\nline2\t\"q\" $HOME \\x"),
                ("MULTI", "first\nsecond"),
                ("EMPTY", ""),
                ("EMPTY_QUOTED", ""),
                ("dotted.key-1", "v"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let e = parse("A=1\n\nB=\"x\ny\"\nC=3\n").unwrap();
        assert_eq!((e[1].line, e[2].line), (3, 5));
    }

    #[test]
    fn refuses_what_it_cannot_read_and_names_the_line() {
        let err = |t: &str| {
            let e = parse(t).unwrap_err();
            (e.details["line"].as_u64().unwrap(), e.message)
        };
        assert_eq!(err("A=1\nnonsense\n").0, 2);
        assert_eq!(err("1BAD=x").0, 1);
        let (line, msg) = err("A=1\nB=\"never closed\nC=2\n");
        assert_eq!(line, 2);
        assert!(msg.contains("no closing"), "{msg}");
        assert!(
            !msg.contains("never closed"),
            "values stay out of errors: {msg}"
        );
        let (line, msg) = err("A=1\nB=2\nA=3\n");
        assert_eq!(line, 3);
        assert!(msg.contains("first on line 1"));
        assert_eq!(err("A='x' trailing\n").0, 1);
    }

    #[test]
    fn renders_readably() {
        let text = render([
            ("A", "plain-value_1.2"),
            ("B", "has space $x"),
            ("C", "it's\nmulti \"q\" \\ $HOME"),
            ("D", ""),
        ]);
        assert_eq!(
            text,
            "A=plain-value_1.2\nB='has space $x'\nC=\"it's\\nmulti \\\"q\\\" \\\\ \\$HOME\"\nD=\n"
        );
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back_the_same(
            values in proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_.-]{0,12}", "[^\u{0}]{0,40}", 0..8)
        ) {
            let text = render(values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let back: BTreeMap<String, String> = parse(&text)
                .unwrap()
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect();
            prop_assert_eq!(back, values);
        }
    }
}
