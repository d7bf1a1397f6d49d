//! Secrets through the API, on both backends: CRUD and batches, versions and restore,
//! validation (400 naming field and rule, nothing stored, the value never echoed),
//! permissions of roles and key scopes, import and export, required keys, promotion, clone
//! and diff (names only), and the `secret.changed` event.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::{Db, Org};
use crate::receiver::Receiver;

both!(
    crud_versions_and_validation,
    permissions_of_roles_and_keys,
    import_and_export,
    required_keys_and_diff,
    promotion_and_clone,
    events_name_keys_only,
);

impl Org {
    pub async fn set(&self, env: &str, key: &str, value: &str) -> Value {
        let r = self
            .s
            .post(
                &format!("/v1/environments/{env}/secrets"),
                Some(&self.token),
                json!({"key": key, "value": value}),
            )
            .await;
        r.expect(201);
        r.body.clone()
    }

    pub async fn value(&self, env: &str, key: &str) -> Option<String> {
        let r = self
            .s
            .get(
                &format!("/v1/environments/{env}/secrets/{key}"),
                &self.token,
            )
            .await;
        match r.status {
            200 => Some(r.body["value"].as_str().unwrap().to_string()),
            404 => None,
            other => panic!("{other}: {}", r.body),
        }
    }

    pub async fn keys(&self, env: &str) -> Vec<String> {
        let r = self
            .s
            .get(
                &format!("/v1/environments/{env}/secrets?limit=200"),
                &self.token,
            )
            .await;
        r.expect(200);
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["key"].as_str().unwrap().to_string())
            .collect()
    }

    async fn audit_total(&self) -> i64 {
        let r = self
            .s
            .get(
                &format!("/v1/organizations/{}/audit/iam?limit=1", self.org),
                &self.token,
            )
            .await;
        r.body["pagination"]["total"].as_i64().unwrap()
    }

    async fn import(
        &self,
        env: &str,
        query: &str,
        content_type: &str,
        body: &str,
    ) -> crate::common::Resp {
        let req = self
            .s
            .request(
                Method::POST,
                &format!("/v1/environments/{env}/secrets/import{query}"),
                Some(&self.token),
            )
            .header("content-type", content_type)
            .body(body.to_string());
        self.s.raw(req).await
    }
}

