//! `current_user`, `session_user`, `current_role` and `user` answer with the caller — a
//! person's e-mail, an API key's id — on every engine, instead of the engine's own account
//! (`duckdb`, or the PostgreSQL role the gateway connects as). An unaliased result column of
//! one keeps the function's name, as PostgreSQL names it.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_expressions_mut, Expr, FunctionArguments, Statement, Value,
};

const NAMES: [&str; 4] = ["current_user", "session_user", "current_role", "user"];

/// The function's name when `expr` is one of them (called without parentheses or arguments).
fn caller_function(expr: &Expr) -> Option<String> {
    let Expr::Function(f) = expr else { return None };
    if f.name.0.len() != 1 || !matches!(f.args, FunctionArguments::None) {
        return None;
    }
    let name = f.name.0[0].to_string().to_ascii_lowercase();
    NAMES.contains(&name.as_str()).then_some(name)
}

/// Whether `statement` asks who the caller is.
pub fn mentions(statement: &Statement) -> bool {
    visit_expressions(statement, |e| match caller_function(e) {
        Some(_) => ControlFlow::Break(()),
        None => ControlFlow::Continue(()),
    })
    .is_break()
}

/// `statement` with each of the functions replaced by `caller` as text.
pub fn answered(statement: &Statement, caller: &str) -> Statement {
    let mut copy = statement.clone();
    crate::result_columns::alias(&mut copy, &caller_function);
    let _ = visit_expressions_mut(&mut copy, |e| {
        if caller_function(e).is_some() {
            *e = Expr::value(Value::SingleQuotedString(caller.to_string()));
        }
        ControlFlow::<()>::Continue(())
    });
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_core::query::{parse, Dialect};

    fn answer(sql: &str) -> Option<String> {
        let statement = &parse(sql, Dialect::DuckDb).unwrap()[0].statement;
        mentions(statement).then(|| answered(statement, "ada@acme.io").to_string())
    }

    #[test]
    fn the_caller_is_who_the_session_functions_name() {
        assert_eq!(
            answer("SELECT current_user, session_user AS s").as_deref(),
            Some("SELECT 'ada@acme.io' AS \"current_user\", 'ada@acme.io' AS s")
        );
        assert_eq!(
            answer("SELECT count(*) FROM t WHERE owner = current_user").as_deref(),
            Some("SELECT count(*) FROM t WHERE owner = 'ada@acme.io'")
        );
        // A column or a function of that name with arguments is something else.
        assert_eq!(answer("SELECT t.current_user FROM t"), None);
        assert_eq!(answer("SELECT 1"), None);
    }
}
