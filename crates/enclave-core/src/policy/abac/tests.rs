use super::*;
use chrono::TimeZone;
use serde_json::json;

fn def(conditions: Value) -> Result<AbacDefinition> {
    definition(
        Effect::Deny,
        vec![AbacAction::Export],
        vec!["table:customers".into()],
        conditions.as_object().cloned(),
        None,
    )
}

fn refusal(r: Result<AbacDefinition>) -> (String, String) {
    let e = r.unwrap_err();
    (
        e.details["field"].as_str().unwrap().into(),
        e.details["rule"].as_str().unwrap().into(),
    )
}

fn facts<'a>(attrs: &'a BTreeMap<String, String>, at: DateTime<Utc>) -> Facts<'a> {
    Facts {
        role: Role::Analyst,
        attributes: attrs,
        agent_id: None,
        framework: None,
        ip: None,
        at,
        table: None,
    }
}

#[test]
fn validation_names_the_field() {
    let bad = |actions: Vec<AbacAction>, resources: Vec<&str>, priority| {
        refusal(definition(
            Effect::Allow,
            actions,
            resources.into_iter().map(Into::into).collect(),
            None,
            priority,
        ))
    };
    use AbacAction::*;
    assert_eq!(
        bad(vec![], vec!["*"], None),
        ("actions".into(), "non_empty".into())
    );
    assert_eq!(
        bad(vec![Query, Query], vec!["*"], None),
        ("actions[1]".into(), "unique".into())
    );
    assert_eq!(
        bad(vec![Query], vec![], None),
        ("resources".into(), "non_empty".into())
    );
    assert_eq!(
        bad(vec![Query], vec!["*", "row:1"], None),
        ("resources[1]".into(), "resource".into())
    );
    assert_eq!(
        bad(vec![Query], vec!["table:a b"], None),
        ("resources[0]".into(), "identifier".into())
    );
    assert_eq!(
        bad(vec![Query], vec!["schema:a.b"], None),
        ("resources[0]".into(), "resource".into())
    );
    assert_eq!(
        bad(vec![Query], vec!["table:T", "table:t"], None),
        ("resources[1]".into(), "unique".into())
    );
    assert_eq!(
        bad(vec![Query], vec!["*"], Some(5000)),
        ("priority".into(), "range".into())
    );
    for (conditions, field, rule) in [
        (
            json!({"principal.rank": {"in": ["x"]}}),
            "conditions.principal.rank",
            "unknown_condition",
        ),
        (
            json!({"principal.role": {"in": ["boss"]}}),
            "conditions.principal.role[0]",
            "role",
        ),
        (
            json!({"principal.role": ["admin"]}),
            "conditions.principal.role",
            "operator",
        ),
        (
            json!({"principal.role": {"in": ["admin"], "not_in": ["owner"]}}),
            "conditions.principal.role",
            "operator",
        ),
        (
            json!({"principal.role": {"in": []}}),
            "conditions.principal.role.in",
            "non_empty",
        ),
        (
            json!({"principal.attribute.department": {"eq": 3}}),
            "conditions.principal.attribute.department",
            "operator",
        ),
        (
            json!({"principal.attribute.": {"eq": "x"}}),
            "conditions.principal.attribute.",
            "unknown_condition",
        ),
        (
            json!({"agent.id": {"in": [""]}}),
            "conditions.agent.id.in[0]",
            "string",
        ),
        (
            json!({"request.ip": {"not_in": ["10.0.0.0/8"]}}),
            "conditions.request.ip",
            "operator",
        ),
        (
            json!({"request.ip": {"in": ["10.0.0.0/33"]}}),
            "conditions.request.ip.in[0]",
            "cidr",
        ),
        (
            json!({"time": {"start": "9:00", "end": "17:00"}}),
            "conditions.time.start",
            "time_of_day",
        ),
        (
            json!({"time": {"start": "09:00", "end": "24:30"}}),
            "conditions.time.end",
            "time_of_day",
        ),
        (
            json!({"time": {"start": "09:00", "end": "09:00"}}),
            "conditions.time.end",
            "empty_window",
        ),
        (
            json!({"time": {"start": "09:00"}}),
            "conditions.time.end",
            "required",
        ),
        (
            json!({"time": {"start": "09:00", "end": "17:00", "timezone": "Mars/Olympus"}}),
            "conditions.time.timezone",
            "timezone",
        ),
        (
            json!({"time": [{"start": "09:00", "end": "17:00", "days": ["funday"]}]}),
            "conditions.time[0].days[0]",
            "day",
        ),
        (
            json!({"time": {"start": "09:00", "end": "17:00", "tz": "UTC"}}),
            "conditions.time.tz",
            "unknown_field",
        ),
        (json!({"time": []}), "conditions.time", "time_window"),
        (
            json!({"resource.table": {"in": ["a;b"]}}),
            "conditions.resource.table[0]",
            "identifier",
        ),
    ] {
        assert_eq!(
            refusal(def(conditions.clone())),
            (field.to_string(), rule.to_string()),
            "{conditions}"
        );
    }
}