async fn crud_versions_and_validation(db: Db) {
    let o = Org::start(&db).await;
    let env = o.env("development").await;
    let base = format!("/v1/environments/{env}/secrets");
    let r = o
        .s
        .post(&base, Some(&o.token), json!({"key": "DB_URL", "value": "postgres://one", "comment": "main db", "tags": ["db", "core"]}))
        .await;
    r.expect(201);
    assert_eq!(
        r.header("location"),
        Some(format!("{base}/DB_URL").as_str())
    );
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert!(
        r.body.get("value").is_none(),
        "a create does not echo the value"
    );
    assert!(r.body["secret_id"].as_str().unwrap().starts_with("sec_"));
    assert_eq!(r.body["tags"], json!(["core", "db"]));

    let got = o.s.get(&format!("{base}/DB_URL"), &o.token).await;
    got.expect(200);
    assert_eq!(got.body["value"], "postgres://one");
    let list = o.s.get(&base, &o.token).await;
    assert!(list.body["data"][0].get("value").is_none());
    let revealed = o.s.get(&format!("{base}?reveal=true"), &o.token).await;
    assert_eq!(revealed.body["data"][0]["value"], "postgres://one");

    // Changes make versions; a change to the same content makes none.
    let entries = o.audit_total().await;
    let p =
        o.s.patch(
            &format!("{base}/DB_URL"),
            &o.token,
            json!({"value": "postgres://two"}),
        )
        .await;
    p.expect(200);
    assert_eq!(
        (p.body["version"].as_i64(), p.body.get("value")),
        (Some(2), None)
    );
    assert_eq!(p.body["comment"], "main db");
    let same =
        o.s.patch(
            &format!("{base}/DB_URL"),
            &o.token,
            json!({"value": "postgres://two"}),
        )
        .await;
    assert_eq!(same.body["version"], 2);
    assert_eq!(o.audit_total().await, entries + 1);
    let stale =
        o.s.raw(
            o.s.request(Method::PATCH, &format!("{base}/DB_URL"), Some(&o.token))
                .header("if-match", "\"1\"")
                .json(&json!({"value": "x"})),
        )
        .await;
    stale.expect_error(412, "PRECONDITION_FAILED");
    let versions = o.s.get(&format!("{base}/DB_URL/versions"), &o.token).await;
    versions.expect(200);
    let listed: Vec<(i64, String, bool)> = versions.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["value"].as_str().unwrap().to_string(),
                v["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (2, "postgres://two".to_string(), true),
            (1, "postgres://one".to_string(), false)
        ]
    );
    let restored =
        o.s.post(
            &format!("{base}/DB_URL/versions/1/restore"),
            Some(&o.token),
            json!({}),
        )
        .await;
    restored.expect(200);
    assert_eq!(restored.body["version"], 3);
    assert_eq!(
        o.value(&env, "DB_URL").await.as_deref(),
        Some("postgres://one")
    );
    o.s.post(
        &format!("{base}/DB_URL/versions/9/restore"),
        Some(&o.token),
        json!({}),
    )
    .await
    .expect_error(404, "NOT_FOUND");

    // A batch is all or nothing.
    let batch = |keys: &[&str]| json!({"secrets": keys.iter().map(|k| json!({"key": k, "value": format!("v-{k}")})).collect::<Vec<_>>()});
    let r =
        o.s.post(&base, Some(&o.token), batch(&["A", "b.c", "D-1"]))
            .await;
    r.expect(201);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 3);
    let taken = o.s.post(&base, Some(&o.token), batch(&["NEW1", "A"])).await;
    taken.expect_error(409, "CONFLICT");
    assert_eq!(
        (
            taken.body["error"]["details"]["rule"].as_str(),
            taken.body["error"]["details"]["key"].as_str()
        ),
        (Some("key_taken"), Some("A"))
    );
    assert_eq!(
        o.value(&env, "NEW1").await,
        None,
        "nothing of a refused batch is created"
    );
    assert_eq!(
        o.keys(&env).await,
        ["A", "D-1", "DB_URL", "b.c"],
        "byte order"
    );

    // Validation: the field and the rule, nothing stored, the value never echoed.
    let before = o.audit_total().await;
    let bad = |body: Value| {
        let s = &o.s;
        let (b, t) = (base.clone(), o.token.clone());
        async move { s.post(&b, Some(&t), body).await }
    };
    let cases = [
        (json!({"key": "1BAD", "value": "x"}), "key", "pattern"),
        (json!({"key": "A B", "value": "x"}), "key", "pattern"),
        (json!({"key": "OK"}), "value", "required"),
        (
            json!({"key": "OK", "value": "x".repeat(64 * 1024 + 1)}),
            "value",
            "max_bytes",
        ),
        (json!({"key": "OK", "value": "nul\u{0}"}), "value", "no_nul"),
        (
            json!({"key": "OK", "value": "x", "tags": ["ok", "ok"]}),
            "tags[1]",
            "unique",
        ),
        (
            json!({"key": "OK", "value": "x", "extra": 1}),
            "extra",
            "unknown_field",
        ),
        (json!({"key": "OK", "value": 12345678}), "value", "type"),
        (batch(&["X", "X"]), "secrets[1].key", "unique"),
        (
            json!({"secrets": [{"key": "X", "value": "y"}], "key": "Z"}),
            "key",
            "exclusive",
        ),
        (json!({"secrets": []}), "secrets", "non_empty"),
    ];
    for (body, field, rule) in cases {
        let r = bad(body.clone()).await;
        r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(
            (
                r.body["error"]["details"]["field"].as_str(),
                r.body["error"]["details"]["rule"].as_str()
            ),
            (Some(field), Some(rule)),
            "{body}"
        );
        assert!(
            !r.body.to_string().contains("12345678"),
            "values stay out of errors: {}",
            r.body
        );
    }
    // A value of exactly 64 KiB fits (the body limit of this route is larger than the default).
    o.set(&env, "BIG", &"x".repeat(64 * 1024)).await;
    let empty_patch = o.s.patch(&format!("{base}/A"), &o.token, json!({})).await;
    assert_eq!(empty_patch.error(), ("VALIDATION_ERROR", "non_empty"));
    assert_eq!(o.audit_total().await, before + 1, "only BIG was written");

    // Pagination by key; `export` and `import` are keys like any other.
    let page = o.s.get(&format!("{base}?limit=2"), &o.token).await;
    assert_eq!(page.body["pagination"]["has_more"], true);
    let cursor = page.body["pagination"]["cursor"].as_str().unwrap();
    let next =
        o.s.get(&format!("{base}?limit=2&cursor={cursor}"), &o.token)
            .await;
    assert_eq!(next.body["data"][0]["key"], "D-1");
    for name in ["export", "import"] {
        o.set(&env, name, "special").await;
        assert_eq!(o.value(&env, name).await.as_deref(), Some("special"));
        o.s.patch(
            &format!("{base}/{name}"),
            &o.token,
            json!({"value": "changed"}),
        )
        .await
        .expect(200);
        o.s.delete(&format!("{base}/{name}"), &o.token)
            .await
            .expect(204);
    }
    // A secret has no POST: 405, and `Allow` says what it has.
    let posted =
        o.s.post(&format!("{base}/OTHER"), Some(&o.token), json!({}))
            .await;
    posted.expect_error(405, "VALIDATION_ERROR");
    assert_eq!(posted.header("allow"), Some("GET,HEAD,PATCH,DELETE"));

    // Delete, If-Match, locked environments.
    let d =
        o.s.raw(
            o.s.request(Method::DELETE, &format!("{base}/A"), Some(&o.token))
                .header("if-match", "\"9\""),
        )
        .await;
    d.expect_error(412, "PRECONDITION_FAILED");
    o.s.delete(&format!("{base}/A"), &o.token).await.expect(204);
    o.s.get(&format!("{base}/A"), &o.token)
        .await
        .expect_error(404, "NOT_FOUND");
    o.s.patch(
        &format!("/v1/environments/{env}"),
        &o.token,
        json!({"locked": true}),
    )
    .await
    .expect(200);
    let locked =
        o.s.post(&base, Some(&o.token), json!({"key": "L", "value": "x"}))
            .await;
    assert_eq!(locked.error(), ("CONFLICT", "environment_locked"));
    let locked =
        o.s.patch(&format!("{base}/DB_URL"), &o.token, json!({"value": "x"}))
            .await;
    assert_eq!(locked.error(), ("CONFLICT", "environment_locked"));
    assert_eq!(
        o.value(&env, "DB_URL").await.as_deref(),
        Some("postgres://one")
    );
    // Deleting the environment counts its secrets first.
    let preview =
        o.s.delete(&format!("/v1/environments/{env}?dry_run=true"), &o.token)
            .await;
    assert_eq!(preview.body["would_delete"]["secrets"], 4);
}

