use std::collections::BTreeMap;

use chrono::Utc;

use super::*;
use crate::policy::abac::AbacAction;
use crate::policy::evaluate::{PolicySet, Principal, Request};
use crate::policy::{MaskingRule, PolicyBody, PolicyMode, PolicySpec, RlsRule};
use crate::query::catalog::Column;
use crate::query::parse;
use crate::Role;

fn policies() -> PolicySet {
    let specs = [
        PolicySpec {
            name: "pii".into(),
            description: String::new(),
            enabled: true,
            mode: PolicyMode::Enforce,
            body: PolicyBody::ColumnMasking {
                rules: vec![
                    MaskingRule {
                        table: "customers".into(),
                        column: "email".into(),
                        function: MaskFunction::Hash,
                        visible_chars: None,
                        exempt_roles: vec![Role::Admin],
                    },
                    MaskingRule {
                        table: "customers".into(),
                        column: "ssn".into(),
                        function: MaskFunction::Partial,
                        visible_chars: Some(4),
                        exempt_roles: vec![Role::Admin],
                    },
                ],
            },
        },
        PolicySpec {
            name: "own-region".into(),
            description: String::new(),
            enabled: true,
            mode: PolicyMode::Enforce,
            body: PolicyBody::RowLevelSecurity {
                rules: vec![RlsRule {
                    table: "customers".into(),
                    filter: "customers.region = {region}".into(),
                    exempt_roles: vec![Role::Admin],
                }],
            },
        },
    ];
    let ids = ["pol_a", "pol_b"];
    PolicySet::compile(ids.into_iter().zip(specs.iter())).unwrap()
}

fn catalog() -> Catalog {
    let col = |n: &str, t: &str| Column {
        name: n.into(),
        data_type: t.into(),
    };
    Catalog::new([
        Relation {
            schema: "main".into(),
            name: "customers".into(),
            kind: RelationKind::Table,
            columns: vec![
                col("id", "INTEGER"),
                col("email", "VARCHAR"),
                col("ssn", "VARCHAR"),
                col("region", "VARCHAR"),
            ],
            reads: None,
        },
        Relation {
            schema: "main".into(),
            name: "orders".into(),
            kind: RelationKind::Table,
            columns: vec![col("id", "INTEGER"), col("customer_id", "INTEGER")],
            reads: None,
        },
        Relation {
            schema: "main".into(),
            name: "customer_view".into(),
            kind: RelationKind::View,
            columns: vec![col("email", "VARCHAR")],
            reads: Some(vec!["customers".into()]),
        },
    ])
}

fn run(sql: &str, role: Role) -> Result<Option<Enforced>> {
    let analyzed = parse(sql, Dialect::DuckDb).unwrap().remove(0);
    let c = catalog();
    enforce_as(&analyzed, &c, role)
}

/// The policies' verdict on `analyzed` for a user of `role` (region `eu`), applied.
fn enforce_as(analyzed: &Analyzed, c: &Catalog, role: Role) -> Result<Option<Enforced>> {
    let who = Principal {
        role,
        user_id: Some("usr_1".into()),
        email: None,
        key_id: None,
        attributes: BTreeMap::from([("region".to_string(), "eu".to_string())]),
        scopes: None,
        agent_id: None,
        framework: None,
    };
    let req = Request {
        org_id: "org_1".into(),
        env_id: "env_1".into(),
        action: AbacAction::Query,
        tables: request_tables(Some(c), &analyzed.relations),
        ip: None,
        at: Utc::now(),
    };
    let eval = policies().evaluate(&who, &req);
    let first = max_placeholder(&analyzed.statement);
    enforce(analyzed, &eval, c, Dialect::DuckDb, first, Some("k3y"))
}

fn sql(sql: &str) -> Enforced {
    run(sql, Role::Analyst).unwrap().expect("rewritten")
}

fn refused(text: &str) -> String {
    let e = run(text, Role::Analyst).expect_err(text);
    assert_eq!(crate::query::sqlstate(&e), "42501", "{text}: {e:?}");
    e.details["rule"].as_str().unwrap_or_default().to_string()
}

#[test]
fn references_become_guarded_derived_tables() {
    let e = sql("SELECT * FROM customers WHERE id = $1");
    let text = e.statement.to_string();
    assert!(
        text.starts_with("SELECT * FROM (SELECT CASE WHEN (region = $2) THEN \"id\" END AS \"id\", \
         CASE WHEN (region = $2) THEN sha256(CAST($3 AS VARCHAR) || CAST(\"email\" AS VARCHAR)) END AS \"email\", \
         CASE WHEN (region = $2) THEN '***' || right(CAST(\"ssn\" AS VARCHAR), 4) END AS \"ssn\""),
        "{text}"
    );
    assert!(
        text.contains("FROM customers WHERE (region = $2)) AS customers WHERE id = $1"),
        "{text}"
    );
    assert_eq!(e.params, vec!["eu", "k3y"]);
    assert_eq!(e.columns_masked, vec!["customers.email", "customers.ssn"]);
    assert_eq!(e.row_filters, vec!["customers"]);
}

