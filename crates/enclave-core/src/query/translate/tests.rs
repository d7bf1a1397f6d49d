use crate::query::{parse, sqlstate, Dialect};

fn duck(sql: &str) -> String {
    parse(sql, Dialect::DuckDb).unwrap()[0].sql.clone()
}

fn pg(sql: &str) -> String {
    parse(sql, Dialect::Postgres).unwrap()[0].sql.clone()
}

fn refused(sql: &str, dialect: Dialect) -> String {
    let e = parse(sql, dialect).unwrap_err();
    assert_eq!(sqlstate(&e), "0A000", "{sql}: {e:?}");
    e.message
}

#[test]
fn conditional_functions_become_case_and_coalesce() {
    assert_eq!(
        duck("SELECT IFF(a > 1, 'x', 'y') FROM t"),
        "SELECT CASE WHEN (a > 1) THEN 'x' ELSE 'y' END FROM t"
    );
    assert_eq!(
        duck("SELECT NVL(a, 0) FROM t"),
        "SELECT COALESCE(a, 0) FROM t"
    );
    assert_eq!(
        pg("SELECT DECODE(a, 1, 'one', NULL, 'none', 'other') FROM t"),
        "SELECT CASE WHEN a IS NOT DISTINCT FROM 1 THEN 'one' WHEN a IS NOT DISTINCT FROM NULL THEN 'none' ELSE 'other' END FROM t"
    );
    // Two arguments is PostgreSQL's own decode(text, format): left alone.
    assert_eq!(
        pg("SELECT decode(a, 'hex') FROM t"),
        "SELECT decode(a, 'hex') FROM t"
    );
}

#[test]
fn nested_calls_translate_inside_out() {
    assert_eq!(
        duck("SELECT IFF(NVL(a, 0) > 1, 1, 0) FROM t"),
        "SELECT CASE WHEN (COALESCE(a, 0) > 1) THEN 1 ELSE 0 END FROM t"
    );
}

#[test]
fn division_is_exact_on_postgres() {
    assert_eq!(pg("SELECT 7 / 2"), "SELECT 7 * 1.0 / 2");
    assert_eq!(duck("SELECT 7 / 2"), "SELECT 7 / 2");
}

#[test]
fn dates_keep_their_type_when_the_statement_shows_it() {
    assert_eq!(
        duck("SELECT DATEADD(year, -1, '2024-02-29'::DATE)"),
        "SELECT CAST((('2024-02-29'::DATE) + (-1) * INTERVAL '1 year') AS DATE)"
    );
    assert_eq!(
        duck("SELECT DATEADD(hour, 1, d) FROM t"),
        "SELECT d + 1 * INTERVAL '1 hour' FROM t"
    );
    assert!(
        refused("SELECT DATEADD(fortnight, 1, d) FROM t", Dialect::DuckDb).contains("fortnight")
    );
}

#[test]
fn colon_paths_and_casts_to_text() {
    assert_eq!(
        duck("SELECT v:a.b::STRING FROM t"),
        r#"SELECT json_extract_string(v, '$."a"."b"') FROM t"#
    );
    assert_eq!(
        pg("SELECT v:a.b::STRING FROM t"),
        "SELECT jsonb_extract_path_text(CAST(v AS JSONB), 'a', 'b') FROM t"
    );
    assert_eq!(
        duck("SELECT v:price::FLOAT * 2 FROM t"),
        r#"SELECT json_extract_string(v, '$."price"')::DOUBLE * 2 FROM t"#
    );
    // Read with Snowflake's grammar: the engine grammars misread the colon after a call.
    assert_eq!(
        duck("SELECT PARSE_JSON('[1]')[0]:x::INT"),
        r#"SELECT json_extract_string(json_extract(CAST('[1]' AS JSON), '$[0]'), '$."x"')::INT"#
    );
}

