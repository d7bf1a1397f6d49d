//! Policies through the API: validation (400 naming the rule and field, nothing stored),
//! CRUD, versions and restore, permissions, evaluate, and promotion / clone / diff.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::{Db, Org};

impl Org {
    async fn create(&self, env: &str, kind: &str, body: Value) -> Value {
        let r = self
            .s
            .post(
                &format!("/v1/environments/{env}/{kind}"),
                Some(&self.token),
                body,
            )
            .await;
        r.expect(201);
        r.body.clone()
    }

    async fn names(&self, env: &str, kind: &str) -> Vec<String> {
        let r = self
            .s
            .get(&format!("/v1/environments/{env}/{kind}"), &self.token)
            .await;
        r.expect(200);
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    }

    async fn audit_actions(&self) -> Vec<String> {
        let r = self
            .s
            .get(
                &format!("/v1/organizations/{}/audit/iam?limit=200", self.org),
                &self.token,
            )
            .await;
        r.expect(200);
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect()
    }

    async fn promote(&self, from: &str, body: Value) -> crate::common::Resp {
        self.s
            .post(
                &format!("/v1/environments/{from}/promote"),
                Some(&self.token),
                body,
            )
            .await
    }
}

fn pii() -> Value {
    json!({
        "name": "pii-masking",
        "type": "column_masking",
        "description": "Mask personal data outside the data team",
        "rules": [
            {"table": "customers", "column": "email", "function": "partial", "visible_chars": 4, "exempt_roles": ["admin"]},
            {"table": "customers", "column": "ssn", "function": "hash"}
        ]
    })
}

fn department() -> Value {
    json!({
        "name": "department-isolation",
        "type": "row_level_security",
        "rules": [{"table": "orders", "filter": "department = {department}", "exempt_roles": ["owner", "admin"]}]
    })
}

fn no_export() -> Value {
    json!({
        "name": "no-pii-export",
        "effect": "deny",
        "actions": ["export"],
        "resources": ["table:customers"],
        "conditions": {"principal.role": {"not_in": ["owner"]}},
        "priority": 10
    })
}

