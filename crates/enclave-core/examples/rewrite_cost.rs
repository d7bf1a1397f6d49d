//! What stage 7 costs a statement on the CPU: parsing and printing (what every statement
//! gets) next to parsing, evaluating the policies, rewriting and printing, for the query of `bench/enforcement.sh` (a row filter and two
//! masks on its table). Prints `step|microseconds per statement`.
//!
//!   cargo run --release -p enclave-core --example rewrite_cost [ITERATIONS]

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;
use enclave_core::policy::abac::AbacAction;
use enclave_core::policy::evaluate::{PolicySet, Principal, Request};
use enclave_core::policy::{
    MaskFunction, MaskingRule, PolicyBody, PolicyMode, PolicySpec, RlsRule,
};
use enclave_core::query::catalog::{Catalog, Column, Relation, RelationKind};
use enclave_core::query::enforce::{enforce, request_tables};
use enclave_core::query::{parse, Dialect};
use enclave_core::Role;

const QUERY: &str = "SELECT g, sum(v) AS total, count(*) AS n FROM t GROUP BY g ORDER BY g";

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let spec = |name: &str, body| PolicySpec {
        name: name.into(),
        description: String::new(),
        enabled: true,
        mode: PolicyMode::Enforce,
        body,
    };
    let mask = |column: &str, function| MaskingRule {
        table: "t".into(),
        column: column.into(),
        function,
        visible_chars: Some(4),
        exempt_roles: vec![Role::Admin],
    };
    let specs = [
        spec(
            "masks",
            PolicyBody::ColumnMasking {
                rules: vec![
                    mask("email", MaskFunction::Hash),
                    mask("name", MaskFunction::Partial),
                ],
            },
        ),
        spec(
            "region",
            PolicyBody::RowLevelSecurity {
                rules: vec![RlsRule {
                    table: "t".into(),
                    filter: "region = {region}".into(),
                    exempt_roles: vec![Role::Admin],
                }],
            },
        ),
    ];
    let set = PolicySet::compile(["pol_1", "pol_2"].into_iter().zip(specs.iter())).unwrap();
    let column = |name: &str, data_type: &str| Column {
        name: name.into(),
        data_type: data_type.into(),
    };
    let catalog = Catalog::new([Relation {
        schema: "main".into(),
        name: "t".into(),
        kind: RelationKind::Table,
        columns: vec![
            column("id", "BIGINT"),
            column("g", "BIGINT"),
            column("v", "DECIMAL(18,1)"),
            column("region", "VARCHAR"),
            column("email", "VARCHAR"),
            column("name", "VARCHAR"),
        ],
        reads: None,
    }]);
    let who = Principal {
        role: Role::Analyst,
        user_id: None,
        email: None,
        key_id: Some("key_1".into()),
        attributes: BTreeMap::from([("region".to_string(), "eu".to_string())]),
        scopes: None,
        agent_id: None,
        framework: None,
    };

    let time = |f: &mut dyn FnMut()| {
        for _ in 0..iterations / 10 {
            f();
        }
        let started = Instant::now();
        for _ in 0..iterations {
            f();
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
    };
    // The gateway always parses and prints a statement (the engine gets the printed text).
    let parse_only = time(&mut || {
        let statement = parse(QUERY, Dialect::DuckDb).unwrap().remove(0);
        std::hint::black_box(statement.statement.to_string());
    });
    let mut rewritten = String::new();
    let full = time(&mut || {
        let statement = parse(QUERY, Dialect::DuckDb).unwrap().remove(0);
        let request = Request {
            org_id: "org_1".into(),
            env_id: "env_1".into(),
            action: AbacAction::Query,
            tables: request_tables(Some(&catalog), &statement.relations),
            ip: None,
            at: Utc::now(),
        };
        let eval = set.evaluate(&who, &request);
        let out = enforce(&statement, &eval, &catalog, Dialect::DuckDb, 0, Some("key"))
            .unwrap()
            .expect("rewritten");
        rewritten = out.statement.to_string();
    });
    println!("parse + print|{parse_only:.1}");
    println!("parse + evaluate + rewrite + print|{full:.1}");
    println!("policy work|{:.1}", full - parse_only);
    eprintln!("{rewritten}");
}
