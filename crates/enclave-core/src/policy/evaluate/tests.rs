use super::*;
use crate::policy::abac::definition;
use crate::policy::{MaskingRule, RlsRule};
use proptest::prelude::*;
use serde_json::json;

fn masking(name: &str, mode: PolicyMode, rules: Vec<MaskingRule>) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        description: String::new(),
        enabled: true,
        mode,
        body: PolicyBody::ColumnMasking { rules },
    }
}

fn mask(
    table: &str,
    column: &str,
    function: MaskFunction,
    visible: Option<u32>,
    exempt: &[Role],
) -> MaskingRule {
    MaskingRule {
        table: table.into(),
        column: column.into(),
        function,
        visible_chars: visible,
        exempt_roles: exempt.to_vec(),
    }
}

fn rls(name: &str, mode: PolicyMode, table: &str, filter: &str, exempt: &[Role]) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        description: String::new(),
        enabled: true,
        mode,
        body: PolicyBody::RowLevelSecurity {
            rules: vec![RlsRule {
                table: table.into(),
                filter: filter.into(),
                exempt_roles: exempt.to_vec(),
            }],
        },
    }
}

fn abac(
    name: &str,
    effect: Effect,
    actions: &[AbacAction],
    resources: &[&str],
    conditions: serde_json::Value,
    priority: i64,
) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        description: String::new(),
        enabled: true,
        mode: PolicyMode::Enforce,
        body: PolicyBody::Abac(
            definition(
                effect,
                actions.to_vec(),
                resources.iter().map(|r| r.to_string()).collect(),
                conditions.as_object().cloned(),
                Some(priority),
            )
            .unwrap(),
        ),
    }
}

fn set(specs: &[PolicySpec]) -> PolicySet {
    let ids: Vec<String> = (0..specs.len()).map(|i| format!("pol_{i}")).collect();
    PolicySet::compile(ids.iter().map(String::as_str).zip(specs.iter())).unwrap()
}

fn who(role: Role, attrs: &[(&str, &str)]) -> Principal {
    Principal {
        role,
        user_id: Some("usr_1".into()),
        email: Some("ana@example.com".into()),
        key_id: None,
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        scopes: None,
        agent_id: None,
        framework: None,
    }
}

fn req(action: AbacAction, tables: &[&str]) -> Request {
    Request {
        org_id: "org_1".into(),
        env_id: "env_1".into(),
        action,
        tables: tables
            .iter()
            .map(|t| TableRef::parse("t", t).unwrap())
            .collect(),
        ip: Some("10.0.0.5".parse().unwrap()),
        at: Utc::now(),
    }
}

#[test]
fn strictest_mask_wins_and_exempt_roles_see_clear_values() {
    use MaskFunction::*;
    let policies = set(&[
        masking(
            "pii",
            PolicyMode::Enforce,
            vec![
                mask("customers", "email", Partial, Some(4), &[Role::Admin]),
                mask("customers", "ssn", Hash, None, &[]),
            ],
        ),
        masking(
            "strict",
            PolicyMode::Enforce,
            vec![
                mask(
                    "customers",
                    "email",
                    Full,
                    None,
                    &[Role::Admin, Role::Owner],
                ),
                mask("customers", "ssn", Partial, Some(2), &[]),
            ],
        ),
        masking(
            "narrow",
            PolicyMode::Enforce,
            vec![mask("orders", "card", Partial, Some(4), &[])],
        ),
        masking(
            "narrower",
            PolicyMode::Enforce,
            vec![mask("orders", "card", Partial, Some(2), &[])],
        ),
    ]);
    let analyst = policies.evaluate(
        &who(Role::Analyst, &[]),
        &req(AbacAction::Query, &["customers", "orders"]),
    );
    let got: Vec<(String, String, MaskFunction, Option<u32>, String)> = analyst
        .masks
        .iter()
        .map(|m| {
            (
                m.table.clone(),
                m.column.clone(),
                m.function,
                m.visible_chars,
                m.policy_name.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "customers".into(),
                "email".into(),
                Full,
                None,
                "strict".into()
            ),
            ("customers".into(), "ssn".into(), Hash, None, "pii".into()),
            (
                "orders".into(),
                "card".into(),
                Partial,
                Some(2),
                "narrower".into()
            ),
        ]
    );
    // An admin is exempt from both email rules; the owner only from `strict`'s.
    let admin = policies.evaluate(
        &who(Role::Admin, &[]),
        &req(AbacAction::Query, &["customers"]),
    );
    assert_eq!(
        admin
            .masks
            .iter()
            .map(|m| m.column.as_str())
            .collect::<Vec<_>>(),
        ["ssn"]
    );
    let owner = policies.evaluate(
        &who(Role::Owner, &[]),
        &req(AbacAction::Query, &["customers"]),
    );
    assert_eq!(
        owner.masks[0].function, Partial,
        "the owner is masked by the rule that does not exempt them"
    );
    // Tables the statement does not touch contribute nothing.
    let other = policies.evaluate(
        &who(Role::Analyst, &[]),
        &req(AbacAction::Query, &["products"]),
    );
    assert!(other.masks.is_empty() && other.matched.is_empty());
    // Schema-qualified statement tables are masked by unqualified rules.
    let qualified = policies.evaluate(
        &who(Role::Analyst, &[]),
        &req(AbacAction::Query, &["crm.customers"]),
    );
    assert_eq!(qualified.masks.len(), 2);
    assert_eq!(qualified.masks[0].table, "crm.customers");
}