async fn validation_names_the_rule_and_field(db: Db) {
    let o = Org::start(&db).await;
    let env = o.env("staging").await;
    let rule = |table: &str, extra: Value| {
        let mut r = json!({"table": table});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    let masking =
        |rules: Vec<Value>| json!({"name": "m", "type": "column_masking", "rules": rules});
    let rls = |filter: &str| {
        json!({"name": "r", "type": "row_level_security", "rules": [
            {"table": "orders", "filter": "region = 'eu'"},
            {"table": "orders", "filter": filter}
        ]})
    };
    let full = json!({"column": "c", "function": "full"});
    let cases: Vec<(Value, &str, &str)> = vec![
        (masking(vec![]), "rules", "non_empty"),
        (
            masking(vec![rule("t", json!({"column": "c"}))]),
            "rules[0].function",
            "required",
        ),
        (
            masking(vec![
                rule("t", full.clone()),
                rule("t", json!({"function": "full"})),
            ]),
            "rules[1].column",
            "required",
        ),
        (
            masking(vec![rule(
                "t",
                json!({"column": "c", "function": "partial"}),
            )]),
            "rules[0].visible_chars",
            "required",
        ),
        (
            masking(vec![rule(
                "t",
                json!({"column": "c", "function": "partial", "visible_chars": 0}),
            )]),
            "rules[0].visible_chars",
            "range",
        ),
        (
            masking(vec![rule(
                "t",
                json!({"column": "c", "function": "partial", "visible_chars": 65}),
            )]),
            "rules[0].visible_chars",
            "range",
        ),
        (
            masking(vec![rule(
                "t",
                json!({"column": "c", "function": "hash", "visible_chars": 4}),
            )]),
            "rules[0].visible_chars",
            "not_allowed",
        ),
        (
            masking(vec![rule("t", json!({"column": "c", "function": "blur"}))]),
            "rules[0].function",
            "type",
        ),
        (
            masking(vec![rule(
                "t",
                json!({"column": "c", "function": "full", "exempt_roles": ["king"]}),
            )]),
            "rules[0].exempt_roles[0]",
            "type",
        ),
        (
            masking(vec![rule(
                "t",
                json!({"column": "c", "function": "full", "exempt_roles": ["admin", "admin"]}),
            )]),
            "rules[0].exempt_roles[1]",
            "unique",
        ),
        (
            masking(vec![rule("bad table", full.clone())]),
            "rules[0].table",
            "identifier",
        ),
        (
            masking(vec![rule(
                "t",
                json!({"column": "c", "function": "full", "colour": "red"}),
            )]),
            "rules[0].colour",
            "unknown_field",
        ),
        (rls("region = "), "rules[1].filter", "sql_syntax"),
        (
            rls("id IN (SELECT id FROM admins)"),
            "rules[1].filter",
            "subquery",
        ),
        (
            rls("pg_sleep(1) IS NULL"),
            "rules[1].filter",
            "function_not_allowed",
        ),
        (
            rls("users.id = {user_id}"),
            "rules[1].filter",
            "other_table",
        ),
        (
            rls("department = {not a placeholder}"),
            "rules[1].filter",
            "unknown_placeholder",
        ),
        (
            rls("department = 'x-{department}'"),
            "rules[1].filter",
            "quoted_placeholder",
        ),
        (rls("amount * 2"), "rules[1].filter", "boolean"),
        (
            rls("true; DROP TABLE orders"),
            "rules[1].filter",
            "single_expression",
        ),
        (
            json!({"name": " ", "type": "column_masking", "rules": [rule("t", full.clone())]}),
            "name",
            "required",
        ),
        (
            json!({"name": "x", "type": "masking", "rules": []}),
            "type",
            "type",
        ),
    ];
    for (body, field, rule) in cases {
        let r =
            o.s.post(
                &format!("/v1/environments/{env}/policies"),
                Some(&o.token),
                body.clone(),
            )
            .await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["field"], field, "{body}");
        assert_eq!(r.body["error"]["details"]["rule"], rule, "{body}");
    }
    let abac = |patch: Value| {
        let mut b = no_export();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let abac_cases: Vec<(Value, &str, &str)> = vec![
        (abac(json!({"actions": []})), "actions", "non_empty"),
        (abac(json!({"actions": ["read"]})), "actions[0]", "type"),
        (
            abac(json!({"resources": ["*", "rows"]})),
            "resources[1]",
            "resource",
        ),
        (abac(json!({"effect": "maybe"})), "effect", "type"),
        (abac(json!({"priority": 1001})), "priority", "range"),
        (
            abac(json!({"conditions": {"principal.role": {"in": ["emperor"]}}})),
            "conditions.principal.role[0]",
            "role",
        ),
        (
            abac(json!({"conditions": {"request.ip": {"in": ["10.0.0.0/40"]}}})),
            "conditions.request.ip.in[0]",
            "cidr",
        ),
        (
            abac(json!({"conditions": {"time": {"start": "25:00", "end": "18:00"}}})),
            "conditions.time.start",
            "time_of_day",
        ),
        (
            abac(
                json!({"conditions": {"time": {"start": "09:00", "end": "18:00", "timezone": "Europe/Atlantis"}}}),
            ),
            "conditions.time.timezone",
            "timezone",
        ),
        (
            abac(json!({"conditions": {"weather": {"in": ["sunny"]}}})),
            "conditions.weather",
            "unknown_condition",
        ),
    ];
    for (body, field, rule) in abac_cases {
        let r =
            o.s.post(
                &format!("/v1/environments/{env}/abac-policies"),
                Some(&o.token),
                body.clone(),
            )
            .await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["field"], field, "{body}");
        assert_eq!(r.body["error"]["details"]["rule"], rule, "{body}");
    }
    // Nothing was stored and nothing audited.
    assert!(o.names(&env, "policies").await.is_empty());
    assert!(o.names(&env, "abac-policies").await.is_empty());
    assert!(!o
        .audit_actions()
        .await
        .iter()
        .any(|a| a.starts_with("policy.")));
}

