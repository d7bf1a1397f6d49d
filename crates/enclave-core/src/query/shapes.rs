//! Statement shapes: a text with its number and string literals taken out. Clients send the
//! same statement again and again with other values (`… WHERE id = 42`, then `= 43`); once
//! two texts of one shape have parsed to the same translated tree but for those values, the
//! shape's tree is kept as a template, and a later text of the shape is answered by putting
//! its values into a copy of the template — no tokenizing, parsing or translating — and
//! classifying the result afresh (kind, tables, cost: whatever may depend on a value is
//! worked out again for each text).
//!
//! The scan that finds literals is deliberately narrow: a text with anything it does not
//! read with certainty (comments, backslashes, dollar quotes, prefixed strings such as `E'…'`
//! or `X'…'`, odd numbers) has no shape and is parsed as always. Whatever it does find is
//! checked rather than trusted: a template is kept only when the second text's own parse
//! equals the first text's tree with the second text's values put in, and only when no
//! literal is a function's argument (the translation rewrites some calls according to their
//! arguments' values).

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_expressions_mut, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Statement, Value,
};

use crate::query::Analyzed;

/// Stands for a literal in a shape's key; a text holding it has no shape.
const MARK: char = '\u{1}';

/// A literal as the text wrote it, ready to go into a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Literal {
    /// The number's text (`42`, `1.5`, `2e3`), as the parser keeps it.
    Number(String),
    /// The string's content, quotes undone (`'it''s'` is `it's`).
    Text(String),
}

impl Literal {
    fn value(&self) -> Value {
        match self {
            Literal::Number(n) => Value::Number(n.clone(), false),
            Literal::Text(s) => Value::SingleQuotedString(s.clone()),
        }
    }
}

/// A text's shape: its key (the text with each literal replaced by a mark of its kind) and
/// its literals in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub key: String,
    pub literals: Vec<Literal>,
}

fn identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The shape of `sql`, or `None` when it holds no literal or anything the scan does not read
/// with certainty.
pub(crate) fn shape_of(sql: &str) -> Option<Shape> {
    if sql.contains(['\\', MARK]) {
        return None;
    }
    let bytes = sql.as_bytes();
    let mut key = String::with_capacity(sql.len());
    let mut literals = Vec::new();
    let mut i = 0;
    // Where the text not yet copied to the key starts.
    let mut copied = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let after_identifier = i > 0 && identifier_byte(bytes[i - 1]);
        match b {
            b'\'' => {
                if after_identifier {
                    return None; // E'…', X'…', N'…', U&'…' and friends
                }
                let mut content = String::new();
                let mut j = i + 1;
                loop {
                    let end = j + sql[j..].find('\'')?;
                    content.push_str(&sql[j..end]);
                    if bytes.get(end + 1) == Some(&b'\'') {
                        content.push('\'');
                        j = end + 2;
                    } else {
                        j = end + 1;
                        break;
                    }
                }
                if bytes.get(j).copied().is_some_and(identifier_byte) {
                    return None;
                }
                key.push_str(&sql[copied..i]);
                key.push(MARK);
                key.push('s');
                literals.push(Literal::Text(content));
                i = j;
                copied = i;
            }
            b'"' => {
                // A quoted name, copied as it is.
                let mut j = i + 1;
                loop {
                    let end = j + sql[j..].find('"')?;
                    if bytes.get(end + 1) == Some(&b'"') {
                        j = end + 2;
                    } else {
                        j = end + 1;
                        break;
                    }
                }
                i = j;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => return None,
            b'/' if bytes.get(i + 1) == Some(&b'*') => return None,
            b'$' if !after_identifier => {
                // `$1` is a parameter, part of the shape; `$$` or `$tag$` quotes a string.
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits == 0 {
                    return None;
                }
                i += 1 + digits;
            }
            b'0'..=b'9' | b'.'
                if !after_identifier
                    && (b != b'.' || bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                let (end, integer) = number_end(bytes, i)?;
                key.push_str(&sql[copied..i]);
                key.push(MARK);
                key.push(if integer { 'i' } else { 'n' });
                literals.push(Literal::Number(sql[i..end].to_string()));
                i = end;
                copied = i;
            }
            _ => i += 1,
        }
    }
    if literals.is_empty() {
        return None;
    }
    key.push_str(&sql[copied..]);
    Some(Shape { key, literals })
}