#[test]
fn query_clauses() {
    assert_eq!(
        duck("SELECT TOP 2 x FROM t ORDER BY x"),
        "SELECT x FROM t ORDER BY x LIMIT 2"
    );
    assert_eq!(duck("SELECT 1 MINUS SELECT 2"), "SELECT 1 EXCEPT SELECT 2");
    assert_eq!(
        duck("SELECT column1 FROM VALUES (1), (2)"),
        "SELECT column1 FROM (VALUES (1), (2)) AS enclave_values (column1)"
    );
    assert_eq!(
        pg("SELECT g, ROW_NUMBER() OVER (ORDER BY x) AS rn FROM t QUALIFY rn = 1"),
        "SELECT g, rn FROM (SELECT g, ROW_NUMBER() OVER (ORDER BY x) AS rn, (ROW_NUMBER() OVER (ORDER BY x)) = 1 AS enclave_qualify FROM t) AS enclave_q WHERE enclave_qualify"
    );
    assert_eq!(
        duck("SELECT g FROM t QUALIFY ROW_NUMBER() OVER (ORDER BY x) = 1"),
        "SELECT g FROM t QUALIFY ROW_NUMBER() OVER (ORDER BY x) = 1"
    );
    assert!(refused(
        "SELECT * FROM t QUALIFY ROW_NUMBER() OVER (ORDER BY x) = 1",
        Dialect::Postgres
    )
    .contains("QUALIFY"));
    assert_eq!(
        duck("SELECT a FROM t WHERE a ILIKE ANY ('x%', 'y%')"),
        "SELECT a FROM t WHERE (a ILIKE 'x%' OR a ILIKE 'y%')"
    );
}

#[test]
fn types_in_casts_and_tables() {
    assert_eq!(
        duck(
            "CREATE TABLE m (key VARCHAR, v VARIANT, n NUMBER(10, 2), s STRING, ts TIMESTAMP_NTZ)"
        ),
        "CREATE TABLE m (key VARCHAR, v JSON, n DECIMAL(10,2), s VARCHAR, ts TIMESTAMP)"
    );
    assert_eq!(
        pg("CREATE TABLE m (v VARIANT, f FLOAT, t TIMESTAMP_LTZ)"),
        "CREATE TABLE m (v JSONB, f DOUBLE PRECISION, t TIMESTAMP WITH TIME ZONE)"
    );
    assert_eq!(duck("SELECT 12::NUMBER"), "SELECT 12::DECIMAL(38,0)");
}

#[test]
fn flatten_becomes_a_lateral_derived_table() {
    let sql = duck("SELECT f.value FROM t, LATERAL FLATTEN(input => t.j) AS f");
    assert!(sql.contains("LATERAL (SELECT 1 AS seq"), "{sql}");
    assert!(sql.ends_with("AS f"), "{sql}");
    let sql = pg("SELECT value FROM TABLE(FLATTEN(input => PARSE_JSON('[1]')))");
    assert!(sql.contains("jsonb_array_elements"), "{sql}");
    assert!(refused("SELECT FLATTEN(input => x) FROM t", Dialect::DuckDb).contains("FLATTEN"));
    assert!(refused(
        "SELECT * FROM t, LATERAL FLATTEN(input => t.j, outer => TRUE) f",
        Dialect::DuckDb
    )
    .contains("outer"));
}

#[test]
fn functions_the_engines_have_are_left_alone() {
    assert_eq!(
        duck("SELECT upper(x), strftime(d, '%Y') FROM t"),
        "SELECT upper(x), strftime(d, '%Y') FROM t"
    );
    assert_eq!(
        pg("SELECT date_trunc(p, d) FROM t"),
        "SELECT date_trunc(p, d) FROM t"
    );
}

#[test]
fn the_audit_keeps_the_statement_as_written() {
    let parsed = &parse("SELECT IFF(a = 'secret', 1, 2) FROM t", Dialect::DuckDb).unwrap()[0];
    assert_eq!(parsed.redacted, "SELECT IFF(a = ?, ?, ?) FROM t");
}

#[test]
fn the_clock_on_the_embedded_engine_is_utc_without_time_zones() {
    assert_eq!(
        duck("SELECT CURRENT_DATE"),
        "SELECT CAST(make_timestamp(epoch_us(get_current_timestamp())) AS DATE)"
    );
    assert_eq!(
        duck("SELECT CURRENT_TIMESTAMP"),
        "SELECT get_current_timestamp()"
    );
    assert_eq!(pg("SELECT CURRENT_DATE"), "SELECT CURRENT_DATE");
    assert_eq!(pg("SELECT SYSDATE()"), "SELECT (now() AT TIME ZONE 'UTC')");
    assert!(!parse("SELECT CURRENT_DATE", Dialect::DuckDb).unwrap()[0].cacheable);
}
