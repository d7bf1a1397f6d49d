//! The agent registry and capability grants in the store, on SQLite and PostgreSQL alike:
//! the registry written with the query audit's batches (first and last seen, framework,
//! counts, credits in total and per UTC day), and grants versioned, audited, invalidating and
//! refused in a locked environment.

use std::sync::Arc;

use enclave_core::agent::CapabilitySpec;
use enclave_core::audit::{timestamp, Actor};
use enclave_core::billing::Credits;
use enclave_core::clock::now_ms;
use enclave_core::pagination::PageRequest;
use enclave_core::query::audit::AgentIdentity;
use enclave_core::ErrorCode;
use enclave_store::*;
use serde_json::json;

use super::environments::org_with;
use super::query_audit::{entry, env_id};

conformance!(
    the_registry_counts_with_the_audit,
    grants_are_versioned_and_audited
);

const DAY: i64 = 86_400_000;

fn by_agent(
    env: &str,
    agent: Option<&str>,
    framework: Option<&str>,
    milli: u64,
    at: i64,
) -> enclave_core::query::audit::QueryAuditEntry {
    let mut e = entry(env, "key_a", "ok");
    e.agent = AgentIdentity {
        id: agent.map(str::to_string),
        framework: framework.map(str::to_string),
    };
    e.credits_consumed = Credits::from_milli(milli);
    e.created_at = timestamp(at);
    e
}

async fn the_registry_counts_with_the_audit(store: Arc<Store>) {
    let org = org_with(&store, &["dev", "prod"]).await;
    let dev = env_id(&store, &org, "dev").await;
    let prod = env_id(&store, &org, "prod").await;
    let now = now_ms();
    let today = now - now.rem_euclid(DAY);
    store
        .append_query_audit(vec![
            by_agent(
                &dev,
                Some("support-bot"),
                Some("langchain"),
                1500,
                now - 2_000,
            ),
            by_agent(&dev, Some("support-bot"), None, 1000, now - 1_000),
            by_agent(&dev, None, None, 9000, now),
            by_agent(&prod, Some("support-bot"), None, 1000, now),
            by_agent(&dev, Some("etl"), Some("dbt"), 0, today - 10),
        ])
        .await
        .unwrap();
    // A second batch (another node's, say) adds to the same rows.
    store
        .append_query_audit(vec![by_agent(
            &dev,
            Some("support-bot"),
            Some("crewai"),
            500,
            now + 1_000,
        )])
        .await
        .unwrap();
    let page = PageRequest::parse(Some(50), None).unwrap();
    let (agents, total) = store.agents(&dev, &page).await.unwrap();
    assert_eq!(
        total, 2,
        "agents are per environment; statements without an id are none"
    );
    assert_eq!(agents[0].agent_id, "etl");
    let bot = &agents[1];
    assert_eq!(bot.agent_id, "support-bot");
    assert_eq!(
        bot.framework.as_deref(),
        Some("crewai"),
        "the latest framework named"
    );
    assert_eq!(
        (bot.first_seen_at, bot.last_seen_at),
        (now - 2_000, now + 1_000)
    );
    assert_eq!((bot.query_count, bot.credits_milli), (3, 3000));
    assert_eq!(bot.credits_on(today), Credits::from_milli(3000));
    assert_eq!(bot.credits_on(today + DAY), Credits::ZERO);
    // Yesterday's statement counts in total, not today.
    let etl = store.agent(&dev, "etl").await.unwrap().unwrap();
    assert_eq!(etl.credits_on(today), Credits::ZERO);
    store
        .append_query_audit(vec![by_agent(&dev, Some("etl"), None, 2000, now)])
        .await
        .unwrap();
    let etl = store.agent(&dev, "etl").await.unwrap().unwrap();
    assert_eq!(
        (etl.query_count, etl.credits_on(today)),
        (2, Credits::whole(2))
    );
    assert_eq!(etl.framework.as_deref(), Some("dbt"));
    assert_eq!(
        store
            .agent(&prod, "support-bot")
            .await
            .unwrap()
            .unwrap()
            .query_count,
        1
    );
    assert!(store.agent(&prod, "etl").await.unwrap().is_none());
    // Keyset pages.
    let first = PageRequest::parse(Some(1), None).unwrap();
    let (rows, _) = store.agents(&dev, &first).await.unwrap();
    let next = PageRequest {
        after: Some(rows[0].agent_id.clone()),
        ..first
    };
    let (rows, _) = store.agents(&dev, &next).await.unwrap();
    assert_eq!(rows[0].agent_id, "support-bot");
}