/// Where the number starting at `start` ends, and whether it is an integer; `None` when
/// what follows it would make it something else (`1abc`, `0x1F`, `1.2.3`).
fn number_end(bytes: &[u8], start: usize) -> Option<(usize, bool)> {
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut i = start + digits(start);
    let mut integer = true;
    if bytes.get(i) == Some(&b'.') {
        integer = false;
        i += 1 + digits(i + 1);
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
        let exponent = digits(i + 1 + sign);
        if exponent == 0 {
            return None;
        }
        integer = false;
        i += 1 + sign + exponent;
    }
    match bytes.get(i) {
        Some(&b) if identifier_byte(b) || b == b'.' => None,
        _ => Some((i, integer)),
    }
}

/// The number and string values of a tree, in the order a walk meets them.
fn values_of(statement: &Statement) -> Vec<Literal> {
    let mut found = Vec::new();
    let _ = visit_expressions(statement, |e| {
        if let Expr::Value(v) = e {
            match &v.value {
                Value::Number(n, _) => found.push(Literal::Number(n.to_string())),
                Value::SingleQuotedString(s) => found.push(Literal::Text(s.clone())),
                _ => {}
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// `statement` with its number and string values replaced, in walk order, by `literals`;
/// `None` when their numbers differ.
fn with_values(statement: &Statement, literals: &[Literal]) -> Option<Statement> {
    let mut copy = statement.clone();
    let mut next = literals.iter();
    let mut short = false;
    let _ = visit_expressions_mut(&mut copy, |e| {
        if let Expr::Value(v) = e {
            if matches!(v.value, Value::Number(..) | Value::SingleQuotedString(_)) {
                match next.next() {
                    Some(literal) => v.value = literal.value(),
                    None => {
                        short = true;
                        return ControlFlow::Break(());
                    }
                }
            }
        }
        ControlFlow::Continue(())
    });
    (!short && next.next().is_none()).then_some(copy)
}

/// Whether a literal is some function's argument (at any depth inside it).
pub(crate) fn literal_in_call(statement: &Statement) -> bool {
    let argument_has_literal = |arg: &FunctionArg| {
        let expr = match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
            | FunctionArg::Named {
                arg: FunctionArgExpr::Expr(e),
                ..
            }
            | FunctionArg::ExprNamed {
                arg: FunctionArgExpr::Expr(e),
                ..
            } => e,
            _ => return false,
        };
        visit_expressions(expr, |inner| match inner {
            Expr::Value(v)
                if matches!(v.value, Value::Number(..) | Value::SingleQuotedString(_)) =>
            {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    };
    visit_expressions(statement, |e| match e {
        Expr::Function(f) => {
            let in_args = |args: &FunctionArguments| match args {
                FunctionArguments::List(list) => list.args.iter().any(argument_has_literal),
                _ => false,
            };
            if in_args(&f.args) || in_args(&f.parameters) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// What a shape's first text left: its one statement, translated, to compare the next text's
/// parse with.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    statement: Statement,
    redacted: String,
    depth: usize,
}

impl Template {
    /// The first text of a shape, when it could become a template: one statement whose
    /// values are exactly the text's literals, in order, none of them a function's argument
    /// (as written or as translated).
    pub(crate) fn candidate(shape: &Shape, statements: &[Analyzed]) -> Option<Template> {
        let [analyzed] = statements else {
            return None;
        };
        if analyzed.literal_arguments
            || literal_in_call(&analyzed.statement)
            || values_of(&analyzed.statement) != shape.literals
        {
            return None;
        }
        Some(Template {
            statement: analyzed.statement.clone(),
            redacted: analyzed.redacted.clone(),
            depth: analyzed.depth,
        })
    }

    /// Whether another text of the shape, parsed as `statements`, is this template with its
    /// literals put in.
    pub(crate) fn confirmed_by(&self, shape: &Shape, statements: &[Analyzed]) -> bool {
        let [analyzed] = statements else {
            return false;
        };
        analyzed.redacted == self.redacted
            && analyzed.depth == self.depth
            && with_values(&self.statement, &shape.literals).as_ref() == Some(&analyzed.statement)
    }

    /// The statement of a text of this shape: the template with the text's literals, then
    /// classified as any parsed statement is. `None` sends the text to the parser.
    pub(crate) fn instantiate(&self, shape: &Shape) -> Option<Analyzed> {
        crate::query::with_stack(self.depth, || {
            let statement = with_values(&self.statement, &shape.literals)?;
            super::analyze::classify(statement, self.depth, self.redacted.clone()).ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{parse, Dialect};

    fn key(sql: &str) -> Option<String> {
        shape_of(sql).map(|s| s.key.replace(MARK, "#"))
    }

    #[test]
    fn literals_are_taken_out_of_the_key() {
        let s = shape_of("SELECT abalance FROM t WHERE aid = 42 AND name = 'it''s' OR v > 1.5e3")
            .unwrap();
        assert_eq!(
            s.key.replace(MARK, "#"),
            "SELECT abalance FROM t WHERE aid = #i AND name = #s OR v > #n"
        );
        assert_eq!(
            s.literals,
            [
                Literal::Number("42".into()),
                Literal::Text("it's".into()),
                Literal::Number("1.5e3".into())
            ]
        );
        assert_eq!(key("SELECT * FROM t1 WHERE id = $1"), None, "no literal");
        assert_eq!(
            key("SELECT \"a'1\" FROM t2 WHERE x = .5"),
            Some("SELECT \"a'1\" FROM t2 WHERE x = #n".into())
        );
    }

    #[test]
    fn what_the_scan_cannot_read_has_no_shape() {
        for sql in [
            "SELECT 1 -- note",
            "SELECT /* x */ 1",
            "SELECT E'a\\nb'",
            "SELECT X'00'",
            "SELECT $$x$$, 1",
            "SELECT 0x1F",
            "SELECT 1abc",
            "SELECT 'unterminated",
        ] {
            assert_eq!(shape_of(sql), None, "{sql}");
        }
    }

    fn parsed(sql: &str) -> (Shape, Vec<Analyzed>) {
        (
            shape_of(sql).unwrap(),
            parse(sql, Dialect::Postgres).unwrap(),
        )
    }

    #[test]
    fn a_confirmed_template_answers_as_the_parser_would() {
        let (first, statements) = parsed("SELECT abalance FROM t WHERE aid = 42 AND n = 'a'");
        let template = Template::candidate(&first, &statements).expect("a candidate");
        let (second, statements) = parsed("SELECT abalance FROM t WHERE aid = 7 AND n = 'b'");
        assert!(template.confirmed_by(&second, &statements));
        let (third, expected) = parsed("SELECT abalance FROM t WHERE aid = 99 AND n = 'it''s'");
        let answered = template.instantiate(&third).unwrap();
        assert_eq!(answered.statement, expected[0].statement);
        assert_eq!(answered.sql, expected[0].sql);
        assert_eq!(answered.redacted, expected[0].redacted);
        assert_eq!(answered.kind, expected[0].kind);
        assert_eq!(answered.tables, expected[0].tables);
        assert_eq!(answered.cost, expected[0].cost);
    }

    #[test]
    fn values_the_classification_reads_are_read_again() {
        let (first, statements) = parsed("SELECT * FROM t LIMIT 5");
        let template = Template::candidate(&first, &statements).unwrap();
        let (second, expected) = parsed("SELECT * FROM t LIMIT 500");
        assert!(template.confirmed_by(&second, &expected));
        assert_eq!(
            template.instantiate(&second).unwrap().cost,
            expected[0].cost
        );
        assert_ne!(statements[0].cost, expected[0].cost);
    }

    #[test]
    fn translated_or_called_literals_make_no_template() {
        // A function's argument may steer its translation.
        let (shape, statements) = parsed("SELECT split_part(a, ',', 1) FROM t");
        assert!(Template::candidate(&shape, &statements).is_none());
        let sql = "SELECT IFF(a > 1, 'x', 'y') FROM t";
        let shape = shape_of(sql).unwrap();
        let duck = parse(sql, Dialect::DuckDb).unwrap();
        assert!(Template::candidate(&shape, &duck).is_none());
        // Two statements in one text are parsed as they come.
        let (shape, statements) = parsed("SELECT 1; SELECT 2");
        assert!(Template::candidate(&shape, &statements).is_none());
    }

    #[test]
    fn a_tree_that_differs_refutes_the_template() {
        let (first, statements) = parsed("SELECT a FROM t WHERE b = 1");
        let template = Template::candidate(&first, &statements).unwrap();
        // Same key, but the second parse is compared, not assumed.
        let (second, mut other) = parsed("SELECT a FROM t WHERE b = 2");
        other[0].redacted.push('!');
        assert!(!template.confirmed_by(&second, &other));
    }

    /// The text of `shape` with each literal changed: numbers get a leading digit, strings a
    /// trailing letter.
    fn varied(shape: &Shape, round: usize) -> String {
        let mut out = String::new();
        let mut literals = shape.literals.iter();
        let mut parts = shape.key.split(MARK);
        out.push_str(parts.next().unwrap_or_default());
        for part in parts {
            // Each mark is followed by its kind letter.
            match literals.next().unwrap() {
                Literal::Number(n) => out.push_str(&format!("{round}{n}")),
                Literal::Text(t) => {
                    out.push_str(&format!("'{}{}'", t.replace('\'', "''"), "z".repeat(round)))
                }
            }
            out.push_str(&part[1..]);
        }
        out
    }

    #[test]
    fn every_corpus_statement_built_from_a_template_matches_its_parse() {
        let corpus = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../enclave/tests/corpus/snowflake.jsonl"
        ))
        .unwrap();
        let mut built = 0;
        for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let sql = case["sql"].as_str().unwrap();
            for dialect in [Dialect::DuckDb, Dialect::Postgres] {
                let Some(shape) = shape_of(sql) else { continue };
                let Ok(first) = parse(sql, dialect) else {
                    continue;
                };
                let Some(template) = Template::candidate(&shape, &first) else {
                    continue;
                };
                let second = varied(&shape, 1);
                let Ok(parsed) = parse(&second, dialect) else {
                    continue;
                };
                if !template.confirmed_by(&shape_of(&second).unwrap(), &parsed) {
                    continue;
                }
                let third = varied(&shape, 2);
                let Ok(expected) = parse(&third, dialect) else {
                    continue;
                };
                let answered = template.instantiate(&shape_of(&third).unwrap()).unwrap();
                let expected = &expected[0];
                assert_eq!(answered.statement, expected.statement, "{third}");
                assert_eq!(answered.sql, expected.sql, "{third}");
                assert_eq!(answered.redacted, expected.redacted, "{third}");
                assert_eq!(answered.kind, expected.kind, "{third}");
                assert_eq!(answered.session, expected.session, "{third}");
                assert_eq!(answered.tables, expected.tables, "{third}");
                assert_eq!(answered.cacheable, expected.cacheable, "{third}");
                assert_eq!(answered.cost, expected.cost, "{third}");
                built += 1;
            }
        }
        assert!(
            built > 10,
            "only {built} corpus statements became templates"
        );
    }
}