async fn policies_crud_versions_and_restore(db: Db) {
    let o = Org::start(&db).await;
    let env = o.env("staging").await;
    let created =
        o.s.post(
            &format!("/v1/environments/{env}/policies"),
            Some(&o.token),
            pii(),
        )
        .await;
    created.expect(201);
    let id = created.body["policy_id"].as_str().unwrap().to_string();
    let path = format!("/v1/environments/{env}/policies/{id}");
    assert_eq!(created.header("location"), Some(path.as_str()));
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(created.body["enabled"], true);
    assert_eq!(created.body["mode"], "enforce");
    assert_eq!(created.body["rules"][0]["visible_chars"], 4);

    // One namespace of names per environment, whatever the kind; another environment may
    // reuse the name.
    let mut same_name = no_export();
    same_name["name"] = json!("pii-masking");
    o.s.post(
        &format!("/v1/environments/{env}/abac-policies"),
        Some(&o.token),
        same_name,
    )
    .await
    .expect_error(409, "CONFLICT");
    o.s.post(
        &format!("/v1/environments/{env}/policies"),
        Some(&o.token),
        pii(),
    )
    .await
    .expect_error(409, "CONFLICT");
    let prod = o.env("production").await;
    o.create(&prod, "policies", pii()).await;
    let abac = o.create(&env, "abac-policies", no_export()).await;
    assert_eq!(abac["effect"], "deny");
    assert_eq!(abac["priority"], 10);
    assert_eq!(o.names(&env, "policies").await, ["pii-masking"]);
    assert_eq!(o.names(&env, "abac-policies").await, ["no-pii-export"]);
    // A standard policy is not found under /abac-policies, nor the reverse.
    let abac_id = abac["policy_id"].as_str().unwrap();
    o.s.get(
        &format!("/v1/environments/{env}/abac-policies/{id}"),
        &o.token,
    )
    .await
    .expect_error(404, "NOT_FOUND");
    o.s.get(
        &format!("/v1/environments/{env}/policies/{abac_id}"),
        &o.token,
    )
    .await
    .expect_error(404, "NOT_FOUND");
    o.s.get(&format!("/v1/environments/{prod}/policies/{id}"), &o.token)
        .await
        .expect_error(404, "NOT_FOUND");

    // Disable, switch to shadow, replace; each save is a version.
    let r =
        o.s.patch(&path, &o.token, json!({"enabled": false, "mode": "shadow"}))
            .await;
    r.expect(200);
    assert_eq!(
        (
            r.body["enabled"].clone(),
            r.body["mode"].clone(),
            r.body["version"].clone()
        ),
        (json!(false), json!("shadow"), json!(2))
    );
    assert_eq!(
        r.body["rules"], created.body["rules"],
        "a patch keeps what it does not name"
    );
    let mut whole = pii();
    whole["rules"] = json!([{"table": "customers", "column": "email", "function": "null"}]);
    let r = o.s.put(&path, &o.token, whole).await;
    r.expect(200);
    assert_eq!(r.body["version"], 3);
    assert_eq!(
        r.body["enabled"], true,
        "PUT replaces: absent fields take their defaults"
    );
    // The type cannot change; a stale If-Match is 412; an unchanged save is no new version.
    let mut other_type = department();
    other_type["name"] = json!("pii-masking");
    let r = o.s.put(&path, &o.token, other_type).await;
    r.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(r.error().1, "immutable");
    let stale =
        o.s.raw(
            o.s.request(Method::PATCH, &path, Some(&o.token))
                .header("if-match", "\"1\"")
                .json(&json!({"description": "late"})),
        )
        .await;
    stale.expect_error(412, "PRECONDITION_FAILED");
    o.s.patch(&path, &o.token, json!({"enabled": true}))
        .await
        .expect(200);
    let versions = o.s.get(&format!("{path}/versions"), &o.token).await;
    versions.expect(200);
    let listed: Vec<i64> = versions.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [3, 2, 1]);
    assert_eq!(versions.body["data"][2]["rules"], created.body["rules"]);

    // Restoring version 1 saves its content as version 4.
    let r =
        o.s.post(
            &format!("{path}/versions/1/restore"),
            Some(&o.token),
            json!({}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["version"], 4);
    assert_eq!(r.body["rules"], created.body["rules"]);
    assert_eq!(r.body["mode"], "enforce");
    o.s.post(
        &format!("{path}/versions/9/restore"),
        Some(&o.token),
        json!({}),
    )
    .await
    .expect_error(404, "NOT_FOUND");

    o.s.delete(&path, &o.token).await.expect(204);
    o.s.get(&path, &o.token)
        .await
        .expect_error(404, "NOT_FOUND");
    let actions = o.audit_actions().await;
    let policy_actions: Vec<&str> = actions
        .iter()
        .map(String::as_str)
        .filter(|a| a.starts_with("policy."))
        .collect();
    assert_eq!(
        policy_actions,
        [
            "policy.deleted",
            "policy.updated",
            "policy.updated",
            "policy.updated",
            "policy.created",
            "policy.created",
            "policy.created"
        ],
        "newest first: one entry per saved change, none for the refused or unchanged ones"
    );
    // The environment's delete dry run counts what it holds.
    let dry =
        o.s.delete(&format!("/v1/environments/{env}?dry_run=true"), &o.token)
            .await;
    dry.expect(200);
    assert_eq!(dry.body["would_delete"]["policies"], 1, "{}", dry.body);
}

