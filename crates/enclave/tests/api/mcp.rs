//! The MCP door (docs/mcp.md): the reference MCP Python SDK drives `/mcp` over streamable HTTP
//! (with the initialize handshake and with the stateless protocol) and `enclave mcp` over
//! stdio, as an agent host would. Every tool answers under the same policies as `/v1/query`,
//! a refused write is a tool error with its SQLSTATE, no credentials is 401, and each call is
//! in the query audit with its agent fields.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{Db, Org};
use crate::gateway::test_client;

crate::both!(
    tools_answer_as_the_pipeline_does,
    credentials_are_required,
    a_person_names_the_environment
);

const FIXTURE: &[&str] = &[
    "CREATE TABLE customers (id INTEGER, name VARCHAR, email VARCHAR, region VARCHAR)",
    "INSERT INTO customers VALUES (1, 'Alice Eu', 'alice@corp.example', 'eu'), \
     (2, 'Bruno Eu', 'bruno@corp.example', 'eu'), (3, 'Dmitri Na', 'dmitri@corp.example', 'na')",
    "CREATE TABLE orders (id INTEGER, customer_id INTEGER, amount INTEGER)",
    "INSERT INTO orders VALUES (1, 1, 100), (2, 3, 200)",
    "CREATE TABLE payroll (id INTEGER, salary INTEGER)",
];

/// An environment with the fixture, `pii` masking names (`full`) and e-mails (`hash`),
/// `own-region` keeping callers to their region's customers and `no-payroll` denying
/// analysts the payroll table; returns (env, analyst key).
async fn fixture(o: &Org) -> (String, String) {
    let env = o.env("development").await;
    let eu = json!({"region": "eu"});
    let admin = o
        .attributed_key(&env, &["developer"], "admin", eu.clone())
        .await;
    let analyst = o.attributed_key(&env, &["query:read"], "analyst", eu).await;
    for sql in FIXTURE {
        o.sql(&admin, sql, json!([])).await.expect(200);
    }
    for (kind, policy) in [
        (
            "policies",
            json!({"name": "pii", "type": "column_masking", "rules": [
            {"table": "customers", "column": "name", "function": "full", "exempt_roles": ["owner", "admin"]},
            {"table": "customers", "column": "email", "function": "hash", "exempt_roles": ["owner", "admin"]}]}),
        ),
        (
            "policies",
            json!({"name": "own-region", "type": "row_level_security", "rules": [
            {"table": "customers", "filter": "region = {region}", "exempt_roles": ["owner", "admin"]}]}),
        ),
        (
            "abac-policies",
            json!({"name": "no-payroll", "effect": "deny", "actions": ["query"],
            "resources": ["table:payroll"], "conditions": {"principal.role": {"in": ["analyst"]}}}),
        ),
    ] {
        o.s.post(
            &format!("/v1/environments/{env}/{kind}"),
            Some(&o.token),
            policy,
        )
        .await
        .expect(201);
    }
    (env, analyst)
}

/// Runs the SDK client over `transport` with `args`, making `calls`; its JSON report.
async fn sdk(transport: &str, args: &[&str], calls: &Value) -> Option<Value> {
    use tokio::io::AsyncWriteExt;
    let python = test_client("ENCLAVE_TEST_MCP_PYTHON")?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/mcp_client.py");
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .arg(transport)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(calls.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{transport} {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_str(stdout.trim()).unwrap())
}

fn structured<'a>(report: &'a Value, call: &str) -> &'a Value {
    let result = &report["calls"][call];
    assert_eq!(result["isError"], false, "{call}: {result}");
    &result["structuredContent"]
}

/// A tool error's structured content, checked to be one.
fn tool_error<'a>(report: &'a Value, call: &str) -> &'a Value {
    let result = &report["calls"][call];
    assert_eq!(result["isError"], true, "{call}: {result}");
    &result["structuredContent"]
}