async fn permissions_of_roles_and_keys(db: Db) {
    let o = Org::start(&db).await;
    let env = o.env("development").await;
    let base = format!("/v1/environments/{env}/secrets");
    o.set(&env, "TOKEN", "t0p-secret-value").await;
    let (_, dev) =
        o.s.add_member(&o.token, &o.org, "dev@example.com", "developer")
            .await;
    let (_, analyst) =
        o.s.add_member(&o.token, &o.org, "analyst@example.com", "analyst")
            .await;
    let (_, auditor) =
        o.s.add_member(&o.token, &o.org, "auditor@example.com", "auditor")
            .await;
    // Developers read values, cannot change them.
    o.s.get(&format!("{base}?reveal=true"), &dev)
        .await
        .expect(200);
    o.s.get(&format!("{base}/TOKEN"), &dev).await.expect(200);
    let r =
        o.s.post(&base, Some(&dev), json!({"key": "X", "value": "y"}))
            .await;
    assert_eq!(r.error(), ("FORBIDDEN", "permission:manage_secrets"));
    // Analysts and auditors see keys only.
    for t in [&analyst, &auditor] {
        let list = o.s.get(&base, t).await;
        list.expect(200);
        assert!(list.body["data"][0].get("value").is_none());
        for path in [
            format!("{base}?reveal=true"),
            format!("{base}/TOKEN"),
            format!("{base}/TOKEN/versions"),
            format!("{base}/export?format=json"),
        ] {
            let r = o.s.get(&path, t).await;
            assert_eq!(
                r.error(),
                ("FORBIDDEN", "permission:read_secret_values"),
                "{path}"
            );
            // The whole value: a short one could turn up in a random request id.
            assert!(!r.body.to_string().contains("t0p-secret-value"));
        }
    }
    // Another organization's caller learns nothing.
    let stranger =
        o.s.signup("someone@example.net", "a-long-password-42")
            .await;
    o.s.get(&base, &stranger)
        .await
        .expect_error(404, "NOT_FOUND");
    o.s.get(&format!("{base}/TOKEN"), &stranger)
        .await
        .expect_error(404, "NOT_FOUND");

    // Keys: scopes decide.
    let key = |scopes: Value, role: &str| {
        let (s, token, env, role) = (&o.s, o.token.clone(), env.clone(), role.to_string());
        async move {
            let r = s
                .post(
                    &format!("/v1/environments/{env}/api-keys"),
                    Some(&token),
                    json!({"name": "k", "scopes": scopes, "role": role}),
                )
                .await;
            r.expect(201);
            r.body["key"].as_str().unwrap().to_string()
        }
    };
    let reader = key(json!(["secrets:read"]), "developer").await;
    let r =
        o.s.keyed(Method::GET, &format!("{base}/TOKEN"), &reader, None)
            .await;
    assert_eq!(r.body["value"], "t0p-secret-value");
    let r =
        o.s.keyed(
            Method::POST,
            &base,
            &reader,
            Some(json!({"key": "K", "value": "v"})),
        )
        .await;
    assert_eq!(r.error(), ("FORBIDDEN", "permission:manage_secrets"));
    let read_only = key(json!(["read_only"]), "developer").await;
    let r = o.s.keyed(Method::GET, &base, &read_only, None).await;
    assert_eq!(r.error(), ("FORBIDDEN", "scope:secrets:read"));
    let writer = key(json!(["secrets:write"]), "admin").await;
    let r =
        o.s.keyed(
            Method::POST,
            &base,
            &writer,
            Some(json!({"key": "K", "value": "v"})),
        )
        .await;
    r.expect(201);
    let r =
        o.s.keyed(Method::GET, &format!("{base}/K"), &writer, None)
            .await;
    assert_eq!(r.error(), ("FORBIDDEN", "scope:secrets:read"));
    // A write-only key cannot learn whether a guess is the stored value: the same value
    // still saves a version, and an import calls nothing "unchanged".
    let r =
        o.s.keyed(
            Method::PATCH,
            &format!("{base}/K"),
            &writer,
            Some(json!({"value": "v"})),
        )
        .await;
    assert_eq!(r.body["version"], 2);
    let r =
        o.s.keyed(
            Method::POST,
            &format!("{base}/import?dry_run=true"),
            &writer,
            Some(json!({"K": "v"})),
        )
        .await;
    r.expect(200);
    assert_eq!(
        (
            r.body["unchanged"].as_array().unwrap().len(),
            r.body["skipped"][0].as_str()
        ),
        (0, Some("K"))
    );
    // A key never reaches another environment.
    let other = o.env("staging").await;
    let r =
        o.s.keyed(
            Method::GET,
            &format!("/v1/environments/{other}/secrets"),
            &reader,
            None,
        )
        .await;
    assert_eq!(r.error(), ("FORBIDDEN", "key_environment"));
}