async fn permissions_and_locked_environments(db: Db) {
    let o = Org::start(&db).await;
    let env = o.env("staging").await;
    let (_, dev) =
        o.s.add_member(&o.token, &o.org, "dev@example.com", "developer")
            .await;
    o.create(&env, "policies", pii()).await;
    // Members read; only owner and admin change.
    let r =
        o.s.get(&format!("/v1/environments/{env}/policies"), &dev)
            .await;
    r.expect(200);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    let r =
        o.s.post(
            &format!("/v1/environments/{env}/policies"),
            Some(&dev),
            department(),
        )
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(r.error().1, "permission:manage_policies");
    // A key needs policies:read to read and policies:manage to change.
    let key = |scopes: Value| {
        let s = &o.s;
        let token = o.token.clone();
        let env = env.clone();
        async move {
            let r = s
                .post(
                    &format!("/v1/environments/{env}/api-keys"),
                    Some(&token),
                    json!({"name": "k", "scopes": scopes, "role": "admin"}),
                )
                .await;
            r.expect(201);
            r.body["key"].as_str().unwrap().to_string()
        }
    };
    let reader = key(json!(["policies:read"])).await;
    let lister =
        o.s.keyed(
            Method::GET,
            &format!("/v1/environments/{env}/policies"),
            &reader,
            None,
        )
        .await;
    lister.expect(200);
    let r =
        o.s.keyed(
            Method::POST,
            &format!("/v1/environments/{env}/policies"),
            &reader,
            Some(department()),
        )
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert_eq!(r.error().1, "scope:policies:manage");
    let manager = key(json!(["policies:manage"])).await;
    o.s.keyed(
        Method::GET,
        &format!("/v1/environments/{env}/policies"),
        &manager,
        None,
    )
    .await
    .expect_error(403, "FORBIDDEN");
    o.s.keyed(
        Method::POST,
        &format!("/v1/environments/{env}/policies"),
        &manager,
        Some(department()),
    )
    .await
    .expect(201);
    // Another organization's user does not learn the environment exists.
    let stranger =
        o.s.signup("someone@example.net", "a-long-password-42")
            .await;
    o.s.get(&format!("/v1/environments/{env}/policies"), &stranger)
        .await
        .expect_error(404, "NOT_FOUND");

    // A locked environment refuses every policy write and keeps what it has.
    o.s.patch(
        &format!("/v1/environments/{env}"),
        &o.token,
        json!({"locked": true}),
    )
    .await
    .expect(200);
    let listed =
        o.s.get(&format!("/v1/environments/{env}/policies"), &o.token)
            .await;
    let id = listed.body["data"][0]["policy_id"]
        .as_str()
        .unwrap()
        .to_string();
    for r in [
        o.s.post(&format!("/v1/environments/{env}/policies"), Some(&o.token), json!({"name": "x", "type": "column_masking", "rules": [{"table": "t", "column": "c", "function": "null"}]})).await,
        o.s.patch(&format!("/v1/environments/{env}/policies/{id}"), &o.token, json!({"enabled": false})).await,
        o.s.delete(&format!("/v1/environments/{env}/policies/{id}"), &o.token).await,
    ] {
        r.expect_error(409, "CONFLICT");
        assert_eq!(r.error().1, "environment_locked");
    }
    let after =
        o.s.get(&format!("/v1/environments/{env}/policies"), &o.token)
            .await;
    assert_eq!(after.body["data"], listed.body["data"]);
}