fn column<'a>(table: &'a Value, name: &str) -> &'a Value {
    table["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no column {name} in {table}"))
}

async fn tools_answer_as_the_pipeline_does(db: Db) {
    let o = Org::start(&db).await;
    let (env, analyst) = fixture(&o).await;
    let select = "SELECT id, name, email, region FROM customers ORDER BY id";
    let calls = json!({
        "select": ["query", {"sql": select}],
        "params": ["query", {"sql": "SELECT id FROM customers WHERE id >= $1 ORDER BY id", "params": [2]}],
        "capped": ["query", {"sql": "SELECT id FROM orders ORDER BY id", "max_rows": 1}],
        "write": ["query", {"sql": "INSERT INTO orders VALUES (9, 1, 1)"}],
        "denied": ["query", {"sql": "SELECT * FROM payroll"}],
        "bad_range": ["query", {"sql": "SELECT 1", "max_rows": 0}],
        "unknown_argument": ["query", {"sql": "SELECT 1", "limit": 3}],
        "no_sql": ["query", {}],
        "tables": ["list_tables", {}],
        "describe": ["describe_table", {"table": "customers"}],
        "describe_denied": ["describe_table", {"table": "payroll"}],
        "describe_missing": ["describe_table", {"table": "nope"}],
        "explain": ["explain_access", {"table": "customers"}],
        "explain_all": ["explain_access", {}],
        "other_environment": ["query", {"sql": "SELECT 1", "environment": "env_01jzzzzzzzzzzzzzzzzzzzzzzz"}],
        "unknown_tool": ["drop_everything", {}],
        "commit": ["query", {"sql": "COMMIT"}],
    });
    // What `/v1/query` answers the same key: the MCP tool must show exactly that.
    let over_http = o.sql(&analyst, select, json!([])).await;
    over_http.expect(200);
    let expected_rows = over_http.body["rows"].clone();
    assert_eq!(
        expected_rows.as_array().unwrap().len(),
        2,
        "{expected_rows}"
    );

    let url = format!("{}/mcp", o.s.url);
    let binary = env!("CARGO_BIN_EXE_enclave");
    let runs: [(&str, Vec<&str>); 3] = [
        ("http", vec![&url, &analyst, "legacy"]),
        ("http", vec![&url, &analyst, "auto"]),
        ("stdio", vec![binary, &o.s.url, &analyst, "legacy"]),
    ];
    let mut ran = 0;
    for (transport, args) in runs {
        let Some(report) = sdk(transport, &args, &calls).await else {
            return;
        };
        ran += 1;
        let how = format!("{transport} {}", args.last().unwrap());
        let names: Vec<&str> = report["tools"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["query", "list_tables", "describe_table", "explain_access"],
            "{how}"
        );
        // A key acts in its own environment: `environment` is not required of it.
        for tool in report["tools"]["tools"].as_array().unwrap() {
            let required = tool["inputSchema"]["required"].as_array().unwrap();
            assert!(!required.contains(&json!("environment")), "{how}: {tool}");
            assert!(tool["description"].as_str().unwrap().len() > 100, "{how}");
        }

        // Masks and the row filter, exactly as over /v1/query.
        let s = structured(&report, "select");
        assert_eq!(s["rows"], expected_rows, "{how}");
        assert_eq!(s["row_count"], 2, "{how}");
        assert_eq!(s["truncated"], false, "{how}");
        // The same statement as over /v1/query: answered from the result cache, at no cost.
        assert_eq!(s["cache_hit"], true, "{how}: {s}");
        assert_eq!(s["credits_consumed"], 0.0, "{how}: {s}");
        assert_eq!(s["columns"][1], json!({"name": "name", "type": "varchar"}));
        let text = report["calls"]["select"]["content"][0]["text"]
            .as_str()
            .unwrap();
        assert!(text.starts_with("id | name"), "{how}: {text}");
        assert!(text.contains("(2 rows;"), "{how}: {text}");
        for hidden in ["Alice", "alice@", "Dmitri", "corp.example"] {
            assert!(
                !report["calls"]["select"].to_string().contains(hidden),
                "{how}: {hidden}"
            );
        }
        let s = structured(&report, "params");
        assert_eq!(s["rows"], json!([[2]]), "{how}");
        let s = structured(&report, "capped");
        assert_eq!(
            (&s["rows"], &s["truncated"]),
            (&json!([[1]]), &json!(true)),
            "{how}"
        );

        // A statement without rows: its tag, and PostgreSQL's warning as over /v1/query.
        let s = structured(&report, "commit");
        assert_eq!(s["command"], "COMMIT", "{how}: {s}");
        assert_eq!(s["notices"][0]["sqlstate"], "25P01", "{how}: {s}");

        // Refusals are tool errors naming the SQLSTATE, and the policy where one refused.
        let e = tool_error(&report, "write");
        assert_eq!(e["sqlstate"], "42501", "{how}: {e}");
        let e = tool_error(&report, "denied");
        assert_eq!(
            (&e["sqlstate"], &e["policy_name"]),
            (&json!("42501"), &json!("no-payroll")),
            "{how}: {e}"
        );
        let text = report["calls"]["denied"]["content"][0]["text"]
            .as_str()
            .unwrap();
        assert!(
            text.contains("42501") && text.contains("no-payroll"),
            "{text}"
        );
        let e = tool_error(&report, "bad_range");
        assert_eq!(
            (&e["details"]["field"], &e["details"]["rule"]),
            (&json!("max_rows"), &json!("range"))
        );
        let e = tool_error(&report, "unknown_argument");
        assert_eq!(e["details"]["rule"], "unknown_field", "{e}");
        let e = tool_error(&report, "no_sql");
        assert_eq!(
            (&e["details"]["field"], &e["details"]["rule"]),
            (&json!("sql"), &json!("required"))
        );
        let e = tool_error(&report, "other_environment");
        assert!(
            ["NOT_FOUND", "FORBIDDEN"].contains(&e["code"].as_str().unwrap()),
            "{e}"
        );
        assert!(
            report["calls"]["unknown_tool"]["protocol_error"]["message"]
                .as_str()
                .unwrap()
                .contains("drop_everything"),
            "{how}"
        );

        // Tables as the analyst may see them: masks marked, filters shown, payroll left out.
        let tables = structured(&report, "tables")["tables"].as_array().unwrap();
        let listed: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(listed, ["customers", "orders"], "{how}");
        let customers = structured(&report, "describe");
        assert_eq!(column(customers, "name")["mask"]["function"], "full");
        assert_eq!(column(customers, "email")["mask"]["function"], "hash");
        assert_eq!(column(customers, "region")["mask"], Value::Null);
        assert_eq!(customers["row_filtered"], true);
        assert_eq!(customers["row_filters"][0]["parameters"], json!(["eu"]));
        assert_eq!(
            customers["row_filters"][0]["policies"],
            json!(["own-region"])
        );
        assert_eq!(tables[1]["row_filtered"], false);
        let e = tool_error(&report, "describe_denied");
        assert_eq!(e["policy_name"], "no-payroll");
        assert_eq!(tool_error(&report, "describe_missing")["code"], "NOT_FOUND");
        let explained = &structured(&report, "explain")["evaluation"];
        assert_eq!(explained["decision"], "allow");
        let masked: Vec<&str> = explained["masks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["column"].as_str().unwrap())
            .collect();
        assert_eq!(masked, ["email", "name"], "{explained}");
        let all = &structured(&report, "explain_all");
        assert_eq!(all["evaluation"]["decision"], "deny", "{all}");
        assert_eq!(all["evaluation"]["denied_by"]["name"], "no-payroll");

        // Resources: each visible table's schema, readable; an unknown one is an error.
        let resources: Vec<&str> = report["resources"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["uri"].as_str().unwrap())
            .collect();
        assert_eq!(
            resources,
            [
                format!("enclave://{env}/tables/customers"),
                format!("enclave://{env}/tables/orders")
            ],
            "{how}"
        );
        let read = &report["reads"][format!("enclave://{env}/tables/customers")];
        let schema: Value =
            serde_json::from_str(read["contents"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(column(&schema, "email")["mask"]["function"], "hash");
        assert!(
            report["reads"]["missing"]["protocol_error"].is_object(),
            "{how}"
        );
    }
    if ran == 0 {
        return;
    }

    // Each call is in the query audit with its door and agent fields.
    let r =
        o.s.get(
            &format!("/v1/environments/{env}/audit/queries?limit=200"),
            &o.token,
        )
        .await;
    r.expect(200);
    let mcp: Vec<&Value> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["door"] == "mcp")
        .collect();
    assert!(mcp.len() >= 3 * 8, "{} MCP entries", mcp.len());
    for entry in &mcp {
        assert_eq!(entry["agent"]["framework"], "enclave-test/1.0", "{entry}");
        assert_eq!(entry["agent"]["id"], "support-bot", "{entry}");
    }
    let refused = mcp
        .iter()
        .filter(|e| e["outcome"] == "refused" && e["tables"] == json!(["payroll"]))
        .count();
    assert_eq!(refused, 3, "one refused payroll read per run");
    let verify =
        o.s.get(
            &format!("/v1/environments/{env}/audit/queries/verify"),
            &o.token,
        )
        .await;
    verify.expect(200);
    assert_eq!(verify.body["chain_valid"], true, "{}", verify.body);
}

async fn credentials_are_required(db: Db) {
    let o = Org::start(&db).await;
    let env = o.env("development").await;
    let key = o.query_key(&env, &["query:read"], "analyst").await;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "curl", "version": "1"}}});
    let post = |credential: Option<(&'static str, String)>| {
        let mut req =
            o.s.request(Method::POST, "/mcp", None)
                .header("accept", "application/json, text/event-stream")
                .json(&initialize);
        if let Some((name, value)) = credential {
            req = req.header(name, value);
        }
        o.s.raw(req)
    };
    post(None).await.expect_error(401, "UNAUTHORIZED");
    post(Some(("authorization", "ApiKey ek_nope".into())))
        .await
        .expect_error(401, "UNAUTHORIZED");
    let get = o.s.request(Method::GET, "/mcp", None);
    o.s.raw(get).await.expect_error(401, "UNAUTHORIZED");
    // Any accepted form of the key opens the handshake.
    for credential in [
        ("authorization", format!("ApiKey {key}")),
        ("authorization", format!("Bearer {key}")),
        ("x-api-key", key.clone()),
    ] {
        let r = post(Some(credential)).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A session answers only the caller that opened it.
    let opened = post(Some(("x-api-key", key.clone()))).await;
    let session = opened.header("mcp-session-id").unwrap().to_string();
    let other = o.query_key(&env, &["query:read"], "analyst").await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let in_session = |credential: String| {
        o.s.raw(
            o.s.request(Method::POST, "/mcp", None)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-06-18")
                .header("mcp-session-id", &session)
                .header("x-api-key", credential)
                .json(&list),
        )
    };
    in_session(other).await.expect_error(404, "NOT_FOUND");
    let r = in_session(key.clone()).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.to_string().contains("describe_table"), "{r:?}");
    // A browser page of another origin may not drive it.
    let r =
        o.s.raw(
            o.s.request(Method::POST, "/mcp", None)
                .header("accept", "application/json, text/event-stream")
                .header("x-api-key", key.clone())
                .header("origin", "https://evil.example")
                .json(&initialize),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
}