async fn import_and_export(db: Db) {
    let o = Org::start(&db).await;
    let env = o.env("development").await;
    let base = format!("/v1/environments/{env}/secrets");
    let dotenv = "# app settings\nexport PLAIN=abc\nQUOTED=\"two\\nlines $HOME\"\nSINGLE='it is #1'\nEMPTY=\n";
    let dry = o.import(&env, "?dry_run=true", "text/plain", dotenv).await;
    dry.expect(200);
    assert_eq!(dry.body["dry_run"], true);
    assert_eq!(
        dry.body["created"],
        json!(["PLAIN", "QUOTED", "SINGLE", "EMPTY"])
    );
    assert!(o.keys(&env).await.is_empty(), "a dry run stores nothing");
    let real = o.import(&env, "", "text/plain", dotenv).await;
    real.expect(200);
    assert_eq!(real.body["created"].as_array().unwrap().len(), 4);
    assert_eq!(
        o.value(&env, "QUOTED").await.as_deref(),
        Some("two\nlines $HOME")
    );
    assert_eq!(o.value(&env, "SINGLE").await.as_deref(), Some("it is #1"));

    // Existing keys with another value: skipped unless overwrite.
    let again = o
        .import(
            &env,
            "",
            "application/json",
            r#"{"PLAIN": "changed", "EMPTY": "", "NEW": 42}"#,
        )
        .await;
    again.expect(200);
    assert_eq!(
        (
            again.body["skipped"].clone(),
            again.body["unchanged"].clone(),
            again.body["created"].clone()
        ),
        (json!(["PLAIN"]), json!(["EMPTY"]), json!(["NEW"]))
    );
    assert_eq!(o.value(&env, "PLAIN").await.as_deref(), Some("abc"));
    assert_eq!(o.value(&env, "NEW").await.as_deref(), Some("42"));
    let over = o
        .import(
            &env,
            "?overwrite=true",
            "application/json",
            r#"{"PLAIN": "changed"}"#,
        )
        .await;
    assert_eq!(over.body["updated"], json!(["PLAIN"]));
    assert_eq!(o.value(&env, "PLAIN").await.as_deref(), Some("changed"));

    // Bad input names the line or key and imports nothing.
    let bad = o
        .import(
            &env,
            "",
            "text/plain",
            "GOOD=1\nthis is not an assignment\n",
        )
        .await;
    bad.expect_error(400, "VALIDATION_ERROR");
    assert_eq!(
        (
            bad.body["error"]["details"]["rule"].as_str(),
            bad.body["error"]["details"]["line"].as_i64()
        ),
        (Some("dotenv"), Some(2))
    );
    let bad = o
        .import(
            &env,
            "",
            "text/plain",
            "GOOD=1\nSECRET=\"never closed hunter2\n",
        )
        .await;
    assert!(!bad.body.to_string().contains("hunter2"), "{}", bad.body);
    let bad = o
        .import(&env, "", "application/json", r#"{"OK": "1", "9bad": "x"}"#)
        .await;
    assert_eq!(bad.error(), ("VALIDATION_ERROR", "pattern"));
    assert_eq!(bad.body["error"]["details"]["field"], "body.9bad");
    let bad = o.import(&env, "?nope=1", "text/plain", "A=1").await;
    assert_eq!(bad.error(), ("VALIDATION_ERROR", "unknown_parameter"));
    assert_eq!(o.value(&env, "GOOD").await, None);

    // Export round-trips through import, in both formats.
    let tricky = "it's \"quoted\"\n\\ back $slash\ttab";
    o.set(&env, "TRICKY", tricky).await;
    let text =
        o.s.raw(o.s.request(
            Method::GET,
            &format!("{base}/export?format=dotenv"),
            Some(&o.token),
        ))
        .await;
    text.expect(200);
    assert!(text
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let other = o.env("staging").await;
    o.import(&other, "", "text/plain", text.body.as_str().unwrap())
        .await
        .expect(200);
    let json_export =
        o.s.get(&format!("{base}/export?format=json"), &o.token)
            .await;
    json_export.expect(200);
    assert_eq!(json_export.body["TRICKY"], tricky);
    let copied =
        o.s.get(
            &format!("/v1/environments/{other}/secrets/export?format=json"),
            &o.token,
        )
        .await;
    assert_eq!(copied.body, json_export.body);
    let r =
        o.s.get(&format!("{base}/export?format=xml"), &o.token)
            .await;
    assert_eq!(r.error(), ("VALIDATION_ERROR", "type"));
}

async fn required_keys_and_diff(db: Db) {
    let o = Org::start(&db).await;
    let (dev, stg) = (o.env("development").await, o.env("staging").await);
    let r =
        o.s.patch(
            &format!("/v1/environments/{dev}"),
            &o.token,
            json!({"required_keys": ["DB_URL", "API_TOKEN", "DB_URL"]}),
        )
        .await;
    assert_eq!(
        (r.body["error"]["details"]["field"].as_str(), r.error().1),
        (Some("required_keys[2]"), "unique")
    );
    let r =
        o.s.patch(
            &format!("/v1/environments/{dev}"),
            &o.token,
            json!({"required_keys": ["DB_URL", "bad key"]}),
        )
        .await;
    assert_eq!(
        (r.body["error"]["details"]["field"].as_str(), r.error().1),
        (Some("required_keys[1]"), "pattern")
    );
    let r =
        o.s.patch(
            &format!("/v1/environments/{dev}"),
            &o.token,
            json!({"required_keys": ["DB_URL", "API_TOKEN"]}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["required_keys"], json!(["API_TOKEN", "DB_URL"]));
    assert_eq!(r.body["missing_keys"], json!(["API_TOKEN", "DB_URL"]));
    o.set(&dev, "DB_URL", "postgres://dev").await;
    let got = o.s.get(&format!("/v1/environments/{dev}"), &o.token).await;
    assert_eq!(got.body["missing_keys"], json!(["API_TOKEN"]));
    let list =
        o.s.get(
            &format!("/v1/organizations/{}/environments", o.org),
            &o.token,
        )
        .await;
    let row = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["env_id"] == dev.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["missing_keys"], json!(["API_TOKEN"]));
    let created =
        o.s.post(
            &format!("/v1/organizations/{}/environments", o.org),
            Some(&o.token),
            json!({"name": "Preview", "required_keys": ["X"]}),
        )
        .await;
    created.expect(201);
    assert_eq!(created.body["missing_keys"], json!(["X"]));

    // Diff: keys and whether values are equal, never the values.
    o.set(&dev, "SAME", "same-value").await;
    o.set(&stg, "SAME", "same-value").await;
    o.set(&stg, "DB_URL", "postgres://staging").await;
    o.set(&stg, "ONLY_STG", "x").await;
    let d =
        o.s.get(
            &format!("/v1/environments/{dev}/diff?against={stg}"),
            &o.token,
        )
        .await;
    d.expect(200);
    let statuses: Vec<(String, String)> = d.body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("DB_URL", "different"),
            ("ONLY_STG", "missing_here"),
            ("SAME", "equal")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(d.body["identical"], false);
    assert_eq!(d.body["missing_keys"], json!(["API_TOKEN"]));
    assert_eq!(d.body["against_missing_keys"], json!([]));
    let text = d.body.to_string();
    for v in ["postgres://dev", "postgres://staging", "same-value"] {
        assert!(!text.contains(v), "diff shows no values: {text}");
    }
    // Analysts may diff (keys only) though they cannot read values.
    let (_, analyst) =
        o.s.add_member(&o.token, &o.org, "analyst@example.com", "analyst")
            .await;
    o.s.get(
        &format!("/v1/environments/{dev}/diff?against={stg}"),
        &analyst,
    )
    .await
    .expect(200);
}

async fn promotion_and_clone(db: Db) {
    let o = Org::start(&db).await;
    let (stg, prod) = (o.env("staging").await, o.env("production").await);
    for (k, v) in [("A", "1"), ("B", "2"), ("C", "3")] {
        o.set(&stg, k, v).await;
    }
    o.set(&prod, "B", "old").await;
    o.set(&prod, "D", "4").await;
    let promote = |dry: bool, include: Option<Value>| {
        let mut body = json!({"target_env_id": prod, "dry_run": dry});
        if let Some(i) = include {
            body["include"] = i;
        }
        let (s, t, stg) = (&o.s, o.token.clone(), stg.clone());
        async move {
            s.post(&format!("/v1/environments/{stg}/promote"), Some(&t), body)
                .await
        }
    };
    let only_settings = promote(false, Some(json!(["settings"]))).await;
    assert_eq!(only_settings.body["changes"]["secrets_promoted"], 0);
    let dry = promote(true, None).await;
    dry.expect(200);
    assert_eq!(dry.body["changes"]["secrets_promoted"], 3);
    let details: Vec<(String, String)> = dry.body["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "secret")
        .map(|d| {
            (
                d["name"].as_str().unwrap().into(),
                d["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        details,
        [("A", "created"), ("B", "updated"), ("C", "created")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(o.keys(&prod).await, ["B", "D"], "a dry run changes nothing");
    let real = promote(false, Some(json!(["secrets"]))).await;
    real.expect(200);
    assert_eq!(real.body["details"], dry.body["details"]);
    assert!(!real.body.to_string().contains("\"old\""));
    for (k, v) in [("A", "1"), ("B", "2"), ("C", "3"), ("D", "4")] {
        assert_eq!(o.value(&prod, k).await.as_deref(), Some(v), "{k}");
    }
    let versions =
        o.s.get(
            &format!("/v1/environments/{prod}/secrets/B/versions"),
            &o.token,
        )
        .await;
    assert_eq!(
        versions.body["data"][1]["value"], "old",
        "the target keeps its history"
    );
    let again = promote(false, None).await;
    assert_eq!(again.body["changes"]["secrets_promoted"], 0);

    // Clone: with secrets (and the required keys), or without.
    o.s.patch(
        &format!("/v1/environments/{stg}"),
        &o.token,
        json!({"required_keys": ["A", "Z"]}),
    )
    .await
    .expect(200);
    let c =
        o.s.post(
            &format!("/v1/environments/{stg}/clone"),
            Some(&o.token),
            json!({"name": "Stg copy"}),
        )
        .await;
    c.expect(201);
    assert_eq!(c.body["missing_keys"], json!(["Z"]));
    let copy = c.body["env_id"].as_str().unwrap().to_string();
    for (k, v) in [("A", "1"), ("B", "2"), ("C", "3")] {
        assert_eq!(o.value(&copy, k).await.as_deref(), Some(v));
    }
    let d =
        o.s.get(
            &format!("/v1/environments/{copy}/diff?against={stg}"),
            &o.token,
        )
        .await;
    assert_eq!(d.body["identical"], true, "{}", d.body);
    let bare =
        o.s.post(
            &format!("/v1/environments/{stg}/clone"),
            Some(&o.token),
            json!({"name": "No secrets", "include": ["settings"]}),
        )
        .await;
    bare.expect(201);
    assert!(o
        .keys(bare.body["env_id"].as_str().unwrap())
        .await
        .is_empty());
}

async fn events_name_keys_only(db: Db) {
    let o = Org::start(&db).await;
    let rx = Receiver::start().await;
    o.s.post(
        &format!("/v1/organizations/{}/webhooks", o.org),
        Some(&o.token),
        json!({"url": rx.url(), "events": ["secret.changed"]}),
    )
    .await
    .expect(201);
    let env = o.env("development").await;
    o.import(
        &env,
        "",
        "application/json",
        r#"{"K1": "value-one-canary", "K2": "value-two-canary"}"#,
    )
    .await
    .expect(200);
    o.s.delete(&format!("/v1/environments/{env}/secrets/K1"), &o.token)
        .await
        .expect(204);
    let events = rx
        .wait_for("two secret.changed events", |got| got.len() >= 2)
        .await;
    let bodies: Vec<Value> = events.iter().map(|e| e.json()).collect();
    assert_eq!(bodies.len(), 2, "one event per request");
    assert!(bodies
        .iter()
        .all(|b| b["type"] == "secret.changed" && b["env_id"] == env.as_str()));
    let created = bodies
        .iter()
        .find(|b| b["data"]["created"] != json!([]))
        .unwrap();
    assert_eq!(created["data"]["created"], json!(["K1", "K2"]));
    let deleted = bodies
        .iter()
        .find(|b| b["data"]["deleted"] != json!([]))
        .unwrap();
    assert_eq!(deleted["data"]["deleted"], json!(["K1"]));
    for e in &events {
        assert!(!String::from_utf8_lossy(&e.body).contains("canary"));
    }
    // The audit trail has one entry per secret, with names and no values.
    let audit =
        o.s.get(
            &format!("/v1/organizations/{}/audit/iam?limit=200", o.org),
            &o.token,
        )
        .await;
    let text = audit.body.to_string();
    assert!(text.contains("\"key_name\":\"K2\""), "{text}");
    assert!(!text.contains("canary"));
}