#[test]
fn conditions_hold_as_documented() {
    let d = def(json!({
        "principal.role": {"not_in": ["owner", "admin"]},
        "principal.attribute.department": {"in": ["sales", "ops"]},
        "request.ip": {"in": ["10.0.0.0/8", "192.168.1.7"]},
        "time": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00", "timezone": "Europe/Berlin"},
    }))
    .unwrap();
    let c = CompiledAbac::compile(&d).unwrap();
    let attrs: BTreeMap<String, String> = [("department".to_string(), "sales".to_string())].into();
    // Monday 2026-11-16 10:00 in Berlin is 09:00 UTC.
    let monday_ten = Utc.with_ymd_and_hms(2026, 11, 16, 9, 0, 0).unwrap();
    let mut f = facts(&attrs, monday_ten);
    f.ip = Some("10.1.2.3".parse().unwrap());
    assert!(c.holds(&f));
    f.ip = Some("::ffff:10.1.2.3".parse().unwrap());
    assert!(c.holds(&f), "IPv4-mapped addresses match IPv4 ranges");
    f.ip = None;
    assert!(!c.holds(&f), "no source address: request.ip does not hold");
    f.ip = Some("192.168.1.7".parse().unwrap());
    f.role = Role::Admin;
    assert!(!c.holds(&f));
    f.role = Role::Analyst;
    f.at = Utc.with_ymd_and_hms(2026, 11, 16, 16, 30, 0).unwrap(); // 17:30 Berlin
    assert!(!c.holds(&f));
    f.at = Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap(); // Saturday
    assert!(!c.holds(&f));
    let none = BTreeMap::new();
    let mut g = facts(&none, monday_ten);
    g.ip = Some("10.0.0.1".parse().unwrap());
    assert!(!c.holds(&g), "a missing attribute does not hold");
}

#[test]
fn overnight_windows_belong_to_their_start_day() {
    let d = def(json!({"time": {"days": ["fri"], "start": "22:00", "end": "06:00"}})).unwrap();
    let c = CompiledAbac::compile(&d).unwrap();
    let attrs = BTreeMap::new();
    let at = |d, h| facts(&attrs, Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap());
    assert!(c.holds(&at(20, 23))); // Friday 23:00
    assert!(c.holds(&at(21, 5))); // Saturday 05:00
    assert!(!c.holds(&at(21, 23))); // Saturday 23:00
    assert!(!c.holds(&at(20, 5))); // Friday 05:00 belongs to Thursday's night
}

#[test]
fn targeting_by_action_and_resource() {
    let d = definition(
        Effect::Allow,
        vec![AbacAction::Query],
        vec!["table:crm.customers".into(), "schema:finance".into()],
        None,
        Some(3),
    )
    .unwrap();
    let c = CompiledAbac::compile(&d).unwrap();
    let t = |s: &str| TableRef::parse("t", s).unwrap();
    assert!(c.targets(AbacAction::Query, Some(&t("crm.customers"))));
    assert!(c.targets(AbacAction::Query, Some(&t("finance.ledger"))));
    assert!(!c.targets(AbacAction::Query, Some(&t("customers"))));
    assert!(!c.targets(AbacAction::Write, Some(&t("crm.customers"))));
    assert!(!c.targets(AbacAction::Query, None));
    let any = CompiledAbac::compile(
        &definition(
            Effect::Deny,
            vec![AbacAction::All],
            vec!["*".into()],
            None,
            None,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(any.targets(AbacAction::Ddl, None));
}