/// A raw MCP session over HTTP, as a client without an SDK would hold one.
struct RawSession<'a> {
    o: &'a Org,
    auth: String,
    headers: Vec<(&'static str, String)>,
    session: String,
    next_id: u64,
}

impl<'a> RawSession<'a> {
    async fn open(o: &'a Org, auth: String, headers: Vec<(&'static str, String)>) -> Self {
        let mut s = RawSession {
            o,
            auth,
            headers,
            session: String::new(),
            next_id: 1,
        };
        let (_, session) = s
            .send(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"}}}),
            )
            .await;
        s.session = session.expect("a session id");
        s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        s
    }

    /// Posts one message; the JSON-RPC answer (from JSON or server-sent events) and the
    /// session id the server named.
    async fn send(&self, message: Value) -> (Value, Option<String>) {
        let mut req = self
            .o
            .s
            .request(Method::POST, "/mcp", None)
            .header("authorization", &self.auth)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&message);
        if !self.session.is_empty() {
            req = req.header("mcp-session-id", &self.session);
        }
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "{message}: {}", resp.status());
        let session = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.text().await.unwrap();
        let answer = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| !d.is_empty())
            .map(|d| serde_json::from_str(d).unwrap())
            .unwrap_or_else(|| serde_json::from_str(&body).unwrap_or(Value::Null));
        (answer, session)
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let message =
            json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        self.send(message).await.0
    }
}

