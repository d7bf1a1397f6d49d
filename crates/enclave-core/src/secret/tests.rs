use super::*;

fn rule(e: Error) -> (String, String) {
    (
        e.details["field"].as_str().unwrap_or_default().to_string(),
        e.details["rule"].as_str().unwrap_or_default().to_string(),
    )
}

fn r(field: &str, rule: &str) -> (String, String) {
    (field.to_string(), rule.to_string())
}

#[test]
fn keys_follow_the_pattern() {
    for ok in ["A", "_x", "DB_URL", "a.b-c_1", &"K".repeat(256)] {
        assert!(validate_key("key", ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "1A",
        "-a",
        ".a",
        "A B",
        "A=B",
        "é",
        &"K".repeat(257),
        "A/B",
    ] {
        assert_eq!(
            rule(validate_key("key", bad).unwrap_err()),
            r("key", "pattern"),
            "{bad}"
        );
    }
}

#[test]
fn values_comments_and_tags() {
    assert!(validate_value("value", "").is_ok());
    assert!(validate_value("value", &"x".repeat(MAX_VALUE_BYTES)).is_ok());
    let e = validate_value("value", &"x".repeat(MAX_VALUE_BYTES + 1)).unwrap_err();
    assert_eq!(rule(e), r("value", "max_bytes"));
    // Counted in bytes: 2-byte characters reach the limit at half the count.
    assert!(validate_value("value", &"é".repeat(MAX_VALUE_BYTES / 2 + 1)).is_err());
    let e = validate_value("value", "a\0b").unwrap_err();
    assert!(!e.message.contains("a\0b"));
    assert_eq!(rule(e), r("value", "no_nul"));

    assert_eq!(
        validate_comment("comment", " rotate monthly\n ").unwrap(),
        "rotate monthly"
    );
    assert_eq!(
        rule(validate_comment("comment", "bell\u{7}").unwrap_err()).1,
        "no_control_characters"
    );
    assert_eq!(
        rule(validate_comment("comment", &"c".repeat(1025)).unwrap_err()).1,
        "max_length"
    );

    assert_eq!(
        validate_tags("tags", &["b".into(), "a:team/x".into()]).unwrap(),
        ["a:team/x", "b"]
    );
    assert_eq!(
        rule(validate_tags("tags", &["ok".into(), "ok".into()]).unwrap_err()),
        r("tags[1]", "unique")
    );
    assert_eq!(
        rule(validate_tags("tags", &["-no".into()]).unwrap_err()),
        r("tags[0]", "pattern")
    );
    let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    assert_eq!(
        rule(validate_tags("tags", &many).unwrap_err()),
        r("tags", "max_items")
    );
}

#[test]
fn create_bodies_one_or_a_batch() {
    let one = CreateSecrets {
        key: Some("A".into()),
        value: Some("1".into()),
        ..Default::default()
    };
    let (list, batch) = one.validate().unwrap();
    assert!(!batch);
    assert_eq!(list[0].key, "A");
    let missing = CreateSecrets {
        key: Some("A".into()),
        ..Default::default()
    };
    assert_eq!(
        rule(missing.validate().unwrap_err()),
        r("value", "required")
    );
    assert_eq!(
        rule(CreateSecrets::default().validate().unwrap_err()),
        r("key", "required")
    );

    let input = |k: &str| SecretInput {
        key: k.into(),
        value: "v".into(),
        comment: None,
        tags: None,
    };
    let batch = CreateSecrets {
        secrets: Some(vec![input("A"), input("B")]),
        ..Default::default()
    };
    assert_eq!(batch.validate().unwrap().0.len(), 2);
    let dup = CreateSecrets {
        secrets: Some(vec![input("A"), input("B"), input("A")]),
        ..Default::default()
    };
    assert_eq!(
        rule(dup.validate().unwrap_err()),
        r("secrets[2].key", "unique")
    );
    let bad = CreateSecrets {
        secrets: Some(vec![input("A"), input("9")]),
        ..Default::default()
    };
    assert_eq!(
        rule(bad.validate().unwrap_err()),
        r("secrets[1].key", "pattern")
    );
    let mixed = CreateSecrets {
        key: Some("A".into()),
        secrets: Some(vec![input("B")]),
        ..Default::default()
    };
    assert_eq!(rule(mixed.validate().unwrap_err()), r("key", "exclusive"));
    let empty = CreateSecrets {
        secrets: Some(vec![]),
        ..Default::default()
    };
    assert_eq!(
        rule(empty.validate().unwrap_err()),
        r("secrets", "non_empty")
    );
}

#[test]
fn patches_merge() {
    let current = Content {
        value: "old".into(),
        comment: "c".into(),
        tags: vec!["t".into()],
    };
    let next = PatchSecret {
        value: Some("new".into()),
        ..Default::default()
    }
    .apply(&current)
    .unwrap();
    assert_eq!((next.value.as_str(), next.comment.as_str()), ("new", "c"));
    let next = PatchSecret {
        tags: Some(vec![]),
        ..Default::default()
    }
    .apply(&current)
    .unwrap();
    assert_eq!((next.value.as_str(), next.tags.len()), ("old", 0));
    assert_eq!(
        rule(PatchSecret::default().apply(&current).unwrap_err()),
        r("body", "non_empty")
    );
}

#[test]
fn imports_read_json_and_dotenv() {
    let json = br#"{"A": "x", "N": 5, "B": true}"#;
    let got = parse_import(json, true).unwrap();
    assert_eq!(
        got,
        [("A", "x"), ("B", "true"), ("N", "5")].map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_eq!(
        rule(parse_import(br#"{"A": null}"#, true).unwrap_err()),
        r("body.A", "type")
    );
    assert_eq!(
        rule(parse_import(br#"{"1A": "x"}"#, true).unwrap_err()),
        r("body.1A", "pattern")
    );
    assert_eq!(
        rule(parse_import(b"[1]", true).unwrap_err()),
        r("body", "json")
    );
    assert_eq!(parse_import(b"A=1\nB='2'\n", false).unwrap().len(), 2);
    assert_eq!(
        rule(parse_import(b"\xff=1", false).unwrap_err()),
        r("body", "utf8")
    );
    let big = format!("A=\"{}\"", "x".repeat(MAX_VALUE_BYTES + 1));
    let e = parse_import(big.as_bytes(), false).unwrap_err();
    assert!(e.message.starts_with("line 1:"), "{}", e.message);
    let many: String = (0..=MAX_IMPORT).map(|i| format!("K{i}=v\n")).collect();
    assert_eq!(
        rule(parse_import(many.as_bytes(), false).unwrap_err()),
        r("body", "max_items")
    );
}

#[test]
fn import_plans() {
    let current: BTreeMap<String, String> = [("A", "1"), ("B", "2")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let incoming: Vec<(String, String)> = [("A", "1"), ("B", "changed"), ("C", "3")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let keep = plan_import(&current, &incoming, false);
    assert_eq!(
        (
            keep.created,
            keep.unchanged,
            keep.skipped,
            keep.updated.len()
        ),
        (
            vec!["C".to_string()],
            vec!["A".to_string()],
            vec!["B".to_string()],
            0
        )
    );
    let over = plan_import(&current, &incoming, true);
    assert_eq!(
        (over.updated, over.skipped.len()),
        (vec!["B".to_string()], 0)
    );
}

#[test]
fn promotion_and_diff_compare_values_only() {
    let content = |v: &str, c: &str| Content {
        value: v.into(),
        comment: c.into(),
        tags: vec![],
    };
    let source: BTreeMap<String, Content> = [
        ("NEW", content("1", "")),
        ("CHANGED", content("2", "")),
        ("SAME", content("3", "source comment")),
    ]
    .map(|(k, c)| (k.to_string(), c))
    .into();
    let target: BTreeMap<String, Content> = [
        ("CHANGED", content("old", "")),
        ("SAME", content("3", "target comment")),
        ("ONLY_TARGET", content("4", "")),
    ]
    .map(|(k, c)| (k.to_string(), c))
    .into();
    let plan = plan_promotion(&source, &target);
    let got: Vec<(&str, ChangeAction)> = plan.iter().map(|c| (c.name.as_str(), c.action)).collect();
    assert_eq!(
        got,
        [
            ("CHANGED", ChangeAction::Updated),
            ("NEW", ChangeAction::Created)
        ]
    );
    assert!(plan.iter().all(|c| c.kind == "secret"));

    let values = |m: &BTreeMap<String, Content>| -> BTreeMap<String, String> {
        m.iter()
            .map(|(k, c)| (k.clone(), c.value.clone()))
            .collect()
    };
    let d = diff(&values(&source), &values(&target));
    let got: Vec<(&str, DiffStatus)> = d.iter().map(|n| (n.name.as_str(), n.status)).collect();
    assert_eq!(
        got,
        [
            ("CHANGED", DiffStatus::Different),
            ("NEW", DiffStatus::MissingThere),
            ("ONLY_TARGET", DiffStatus::MissingHere),
            ("SAME", DiffStatus::Equal),
        ]
    );
    let shown = serde_json::to_string(&d).unwrap();
    assert!(!shown.contains("old") && !shown.contains("\"2\""));
}

#[test]
fn required_keys() {
    let keys = validate_required_keys("required_keys", &["B".into(), "A".into()]).unwrap();
    assert_eq!(keys, ["A", "B"]);
    assert_eq!(
        rule(validate_required_keys("required_keys", &["A".into(), "A".into()]).unwrap_err()),
        r("required_keys[1]", "unique")
    );
    assert_eq!(
        rule(validate_required_keys("required_keys", &["ok".into(), "no way".into()]).unwrap_err()),
        r("required_keys[1]", "pattern")
    );
    let present: BTreeSet<&str> = ["A"].into();
    assert_eq!(missing_keys(&keys, &present), ["B"]);
}