#[test]
fn row_filters_bind_placeholders_and_and_together() {
    let policies = set(&[
        rls(
            "dept",
            PolicyMode::Enforce,
            "orders",
            "department = {department}",
            &[Role::Owner, Role::Admin],
        ),
        rls(
            "mine",
            PolicyMode::Enforce,
            "orders",
            "owner_id = {user_id} OR {role} = 'auditor'",
            &[],
        ),
        rls(
            "region",
            PolicyMode::Shadow,
            "orders",
            "region = {region}",
            &[],
        ),
    ]);
    let sales = policies.evaluate(
        &who(Role::Analyst, &[("department", "sales")]),
        &req(AbacAction::Query, &["orders"]),
    );
    assert_eq!(sales.row_filters.len(), 1);
    let f = &sales.row_filters[0];
    assert_eq!(
        f.predicate,
        "(department = $1) AND (owner_id = $2 OR $3 = 'auditor')"
    );
    assert_eq!(f.parameters, ["sales", "usr_1", "analyst"]);
    assert_eq!(f.sources.len(), 2);
    // Shadow filters are reported, not applied; a missing placeholder is FALSE.
    assert_eq!(sales.shadow.would_filter[0].predicate, "false");
    assert_eq!(sales.shadow.would_filter[0].sources[0].missing, ["region"]);
    // No department attribute: that filter is FALSE, never an error.
    let nobody = policies.evaluate(
        &who(Role::Developer, &[]),
        &req(AbacAction::Query, &["orders"]),
    );
    assert_eq!(
        nobody.row_filters[0].predicate,
        "false AND (owner_id = $1 OR $2 = 'auditor')"
    );
    assert_eq!(nobody.row_filters[0].parameters, ["usr_1", "developer"]);
    assert_eq!(nobody.row_filters[0].sources[0].missing, ["department"]);
    // Exempt from `dept`, not from `mine`.
    let admin = policies.evaluate(&who(Role::Admin, &[]), &req(AbacAction::Query, &["orders"]));
    assert_eq!(
        admin.row_filters[0].predicate,
        "owner_id = $1 OR $2 = 'auditor'"
    );
    assert_eq!(admin.decision, Decision::Allow);
}

#[test]
fn permissions_and_scopes_come_first() {
    let policies = set(&[]);
    let auditor = policies.evaluate(&who(Role::Auditor, &[]), &req(AbacAction::Query, &["t"]));
    assert_eq!(
        (auditor.decision, auditor.reason.as_str()),
        (Decision::Deny, "permission:execute_queries")
    );
    let analyst = policies.evaluate(&who(Role::Analyst, &[]), &req(AbacAction::Write, &["t"]));
    assert_eq!(analyst.reason, "permission:write_data");
    let mut key = who(Role::ServiceAccount, &[]);
    key.scopes = Some([Scope::QueryRead].into());
    assert_eq!(
        policies
            .evaluate(&key, &req(AbacAction::Query, &["t"]))
            .decision,
        Decision::Allow
    );
    let mut writer = who(Role::Developer, &[]);
    writer.scopes = Some([Scope::QueryRead].into());
    assert_eq!(
        policies
            .evaluate(&writer, &req(AbacAction::Write, &["t"]))
            .reason,
        "scope:query:write"
    );
    writer.scopes = Some([Scope::TablesAlter].into());
    assert_eq!(
        policies
            .evaluate(&writer, &req(AbacAction::Ddl, &["t"]))
            .decision,
        Decision::Allow
    );
}