async fn a_person_names_the_environment(db: Db) {
    let o = Org::start(&db).await;
    let (env, _) = fixture(&o).await;
    let mut s = RawSession::open(&o, format!("Bearer {}", o.token), vec![]).await;
    let tools = s.request("tools/list", json!({})).await;
    for tool in tools["result"]["tools"].as_array().unwrap() {
        assert!(
            tool["inputSchema"]["required"]
                .as_array()
                .unwrap()
                .contains(&json!("environment")),
            "{tool}"
        );
    }
    // Without the environment: a tool error naming the argument.
    let call = json!({"name": "query", "arguments": {"sql": "SELECT count(*) FROM customers"}});
    let r = s.request("tools/call", call).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    let e = &r["result"]["structuredContent"];
    assert_eq!(
        (&e["details"]["field"], &e["details"]["rule"]),
        (&json!("environment"), &json!("required"))
    );
    // With it: the owner is exempt from the masks and filters.
    let call = json!({"name": "query", "arguments": {"sql": "SELECT count(*) FROM customers", "environment": env}});
    let r = s.request("tools/call", call).await;
    assert_eq!(
        r["result"]["structuredContent"]["rows"],
        json!([[3]]),
        "{r}"
    );
    // An environment that is not theirs is refused like over /v1/query.
    let other = json!({"name": "list_tables", "arguments": {"environment": "env_01jzzzzzzzzzzzzzzzzzzzzzzz"}});
    let r = s.request("tools/call", other).await;
    assert_eq!(r["result"]["structuredContent"]["code"], "NOT_FOUND", "{r}");
    // Resources: none listed without the header naming an environment, any read by its URI.
    let r = s.request("resources/list", json!({})).await;
    assert_eq!(r["result"]["resources"], json!([]), "{r}");
    let uri = format!("enclave://{env}/tables/payroll");
    let r = s.request("resources/read", json!({"uri": uri})).await;
    let schema: Value =
        serde_json::from_str(r["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(schema["name"], "payroll", "{r}");
    let r = s
        .request(
            "resources/read",
            json!({"uri": "enclave://nowhere/customers"}),
        )
        .await;
    assert_eq!(r["error"]["data"]["details"]["rule"], "resource_uri", "{r}");
    let headers = vec![("x-enclave-environment", env.clone())];
    let s = RawSession::open(&o, format!("Bearer {}", o.token), headers).await;
    let r = s
        .send(json!({"jsonrpc": "2.0", "id": 9, "method": "resources/list", "params": {}}))
        .await
        .0;
    let uris: Vec<&str> = r["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris.len(), 3, "the owner reads payroll too: {r}");
}