async fn evaluate_explains_masks_filters_and_decisions(db: Db) {
    let o = Org::start(&db).await;
    let env = o.env("staging").await;
    o.create(&env, "policies", pii()).await;
    o.create(&env, "policies", department()).await;
    o.create(&env, "abac-policies", no_export()).await;
    let mut shadow = json!({"name": "try-region", "type": "row_level_security", "mode": "shadow",
        "rules": [{"table": "orders", "filter": "region = {region}"}]});
    shadow["description"] = json!("trying it on real traffic first");
    o.create(&env, "policies", shadow).await;
    let eval = |body: Value| {
        let s = &o.s;
        let token = o.token.clone();
        let env = env.clone();
        async move {
            let r = s
                .post(
                    &format!("/v1/environments/{env}/policies/evaluate"),
                    Some(&token),
                    body,
                )
                .await;
            r.expect(200);
            r.body.clone()
        }
    };
    let tables = json!({"tables": ["customers", "orders"]});
    // An analyst of the sales department: both masks, the department filter bound.
    let analyst = eval(
        json!({"principal": {"role": "analyst", "attributes": {"department": "sales"}},
        "action": "query", "resource": tables}),
    )
    .await;
    assert_eq!(analyst["decision"], "allow");
    let masks: Vec<(String, String)> = analyst["masks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["column"].as_str().unwrap().into(),
                m["function"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        masks,
        [
            ("email".into(), "partial".into()),
            ("ssn".into(), "hash".into())
        ]
    );
    assert_eq!(analyst["masks"][0]["visible_chars"], 4);
    assert_eq!(analyst["row_filters"][0]["table"], "orders");
    assert_eq!(analyst["row_filters"][0]["predicate"], "department = $1");
    assert_eq!(analyst["row_filters"][0]["parameters"], json!(["sales"]));
    assert_eq!(analyst["shadow"]["would_filter"][0]["predicate"], "false");
    assert_eq!(
        analyst["shadow"]["would_filter"][0]["sources"][0]["missing"],
        json!(["region"])
    );
    // Without a department attribute the filter is FALSE: no rows, not an error.
    let nobody =
        eval(json!({"principal": {"role": "developer"}, "action": "query", "resource": tables}))
            .await;
    assert_eq!(nobody["row_filters"][0]["predicate"], "false");
    assert_eq!(
        nobody["row_filters"][0]["sources"][0]["missing"],
        json!(["department"])
    );
    // An admin: exempt from the email mask and the department filter, not from the hash.
    let admin =
        eval(json!({"principal": {"role": "admin"}, "action": "query", "resource": tables})).await;
    assert_eq!(admin["masks"].as_array().unwrap().len(), 1);
    assert_eq!(admin["masks"][0]["column"], "ssn");
    assert_eq!(admin["row_filters"], json!([]));
    // Export of customers: denied by the ABAC policy for a developer, allowed for the owner.
    let export = eval(json!({"principal": {"role": "developer"}, "action": "export", "resource": {"tables": ["customers"]}})).await;
    assert_eq!(export["decision"], "deny");
    assert_eq!(export["reason"], "policy_denied");
    assert_eq!(export["denied_by"]["name"], "no-pii-export");
    let owner_export = eval(json!({"principal": {"role": "owner"}, "action": "export", "resource": {"tables": ["customers"]}})).await;
    assert_eq!(owner_export["decision"], "allow");
    // RBAC first; a key's scopes too.
    let auditor =
        eval(json!({"principal": {"role": "auditor"}, "action": "query", "resource": tables}))
            .await;
    assert_eq!(auditor["reason"], "permission:execute_queries");
    let key = eval(json!({"principal": {"role": "developer", "scopes": ["read_only"]}, "action": "write", "resource": tables})).await;
    assert_eq!(key["reason"], "scope:query:write");
    // Without a principal: the caller as the gateway would see them (here, the owner).
    let me = eval(json!({"action": "query", "resource": tables})).await;
    assert_eq!(
        me["masks"].as_array().unwrap().len(),
        2,
        "the owner is not exempt: {me}"
    );
    assert_eq!(me["row_filters"], json!([]));
    // A member's attributes fill placeholders when they evaluate as themselves.
    let (uid, analyst_token) =
        o.s.add_member(&o.token, &o.org, "ana@example.com", "analyst")
            .await;
    o.s.patch(
        &format!("/v1/organizations/{}/users/{uid}", o.org),
        &o.token,
        json!({"attributes": {"department": "ops"}}),
    )
    .await
    .expect(200);
    let mine =
        o.s.post(
            &format!("/v1/environments/{env}/policies/evaluate"),
            Some(&analyst_token),
            json!({"action": "query", "resource": tables}),
        )
        .await;
    mine.expect(200);
    assert_eq!(mine.body["row_filters"][0]["parameters"], json!(["ops"]));
    // Bad requests name the field.
    for (body, field) in [
        (json!({"action": "*"}), "action"),
        (
            json!({"action": "query", "resource": {"tables": ["a b"]}}),
            "resource.tables[0]",
        ),
        (
            json!({"action": "query", "context": {"ip": "nowhere"}}),
            "context.ip",
        ),
        (
            json!({"action": "query", "principal": {"role": "analyst", "scopes": ["fly"]}}),
            "principal.scopes[0]",
        ),
    ] {
        let r =
            o.s.post(
                &format!("/v1/environments/{env}/policies/evaluate"),
                Some(&o.token),
                body.clone(),
            )
            .await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["field"], field, "{body}");
    }
}

