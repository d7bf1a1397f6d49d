use super::*;

fn one(sql: &str) -> Analyzed {
    let mut v = parse(sql, Dialect::DuckDb).unwrap();
    assert_eq!(v.len(), 1);
    v.remove(0)
}

fn refused(sql: &str) -> Error {
    parse(sql, Dialect::DuckDb).unwrap_err()
}

#[test]
fn kinds() {
    assert_eq!(one("SELECT 1").kind, Kind::Read);
    assert_eq!(one("EXPLAIN SELECT 1").kind, Kind::Read);
    assert_eq!(one("INSERT INTO t VALUES (1)").kind, Kind::Write);
    assert_eq!(one("UPDATE t SET a = 1").kind, Kind::Write);
    assert_eq!(one("DELETE FROM t").kind, Kind::Write);
    assert_eq!(one("EXPLAIN ANALYZE DELETE FROM t").kind, Kind::Write);
    let create = one("CREATE TABLE t (a INT)");
    assert_eq!((create.kind, create.creates), (Kind::Ddl, true));
    let drop = one("DROP TABLE t");
    assert_eq!((drop.kind, drop.creates), (Kind::Ddl, false));
    assert_eq!(one("ALTER TABLE t ADD COLUMN b INT").kind, Kind::Ddl);
    assert_eq!(one("BEGIN").session, Some(SessionCommand::Transaction));
    assert_eq!(one("COMMIT").kind, Kind::Session);
}

#[test]
fn session_commands() {
    assert_eq!(
        one("SET application_name = 'psql'").session,
        Some(SessionCommand::Set {
            name: "application_name".into(),
            value: "psql".into()
        })
    );
    assert_eq!(
        one("SET extra_float_digits TO 3").session,
        Some(SessionCommand::Set {
            name: "extra_float_digits".into(),
            value: "3".into()
        })
    );
    assert_eq!(
        one("SHOW server_version").session,
        Some(SessionCommand::Show {
            name: "server_version".into()
        })
    );
    assert_eq!(
        one("SET TIME ZONE 'UTC'").session,
        Some(SessionCommand::Set {
            name: "timezone".into(),
            value: "UTC".into()
        })
    );
}

#[test]
fn tables_through_joins_subqueries_ctes_and_set_operations() {
    let a = one("WITH recent AS (SELECT * FROM orders WHERE ts > now()) \
         SELECT * FROM recent r JOIN Customers c ON c.id = r.cid \
         WHERE EXISTS (SELECT 1 FROM sales.refunds f WHERE f.oid = r.id) \
         UNION SELECT * FROM \"Archive\"");
    assert_eq!(
        a.tables,
        vec!["Archive", "customers", "orders", "sales.refunds"]
    );
    assert_eq!(one("INSERT INTO t SELECT * FROM u").tables, vec!["t", "u"]);
    assert_eq!(
        one("SELECT * FROM generate_series(1, 3)").tables,
        Vec::<String>::new()
    );
}

#[test]
fn settings_clients_read_are_shown() {
    for sql in [
        "SELECT current_setting('server_version_num')",
        "SELECT pg_catalog.current_setting('TimeZone')",
        "SELECT current_setting('search_path')",
    ] {
        assert_eq!(one(sql).kind, Kind::Read, "{sql}");
    }
}

#[test]
fn the_sandbox_is_named_before_the_engine() {
    for sql in [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_csv_auto('/etc/passwd')",
        "SELECT read_text('/etc/passwd')",
        "SELECT getenv('HOME')",
        "COPY t TO '/tmp/out.csv'",
        "COPY t FROM '/etc/passwd'",
        "COPY (SELECT 1) TO STDOUT",
        "INSTALL httpfs",
        "LOAD httpfs",
        "ATTACH '/tmp/x.db' AS x",
        "PRAGMA enable_external_access",
        "CREATE SECRET s (TYPE s3)",
        "SET ROLE admin",
        "CALL something()",
        "GRANT ALL ON t TO public",
        "SELECT error(email) FROM customers",
        "SELECT current_query()",
        "SELECT stats(email) FROM customers",
        "SELECT query_to_xml('select * from customers', true, false, '')",
        "SELECT most_common_vals FROM pg_catalog.pg_stats",
        "SELECT query FROM pg_stat_activity",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "SELECT * INTO copy FROM customers",
        // The server's paths.
        "SELECT current_setting('temp_directory')",
        "SELECT pg_catalog.current_setting('Secret_Directory')",
        "SELECT current_setting('data_directory')",
        "SELECT current_setting(name) FROM t",
        "SELECT name, setting FROM pg_catalog.pg_settings",
        "SELECT * FROM pg_settings",
    ] {
        let e = refused(sql);
        assert_eq!(
            crate::query::sqlstate(&e),
            "42501",
            "{sql} should be refused, got {e:?}"
        );
    }
    // PostgreSQL's `TABLE name` never runs: refused where the grammar reads it.
    for sql in ["TABLE customers", "SELECT 1 UNION TABLE customers"] {
        for dialect in [Dialect::Postgres, Dialect::DuckDb] {
            assert!(parse(sql, dialect).is_err(), "{sql}");
        }
    }
    let copy = one("COPY t (a, b) FROM STDIN");
    assert_eq!(
        (copy.kind, copy.copy_in.as_deref()),
        (Kind::Write, Some("t"))
    );
}

#[test]
fn syntax_errors_have_a_position() {
    // The string opens at line 2, column 8: 9 characters and a newline before it.
    let e = refused("SELECT 1;\nSELECT 'abc");
    assert_eq!(crate::query::sqlstate(&e), "42601");
    assert_eq!(e.details["position"], 18, "{e:?}");
    let e = refused("SELEC 1");
    assert_eq!(e.details["position"], 1);
}

#[test]
fn multi_statement_strings_are_split() {
    let v = parse("SELECT 1; SELECT 2;", Dialect::Postgres).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].sql, "SELECT 2");
    // One refused statement stops the string before anything runs.
    assert!(parse("SELECT 1; ATTACH 'x' AS y", Dialect::DuckDb).is_err());
}

#[test]
fn only_queries_of_data_alone_may_be_cached() {
    assert!(one("SELECT count(*) FROM t WHERE a > 1").cacheable);
    assert!(one("SELECT IFF(a, 1, 2) FROM t").cacheable);
    assert!(!one("SELECT random() FROM t").cacheable);
    assert!(!one("SELECT count(*) FROM t WHERE d < now()").cacheable);
    assert!(!one("SELECT count(*) FROM t WHERE d < CURRENT_DATE").cacheable);
    assert!(!one("SELECT count(*) FROM t WHERE d < current_timestamp").cacheable);
    assert!(!one("SELECT nextval('s')").cacheable);
    assert!(!one("INSERT INTO t VALUES (1)").cacheable);
    assert!(!one("EXPLAIN SELECT 1").cacheable);
    assert!(!one("SHOW search_path").cacheable);
}
