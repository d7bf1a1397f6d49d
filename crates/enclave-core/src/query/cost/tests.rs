use super::*;
use crate::query::{parse, Dialect};

fn cost(sql: &str) -> Cost {
    let statements = parse(sql, Dialect::DuckDb).unwrap();
    Cost::of(&statements[0])
}

fn credits(sql: &str, rows: u64) -> String {
    cost(sql).credits(rows).to_string()
}

fn scans_whole(sql: &str) -> Option<String> {
    cost(sql).full_scan
}

#[test]
fn the_worked_examples_of_the_docs() {
    // A point lookup: one table, bounded, named columns, one row.
    assert_eq!(credits("SELECT name FROM customers WHERE id = 42", 1), "1");
    // A join on a key with a bounded side: two tables.
    assert_eq!(
        credits(
            "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = 7",
            1
        ),
        "1.5"
    );
    // A whole scan with SELECT *: 1 + 2 + 1.
    assert_eq!(credits("SELECT * FROM events", 500), "4");
    // 25 000 rows: two started blocks beyond the first 10 000.
    assert_eq!(credits("SELECT * FROM events", 25_000), "6");
    assert_eq!(credits("SELECT * FROM events", 10_000), "4");
    assert_eq!(credits("SELECT * FROM events", 10_001), "5");
    assert_eq!(credits("SELECT * FROM events", 20_000), "5");
    assert_eq!(credits("SELECT * FROM events", 20_001), "6");
}

#[test]
fn session_statements_are_free() {
    for sql in [
        "SET search_path = public",
        "SHOW timezone",
        "BEGIN",
        "COMMIT",
    ] {
        assert_eq!(credits(sql, 0), "0", "{sql}");
    }
    assert_eq!(credits("SELECT 1", 1), "1", "no table counts as one");
}

#[test]
fn tables_count_once_each_through_subqueries_ctes_and_unions() {
    assert_eq!(
        cost("SELECT a FROM t WHERE a = 1 UNION SELECT a FROM t WHERE a = 2").tables,
        1
    );
    assert_eq!(
        cost("WITH x AS (SELECT a FROM t WHERE a = 1) SELECT * FROM x JOIN u ON u.a = x.a").tables,
        2,
        "the CTE's name is not a table"
    );
    assert_eq!(
        cost("SELECT a FROM t WHERE a IN (SELECT b FROM u WHERE b > 3)").tables,
        2
    );
}

#[test]
fn a_predicate_on_a_constant_bounds_its_table() {
    for sql in [
        "SELECT a FROM t WHERE a = 1",
        "SELECT a FROM t WHERE 1 = a",
        "SELECT a FROM t WHERE a > $1",
        "SELECT a FROM t WHERE t.a BETWEEN 1 AND 5",
        "SELECT a FROM t WHERE a IN (1, 2, 3)",
        "SELECT a FROM t WHERE a IN (SELECT b FROM u WHERE b = 1)",
        "SELECT a FROM t WHERE name LIKE 'abc%'",
        "SELECT a FROM t WHERE created_at >= DATE '2026-01-01' + INTERVAL 1 DAY",
        "SELECT a FROM t WHERE (a = 1 AND b = 2)",
        "SELECT a FROM t WHERE a = 1 OR a = 2",
        "SELECT a FROM t WHERE a = 1 AND NOT b = 2",
        "SELECT a FROM main.t WHERE t.a = 1",
        "SELECT a FROM t AS x WHERE x.a = 1",
    ] {
        assert_eq!(scans_whole(sql), None, "{sql}");
    }
}

#[test]
fn anything_else_scans_the_whole_table() {
    for sql in [
        "SELECT a FROM t",
        "SELECT a FROM t WHERE a = b",
        "SELECT a FROM t WHERE a <> 1",
        "SELECT a FROM t WHERE NOT a = 1",
        "SELECT a FROM t WHERE a = 1 OR b = 2 OR c > 3 OR c IS NULL",
        "SELECT a FROM t WHERE name LIKE '%abc'",
        "SELECT a FROM t WHERE a NOT IN (1, 2)",
        "SELECT a FROM t WHERE lower(a) = 'x'",
        "SELECT a FROM t WHERE a = (SELECT max(b) FROM u WHERE u.b = 1)",
        "SELECT a FROM t LIMIT 10",
    ] {
        assert_eq!(scans_whole(sql).as_deref(), Some("t"), "{sql}");
    }
    // A subquery's own table is judged in its own scope.
    assert_eq!(
        scans_whole("SELECT a FROM t WHERE a IN (SELECT b FROM u)").as_deref(),
        Some("u")
    );
}