#[test]
fn every_reference_is_covered_and_shares_parameters() {
    let e = sql("WITH x AS (SELECT email FROM Customers c) SELECT * FROM x \
         JOIN main.customers ON true WHERE EXISTS (SELECT 1 FROM \"CUSTOMERS\" c2) \
         UNION ALL SELECT email FROM memory.main.customers");
    let text = e.statement.to_string();
    assert_eq!(text.matches("FROM Customers WHERE").count(), 1, "{text}");
    assert_eq!(text.matches("FROM main.customers WHERE").count(), 1);
    assert_eq!(text.matches("FROM \"CUSTOMERS\" WHERE").count(), 1);
    assert_eq!(text.matches("FROM memory.main.customers WHERE").count(), 1);
    assert!(text.contains(") c)") && text.contains(") c2)"), "{text}");
    // One filter value and one key, whatever the number of references.
    assert_eq!(e.params.len(), 2);
}

#[test]
fn guards_only_where_predicates_could_run_first() {
    // No predicate of the caller's: their expressions run on the filtered output.
    let e = sql("SELECT g.region, count(*) FROM customers AS g GROUP BY 1 ORDER BY 2 LIMIT 3");
    let text = e.statement.to_string();
    assert!(!text.contains("CASE WHEN"), "{text}");
    assert!(text.contains("WHERE (region = $1)"), "{text}");
    for with_predicates in [
        "SELECT id FROM customers WHERE id > 1",
        "SELECT region FROM customers GROUP BY region HAVING count(*) > 1",
        "SELECT c.id FROM customers c JOIN orders o ON o.customer_id = c.id",
        "SELECT c.id FROM customers c, orders o",
        "SELECT x.n FROM customers c, LATERAL (SELECT c.name AS n) x",
        "SELECT (SELECT max(id) FROM customers WHERE id > 0)",
    ] {
        assert!(
            sql(with_predicates)
                .statement
                .to_string()
                .contains("CASE WHEN"),
            "{with_predicates}"
        );
    }
}

#[test]
fn exempt_roles_and_other_tables_are_left_alone() {
    assert!(run("SELECT * FROM customers", Role::Admin)
        .unwrap()
        .is_none());
    assert!(run("SELECT * FROM orders", Role::Analyst)
        .unwrap()
        .is_none());
}

#[test]
fn writes_see_only_their_rows() {
    let e = sql("UPDATE customers AS c SET region = 'eu' WHERE id = 3");
    assert_eq!(
        e.statement.to_string(),
        "UPDATE customers AS c SET region = 'eu' WHERE (id = 3) AND (c.region = $1)"
    );
    let e = sql("DELETE FROM customers");
    assert_eq!(
        e.statement.to_string(),
        "DELETE FROM customers WHERE (customers.region = $1)"
    );
    let e = sql("INSERT INTO customers (id, region) VALUES (1, 'eu')");
    let text = e.statement.to_string();
    assert!(
        text.starts_with("INSERT INTO customers (\"id\", \"region\") SELECT * FROM (VALUES (1, 'eu')) AS enclave_new (\"id\", \"region\")"),
        "{text}"
    );
    assert!(text.contains(WITH_CHECK_MARK), "{text}");
    // A filter column the INSERT does not give is NULL to the check.
    let e = sql("INSERT INTO customers (id) SELECT id FROM orders");
    assert!(e.statement.to_string().contains("WHEN (NULL = $1)"));
}

#[test]
fn what_cannot_be_proven_safe_is_refused() {
    assert_eq!(
        refused("UPDATE customers SET region = email"),
        "policy_masked_column"
    );
    assert_eq!(
        refused("DELETE FROM customers WHERE email LIKE 'a%'"),
        "policy_masked_column"
    );
    assert_eq!(
        refused("DELETE FROM customers RETURNING *"),
        "policy_masked_column"
    );
    assert_eq!(
        refused("INSERT INTO customers (id, region) VALUES (1, 'x') ON CONFLICT DO NOTHING"),
        "policy_row_filter"
    );
    assert_eq!(refused("EXPLAIN SELECT * FROM customers"), "policy_explain");
    assert_eq!(refused("SELECT * FROM customer_view"), "policy_view");
    assert_eq!(
        refused("CREATE VIEW v AS SELECT * FROM customers"),
        "policy_view"
    );
    assert_eq!(
        refused("ALTER TABLE customers RENAME COLUMN email TO e"),
        "policy_statement"
    );
    assert_eq!(refused("TRUNCATE customers"), "policy_row_filter");
    assert_eq!(
        refused("WITH customers AS (SELECT 1 AS email) SELECT * FROM customers"),
        "policy_cte_name"
    );
    // Tables the catalog does not know cannot be rewritten: 42P01, never passed through.
    let analyzed_missing = run("SELECT * FROM x.other.customers", Role::Analyst).unwrap_err();
    assert_eq!(crate::query::sqlstate(&analyzed_missing), "42P01");
}