fn spec(v: serde_json::Value) -> CapabilitySpec {
    serde_json::from_value::<CapabilitySpec>(v)
        .unwrap()
        .validated(chrono::Utc::now())
        .unwrap()
}

async fn grants_are_versioned_and_audited(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let dev = env_id(&store, &org, "dev").await;
    let origin = Origin::new(Actor::user("usr_admin"));
    let mut rx = store.bus().subscribe();
    let narrow =
        spec(json!({"allowed_actions": ["query"], "allowed_tables": ["orders", "customers"]}));
    let first = store
        .grant_capabilities(&dev, "support-bot", narrow.clone(), &origin)
        .await
        .unwrap();
    assert!(first.id.starts_with("cap_"));
    assert_eq!(first.version, 1);
    super::expect_event(
        &mut rx,
        Invalidation::Capabilities {
            env_id: dev.clone(),
        },
    )
    .await;
    // The same content again changes nothing.
    let same = store
        .grant_capabilities(&dev, "support-bot", narrow, &origin)
        .await
        .unwrap();
    assert_eq!(same.version, 1);
    let wider = spec(json!({"allowed_actions": ["query", "write"], "max_rows_per_query": 100}));
    let second = store
        .grant_capabilities(&dev, "support-bot", wider.clone(), &origin)
        .await
        .unwrap();
    assert_eq!((second.id.as_str(), second.version), (first.id.as_str(), 2));
    assert_eq!(second.spec.0, wider);
    let page = PageRequest::parse(Some(50), None).unwrap();
    let (versions, total) = store.capability_versions(&first.id, &page).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(versions[0].version, 2);
    assert_eq!(versions[1].spec.0.allowed_tables, ["customers", "orders"]);
    store
        .grant_capabilities(
            &dev,
            "etl",
            spec(json!({"allowed_actions": ["ddl"]})),
            &origin,
        )
        .await
        .unwrap();
    let all = store.env_capabilities(&dev).await.unwrap();
    assert_eq!(
        all.iter().map(|g| g.agent_id.as_str()).collect::<Vec<_>>(),
        ["etl", "support-bot"]
    );

    store
        .revoke_capabilities(&dev, "etl", &origin)
        .await
        .unwrap();
    assert!(store.capabilities(&dev, "etl").await.unwrap().is_none());
    let e = store
        .revoke_capabilities(&dev, "etl", &origin)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    let env = store.environment(&dev).await.unwrap().unwrap();
    let (entries, _) = store
        .audit_entries(
            &env.org_id,
            &AuditFilter {
                resource_type: Some("agent_capability".into()),
                ..Default::default()
            },
            &page,
        )
        .await
        .unwrap();
    let actions: Vec<&str> = entries.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "agent_capability.granted",
            "agent_capability.updated",
            "agent_capability.granted",
            "agent_capability.revoked"
        ]
    );
    assert_eq!(entries[2].after["max_rows_per_query"], 100);
    assert_eq!(
        entries[2].before["allowed_tables"],
        json!(["customers", "orders"])
    );
    assert_eq!(entries[0].before["agent_id"], "etl");

    // A locked environment takes no grant; a gone one neither.
    store
        .update_environment(
            &dev,
            None,
            EnvPatch {
                locked: Some(true),
                ..Default::default()
            },
            &origin,
        )
        .await
        .unwrap();
    let e = store
        .grant_capabilities(
            &dev,
            "x",
            spec(json!({"allowed_actions": ["query"]})),
            &origin,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    let e = store
        .grant_capabilities(
            &"env_01m7y1mvvm720aw1bq259a443y".into(),
            "x",
            spec(json!({"allowed_actions": ["query"]})),
            &origin,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}