#[test]
fn abac_deny_overrides_and_allow_targets() {
    let policies = set(&[
        abac(
            "no-export-pii",
            Effect::Deny,
            &[AbacAction::Export],
            &["table:customers"],
            json!({"principal.role": {"not_in": ["owner"]}}),
            10,
        ),
        abac(
            "office-hours-only",
            Effect::Allow,
            &[AbacAction::Query],
            &["schema:finance"],
            json!({"request.ip": {"in": ["10.0.0.0/8"]}}),
            0,
        ),
        abac(
            "agents-read-only",
            Effect::Deny,
            &[AbacAction::Write, AbacAction::Delete],
            &["*"],
            json!({"agent.framework": {"in": ["langchain"]}}),
            0,
        ),
    ]);
    let d = policies.evaluate(
        &who(Role::Developer, &[]),
        &req(AbacAction::Export, &["orders", "customers"]),
    );
    assert_eq!(d.decision, Decision::Deny);
    assert_eq!(d.reason, "policy_denied");
    assert_eq!(d.denied_by.as_ref().unwrap().name, "no-export-pii");
    assert!(d.message.contains("no-export-pii") && d.message.contains("customers"));
    let owner = policies.evaluate(
        &who(Role::Owner, &[]),
        &req(AbacAction::Export, &["customers"]),
    );
    assert_eq!(owner.decision, Decision::Allow);
    // An allow policy targets finance tables: one must match (the source address).
    let inside = policies.evaluate(
        &who(Role::Analyst, &[]),
        &req(AbacAction::Query, &["finance.ledger"]),
    );
    assert_eq!(inside.decision, Decision::Allow);
    assert_eq!(inside.matched[0].name, "office-hours-only");
    let mut outside_req = req(AbacAction::Query, &["finance.ledger"]);
    outside_req.ip = Some("203.0.113.9".parse().unwrap());
    let outside = policies.evaluate(&who(Role::Analyst, &[]), &outside_req);
    assert_eq!(
        (outside.decision, outside.reason.as_str()),
        (Decision::Deny, "no_allow_matched")
    );
    assert_eq!(outside.denied_by.unwrap().name, "office-hours-only");
    // Tables no allow policy targets are not restricted by it.
    assert_eq!(
        policies
            .evaluate(&who(Role::Analyst, &[]), &outside_req_with(&["orders"]))
            .decision,
        Decision::Allow
    );
    let mut agent = who(Role::Developer, &[]);
    agent.framework = Some("langchain".into());
    assert_eq!(
        policies
            .evaluate(&agent, &req(AbacAction::Delete, &[]))
            .denied_by
            .unwrap()
            .name,
        "agents-read-only"
    );
    assert_eq!(
        policies
            .evaluate(&agent, &req(AbacAction::Query, &[]))
            .decision,
        Decision::Allow
    );
}

fn outside_req_with(tables: &[&str]) -> Request {
    let mut r = req(AbacAction::Query, tables);
    r.ip = Some("203.0.113.9".parse().unwrap());
    r
}

#[test]
fn shadow_policies_report_without_effect() {
    let mut deny = abac(
        "try-deny",
        Effect::Deny,
        &[AbacAction::Query],
        &["table:*"],
        json!({}),
        0,
    );
    deny.mode = PolicyMode::Shadow;
    let mut disabled = abac(
        "off",
        Effect::Deny,
        &[AbacAction::All],
        &["*"],
        json!({}),
        0,
    );
    disabled.enabled = false;
    let policies = set(&[
        deny,
        disabled,
        masking(
            "on",
            PolicyMode::Enforce,
            vec![mask("t", "a", MaskFunction::Partial, Some(4), &[])],
        ),
        masking(
            "try",
            PolicyMode::Shadow,
            vec![
                mask("t", "a", MaskFunction::Null, None, &[]),
                mask("t", "b", MaskFunction::Hash, None, &[]),
                mask("t", "c", MaskFunction::Partial, Some(9), &[]),
            ],
        ),
        masking(
            "c-now",
            PolicyMode::Enforce,
            vec![mask("t", "c", MaskFunction::Full, None, &[])],
        ),
    ]);
    let e = policies.evaluate(&who(Role::Analyst, &[]), &req(AbacAction::Query, &["t"]));
    assert_eq!(
        e.decision,
        Decision::Allow,
        "shadow and disabled policies do not refuse"
    );
    assert_eq!(e.shadow.would_deny.as_ref().unwrap().name, "try-deny");
    assert_eq!(e.masks.len(), 2);
    assert_eq!(e.masks[0].function, MaskFunction::Partial);
    let would: Vec<(&str, MaskFunction)> = e
        .shadow
        .would_mask
        .iter()
        .map(|m| (m.column.as_str(), m.function))
        .collect();
    assert_eq!(
        would,
        [("a", MaskFunction::Null), ("b", MaskFunction::Hash)],
        "c is already masked more strictly"
    );
    assert!(e
        .matched
        .iter()
        .any(|m| m.name == "try-deny" && m.mode == PolicyMode::Shadow));
    assert!(!e.matched.iter().any(|m| m.name == "off"));
}

// ---- ABAC combining against a naive reference -------------------------------------------