async fn promotion_carries_policies_by_name(db: Db) {
    let o = Org::start(&db).await;
    let (staging, prod) = (o.env("staging").await, o.env("production").await);
    o.create(&staging, "policies", pii()).await;
    o.create(&staging, "policies", department()).await;
    o.create(&staging, "abac-policies", no_export()).await;
    // Production already has its own version of one, and one of its own.
    let mut old_dept = department();
    old_dept["rules"][0]["filter"] = json!("team = {team}");
    o.create(&prod, "policies", old_dept).await;
    o.create(
        &prod,
        "abac-policies",
        json!({"name": "prod-only", "effect": "deny", "actions": ["ddl"], "resources": ["*"]}),
    )
    .await;
    let prod_before =
        o.s.get(&format!("/v1/environments/{prod}/policies"), &o.token)
            .await
            .body;
    let audit_before = o.audit_actions().await.len();

    let dry = o
        .promote(&staging, json!({"target_env_id": prod, "dry_run": true}))
        .await;
    dry.expect(200);
    assert_eq!(dry.body["status"], "dry_run");
    let c = &dry.body["changes"];
    assert_eq!(
        (
            c["policies_promoted"].clone(),
            c["policies_created"].clone(),
            c["policies_updated"].clone()
        ),
        (json!(3), json!(2), json!(1))
    );
    assert_eq!(
        (
            c["masking_rules_promoted"].clone(),
            c["rls_filters_promoted"].clone(),
            c["abac_policies_promoted"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    // The dry run changed nothing and recorded nothing.
    assert_eq!(
        o.s.get(&format!("/v1/environments/{prod}/policies"), &o.token)
            .await
            .body,
        prod_before
    );
    assert_eq!(o.audit_actions().await.len(), audit_before);
    assert_eq!(
        o.s.get(&format!("/v1/environments/{prod}/promotions"), &o.token)
            .await
            .body["data"],
        json!([])
    );

    let real = o.promote(&staging, json!({"target_env_id": prod})).await;
    real.expect(200);
    assert_eq!(real.body["status"], "completed");
    assert_eq!(real.body["changes"], dry.body["changes"]);
    assert_eq!(
        real.body["details"], dry.body["details"],
        "the dry run said exactly what the real run did"
    );
    let mut names = o.names(&prod, "policies").await;
    names.sort();
    assert_eq!(names, ["department-isolation", "pii-masking"]);
    let mut abac = o.names(&prod, "abac-policies").await;
    abac.sort();
    assert_eq!(
        abac,
        ["no-pii-export", "prod-only"],
        "policies only in the target are kept"
    );
    let prod_dept =
        o.s.get(&format!("/v1/environments/{prod}/policies"), &o.token)
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "department-isolation")
            .unwrap()
            .clone();
    assert_eq!(prod_dept["rules"][0]["filter"], "department = {department}");
    assert_eq!(
        prod_dept["version"], 2,
        "updated in place: a new version of the target's policy"
    );
    let actions = o.audit_actions().await;
    assert_eq!(
        actions.len(),
        audit_before + 4,
        "three policy changes and the promotion"
    );
    assert_eq!(actions[0], "environment.promoted");

    // Nothing left to do: zero changes.
    let again = o.promote(&staging, json!({"target_env_id": prod})).await;
    again.expect(200);
    assert_eq!(again.body["changes"]["policies_promoted"], 0);
    assert_eq!(again.body["details"], json!([]));
    let diff =
        o.s.get(
            &format!("/v1/environments/{staging}/diff?against={prod}"),
            &o.token,
        )
        .await;
    diff.expect(200);
    let statuses: Vec<(String, String)> = diff.body["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("department-isolation".into(), "equal".into()),
            ("no-pii-export".into(), "equal".into()),
            ("pii-masking".into(), "equal".into()),
            ("prod-only".into(), "missing_here".into()),
        ]
    );

    // `include` narrows: only ABAC policies move.
    let list =
        o.s.get(&format!("/v1/environments/{staging}/policies"), &o.token)
            .await;
    let pii_id = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pii-masking")
        .unwrap()["policy_id"]
        .as_str()
        .unwrap()
        .to_string();
    o.s.patch(
        &format!("/v1/environments/{staging}/policies/{pii_id}"),
        &o.token,
        json!({"mode": "shadow"}),
    )
    .await
    .expect(200);
    let only_abac = o
        .promote(
            &staging,
            json!({"target_env_id": prod, "include": ["abac_policies"]}),
        )
        .await;
    only_abac.expect(200);
    assert_eq!(only_abac.body["changes"]["policies_promoted"], 0);
    let masking_only = o
        .promote(
            &staging,
            json!({"target_env_id": prod, "include": ["masking_rules"], "dry_run": true}),
        )
        .await;
    assert_eq!(
        masking_only.body["details"],
        json!([{"kind": "masking_rule", "name": "pii-masking", "action": "updated"}])
    );

    // A locked target refuses and keeps what it has.
    o.s.patch(
        &format!("/v1/environments/{prod}"),
        &o.token,
        json!({"locked": true}),
    )
    .await
    .expect(200);
    let before =
        o.s.get(&format!("/v1/environments/{prod}/policies"), &o.token)
            .await
            .body;
    let refused = o.promote(&staging, json!({"target_env_id": prod})).await;
    refused.expect_error(409, "CONFLICT");
    assert_eq!(refused.error().1, "environment_locked");
    assert_eq!(
        o.s.get(&format!("/v1/environments/{prod}/policies"), &o.token)
            .await
            .body,
        before
    );
    let history =
        o.s.get(&format!("/v1/environments/{prod}/promotions"), &o.token)
            .await;
    assert_eq!(
        history.body["data"].as_array().unwrap().len(),
        3,
        "real runs only"
    );
}

async fn clone_copies_policies(db: Db) {
    let o = Org::start(&db).await;
    let staging = o.env("staging").await;
    o.create(&staging, "policies", pii()).await;
    o.create(&staging, "abac-policies", no_export()).await;
    let r =
        o.s.post(
            &format!("/v1/environments/{staging}/clone"),
            Some(&o.token),
            json!({"name": "Preview 1"}),
        )
        .await;
    r.expect(201);
    let copy = r.body["env_id"].as_str().unwrap().to_string();
    assert_eq!(o.names(&copy, "policies").await, ["pii-masking"]);
    assert_eq!(o.names(&copy, "abac-policies").await, ["no-pii-export"]);
    let diff =
        o.s.get(
            &format!("/v1/environments/{copy}/diff?against={staging}"),
            &o.token,
        )
        .await;
    assert_eq!(diff.body["identical"], true, "{}", diff.body);
    let r =
        o.s.post(
            &format!("/v1/environments/{staging}/clone"),
            Some(&o.token),
            json!({"name": "Preview 2", "include": ["settings"]}),
        )
        .await;
    r.expect(201);
    let bare = r.body["env_id"].as_str().unwrap().to_string();
    assert!(o.names(&bare, "policies").await.is_empty());
    let diff =
        o.s.get(
            &format!("/v1/environments/{bare}/diff?against={staging}"),
            &o.token,
        )
        .await;
    assert_eq!(diff.body["identical"], false);
    assert_eq!(diff.body["policies"][0]["status"], "missing_here");
}

both!(
    validation_names_the_rule_and_field,
    policies_crud_versions_and_restore,
    permissions_and_locked_environments,
    evaluate_explains_masks_filters_and_decisions,
    promotion_carries_policies_by_name,
    clone_copies_policies,
);