#[test]
fn ctas_reads_through_the_policies() {
    let e = sql("CREATE TABLE copy AS SELECT * FROM customers");
    assert!(e.statement.to_string().contains("sha256("));
}

#[test]
fn a_statement_at_the_depth_limit_is_rewritten_without_running_out_of_stack() {
    // The rewrite clones and walks the whole statement; it runs with room for its depth.
    let text = format!(
        "SELECT email FROM customers WHERE id = 1{}",
        " OR id = 1".repeat(950)
    );
    let e = sql(&text);
    assert!(e.statement.to_string().contains("customers"));
}

/// Random mutations of the seed statements (`fuzz_seeds.sql`) through the whole analysis:
/// parse within the limits, classify, the policy rewrite, printing and redaction. Each must
/// end in a statement or an error — never a panic or an overflowed stack. A bounded run with
/// a fixed seed in every test run; `PROPTEST_CASES` runs longer.
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const SEEDS: &str = include_str!("fuzz_seeds.sql");

    /// Pieces the mutations insert: ones that nest, chain, open and close.
    const PIECES: &[&str] = &[
        "(",
        ")",
        "[",
        "]",
        ",",
        ";",
        "+1",
        " OR a = 1",
        " AND ",
        " || 'x'",
        "::INT",
        "[]",
        " UNION ALL SELECT 1",
        "(SELECT ",
        " CASE WHEN 1 THEN ",
        " END",
        " IS NULL",
        " NOT ",
        "$1",
        "$99999999999",
        "'",
        "\"",
        "--",
        "/*",
        "*/",
        " FROM customers",
        " JOIN orders ON ",
        " WHERE ",
        " OVER (",
        " AS ",
        "\u{0}",
        "é",
        " e'\\x'",
        " 1e400",
        " -9223372036854775809",
    ];

    fn seeds() -> Vec<&'static str> {
        SEEDS
            .lines()
            .filter(|l| !l.starts_with("--") && !l.trim().is_empty())
            .collect()
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Insert(usize, usize),
        Repeat(usize, usize, usize),
        Cut(usize),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<usize>(), 0..PIECES.len()).prop_map(|(at, p)| Edit::Insert(at, p)),
            (any::<usize>(), 1..40usize, 1..3000usize)
                .prop_map(|(at, len, n)| Edit::Repeat(at, len, n)),
            any::<usize>().prop_map(Edit::Cut),
        ]
    }

    fn apply(seed: &str, edits: &[Edit]) -> String {
        let mut s: Vec<char> = seed.chars().collect();
        for e in edits {
            let at = |i: usize| if s.is_empty() { 0 } else { i % (s.len() + 1) };
            match *e {
                Edit::Insert(i, p) => {
                    let i = at(i);
                    s.splice(i..i, PIECES[p].chars());
                }
                Edit::Repeat(i, len, n) => {
                    let i = at(i);
                    let end = (i + len).min(s.len());
                    let piece: Vec<char> = s[i..end].to_vec();
                    let repeated: Vec<char> = piece
                        .iter()
                        .cycle()
                        .take(piece.len() * n.min(200_000 / (piece.len() + 1)))
                        .copied()
                        .collect();
                    s.splice(end..end, repeated);
                }
                Edit::Cut(i) => {
                    let i = at(i);
                    s.truncate(i);
                }
            }
        }
        s.into_iter().collect()
    }

    fn analyse(sql: &str) {
        let Ok(statements) = crate::query::parse(sql, Dialect::DuckDb) else {
            return;
        };
        let c = catalog();
        for analyzed in &statements {
            let enforced = enforce_as(analyzed, &c, Role::Analyst);
            analyzed.with_stack(|| {
                let _ = crate::query::redact(&analyzed.statement);
                if let Ok(Some(e)) = &enforced {
                    let _ = e.statement.to_string();
                }
            });
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 300,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn mutated_statements_never_crash_the_analysis(
            seed in 0..64usize,
            edits in proptest::collection::vec(edit(), 0..6),
        ) {
            let seeds = seeds();
            analyse(&apply(seeds[seed % seeds.len()], &edits));
        }
    }
}