const RESOURCES: [&str; 5] = ["*", "table:*", "table:a", "table:b", "schema:s"];
const TABLES: [&str; 4] = ["a", "b", "s.c", "s.a"];
const ACTIONS: [AbacAction; 4] = [
    AbacAction::Query,
    AbacAction::Write,
    AbacAction::Export,
    AbacAction::All,
];
const ROLES: [Role; 3] = [Role::Admin, Role::Developer, Role::Analyst];

#[derive(Debug, Clone)]
struct Gen {
    effect: Effect,
    actions: Vec<AbacAction>,
    resources: Vec<&'static str>,
    /// `None`: no condition; else (negate, roles).
    roles: Option<(bool, Vec<Role>)>,
    priority: i64,
    shadow: bool,
}

fn gen_policy() -> impl Strategy<Value = Gen> {
    (
        any::<bool>(),
        proptest::sample::subsequence(ACTIONS.to_vec(), 1..=3),
        proptest::sample::subsequence(RESOURCES.to_vec(), 1..=2),
        proptest::option::of((
            any::<bool>(),
            proptest::sample::subsequence(ROLES.to_vec(), 1..=2),
        )),
        -2i64..=2,
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(allow, actions, resources, roles, priority, shadow)| Gen {
            effect: if allow { Effect::Allow } else { Effect::Deny },
            actions,
            resources,
            roles,
            priority,
            shadow,
        })
}

/// The spec's words, literally: per resource, a matching deny refuses; if allow policies
/// target it, one must match. The refusal names the first by (priority desc, name).
fn reference(
    policies: &[(String, Gen)],
    role: Role,
    action: AbacAction,
    tables: &[&str],
) -> Option<String> {
    let resources: Vec<Option<TableRef>> = if tables.is_empty() {
        vec![None]
    } else {
        tables
            .iter()
            .map(|t| Some(TableRef::parse("t", t).unwrap()))
            .collect()
    };
    let first = |mut v: Vec<&(String, Gen)>| {
        v.sort_by(|a, b| b.1.priority.cmp(&a.1.priority).then(a.0.cmp(&b.0)));
        v.first().map(|p| p.0.clone())
    };
    for t in &resources {
        let covers = |r: &str| match (r, t) {
            ("*", _) => true,
            (_, None) => false,
            ("table:*", Some(_)) => true,
            (r, Some(t)) if r.starts_with("table:") => t.named_by(&r[6..]),
            (r, Some(t)) => t.in_schema(&r[7..]),
        };
        let targeted: Vec<&(String, Gen)> = policies
            .iter()
            .filter(|(_, p)| !p.shadow)
            .filter(|(_, p)| p.actions.contains(&AbacAction::All) || p.actions.contains(&action))
            .filter(|(_, p)| p.resources.iter().any(|r| covers(r)))
            .collect();
        let holds = |p: &Gen| match &p.roles {
            None => true,
            Some((negate, roles)) => roles.contains(&role) != *negate,
        };
        let denies: Vec<_> = targeted
            .iter()
            .copied()
            .filter(|(_, p)| p.effect == Effect::Deny && holds(p))
            .collect();
        if !denies.is_empty() {
            return first(denies);
        }
        let allows: Vec<_> = targeted
            .iter()
            .copied()
            .filter(|(_, p)| p.effect == Effect::Allow)
            .collect();
        if !allows.is_empty() && !allows.iter().any(|(_, p)| holds(p)) {
            return first(allows);
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn abac_combining_matches_the_reference(
        gens in proptest::collection::vec(gen_policy(), 0..7),
        // Principals whose role may do every action generated: RBAC is tested above.
        role in proptest::sample::select(vec![Role::Owner, Role::Admin, Role::Developer]),
        action in proptest::sample::select(vec![AbacAction::Query, AbacAction::Write, AbacAction::Export]),
        tables in proptest::sample::subsequence(TABLES.to_vec(), 0..=3),
    ) {
        let named: Vec<(String, Gen)> = gens.into_iter().enumerate().map(|(i, g)| (format!("p{i}"), g)).collect();
        let specs: Vec<PolicySpec> = named
            .iter()
            .map(|(name, g)| {
                let conditions = match &g.roles {
                    None => json!({}),
                    Some((negate, roles)) => json!({"principal.role": {
                        if *negate { "not_in" } else { "in" }: roles.iter().map(|r| r.as_str()).collect::<Vec<_>>()
                    }}),
                };
                let mut spec = abac(name, g.effect, &g.actions, &g.resources, conditions, g.priority);
                if g.shadow {
                    spec.mode = PolicyMode::Shadow;
                }
                spec
            })
            .collect();
        let evaluation = set(&specs).evaluate(&who(role, &[]), &req(action, &tables));
        let expected = reference(&named, role, action, &tables);
        prop_assert_eq!(evaluation.decision == Decision::Deny, expected.is_some());
        prop_assert_eq!(evaluation.denied_by.map(|p| p.name), expected);
    }
}