#[test]
fn joins_bound_through_keys_and_qualified_columns() {
    assert_eq!(
        scans_whole(
            "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = 7"
        ),
        None,
        "the key equality carries the bound across"
    );
    assert_eq!(
        scans_whole("SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id")
            .as_deref(),
        Some("orders")
    );
    assert_eq!(
        scans_whole(
            "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id WHERE id = 7"
        )
        .as_deref(),
        Some("orders"),
        "an unqualified column names no table when two are read"
    );
    assert_eq!(
        scans_whole("SELECT o.id FROM orders o, customers c WHERE o.id = 7 AND c.region = 'eu'"),
        None
    );
    assert_eq!(
        scans_whole(
            "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id OR c.id = 1 WHERE o.id = 7"
        )
        .as_deref(),
        Some("customers"),
        "a key equality under OR holds for one branch only"
    );
    assert_eq!(
        scans_whole("WITH x AS (SELECT a FROM t WHERE a = 1) SELECT * FROM x"),
        None,
        "reading a CTE scans no table"
    );
    assert_eq!(
        scans_whole("SELECT * FROM (SELECT a FROM t WHERE a = 1) AS d"),
        None,
        "a derived table scans no table of its own"
    );
}

#[test]
fn writes_scan_what_their_predicates_leave_whole() {
    assert_eq!(scans_whole("UPDATE t SET a = 1 WHERE id = 3"), None);
    assert_eq!(scans_whole("UPDATE t SET a = 1").as_deref(), Some("t"));
    assert_eq!(scans_whole("DELETE FROM t WHERE id IN (1, 2)"), None);
    assert_eq!(scans_whole("DELETE FROM t").as_deref(), Some("t"));
    assert_eq!(scans_whole("INSERT INTO t VALUES (1), (2)"), None);
    assert_eq!(
        scans_whole("INSERT INTO t SELECT * FROM u").as_deref(),
        Some("u")
    );
    assert_eq!(scans_whole("CREATE TABLE x (a INT)"), None);
    assert_eq!(scans_whole("EXPLAIN SELECT * FROM t"), None);
    assert!(!cost("EXPLAIN SELECT * FROM t").selects_star);
}

#[test]
fn star_is_a_select_list_wildcard() {
    assert!(cost("SELECT * FROM t WHERE a = 1").selects_star);
    assert!(cost("SELECT t.* FROM t WHERE a = 1").selects_star);
    assert!(cost("SELECT a FROM (SELECT * FROM t WHERE a = 1) d").selects_star);
    assert!(!cost("SELECT count(*) FROM t").selects_star);
}

#[test]
fn the_estimate_reads_rows_from_statistics_within_limits() {
    let stats = |t: &str| (t == "events").then_some(55_000);
    let cap = 1_000_000;
    // Whole scan: the table's rows.
    assert_eq!(
        cost("SELECT * FROM events")
            .estimate(stats, cap)
            .to_string(),
        "9"
    );
    assert_eq!(
        cost("SELECT * FROM events").needs_statistics(),
        Some("events")
    );
    // … at most the LIMIT, at most the row cap.
    assert_eq!(
        cost("SELECT * FROM events LIMIT 5")
            .estimate(stats, cap)
            .to_string(),
        "4"
    );
    assert_eq!(
        cost("SELECT * FROM events")
            .estimate(stats, 10_000)
            .to_string(),
        "4"
    );
    // An aggregate returns one row; a bounded read few.
    assert_eq!(
        cost("SELECT count(*) FROM events")
            .estimate(stats, cap)
            .to_string(),
        "3"
    );
    assert_eq!(cost("SELECT count(*) FROM events").needs_statistics(), None);
    assert_eq!(
        cost("SELECT a FROM events WHERE id = 1")
            .estimate(stats, cap)
            .to_string(),
        "1"
    );
    // Unknown statistics count no rows.
    assert_eq!(
        cost("SELECT a FROM other").estimate(stats, cap).to_string(),
        "3"
    );
    // Writes: VALUES rows, or the table's rows for an unbounded UPDATE/DELETE.
    let values: Vec<String> = (0..10_001).map(|i| format!("({i})")).collect();
    let insert = format!("INSERT INTO events VALUES {}", values.join(","));
    assert_eq!(cost(&insert).estimate(stats, cap).to_string(), "2");
    assert_eq!(
        cost("DELETE FROM events").estimate(stats, cap).to_string(),
        "8"
    );
}

#[test]
fn predicates_as_deep_as_the_limits_allow_are_walked_without_overflow() {
    // The deepest the parser accepts (its recursion limit), and the longest chain within
    // `max_depth`.
    let depth = 40;
    let nested_or = format!(
        "SELECT a FROM t WHERE {}a = 0{}",
        "(a = 1 OR ".repeat(depth / 2),
        ")".repeat(depth / 2)
    );
    let deep_constant = format!(
        "SELECT a FROM t WHERE a = {}1{}",
        "(1 + ".repeat(depth / 2),
        ")".repeat(depth / 2)
    );
    let long_chain = format!("SELECT a FROM t WHERE a = 0{}", " OR a = 1".repeat(990));
    for sql in [nested_or, deep_constant, long_chain] {
        // Parsed on a thread with a small stack, as the runtime's workers are.
        let cost = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || parse(&sql, Dialect::DuckDb).map(|s| s[0].cost.clone()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(cost.unwrap().full_scan, None, "every form bounds t");
    }
}
