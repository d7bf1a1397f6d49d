//! A database made by the release before the store's rewrite opens and works with this code,
//! on both backends. `tests/fixtures/previous-release.*.sql` are dumps of databases that
//! release (commit 99ad367) made through its API — its migrations, an organization with four
//! environments, an invited member, an API key, a secret, a masking policy, a webhook, and
//! the audit chain of those changes (see `tests/fixtures/README.md`).

use enclave_core::audit::{verify, AuditEntry};
use enclave_core::environment::{EnvSettings, EnvStatus, EnvType};
use enclave_core::id::{EnvId, OrgId};
use enclave_core::model::{MemberStatus, OrgStatus, Tier};
use enclave_core::policy::PolicyType;
use enclave_core::webhook::WebhookStatus;
use enclave_core::Role;
use enclave_store::testing::{TempPostgres, TempSqlite};
use enclave_store::*;
use sqlx::Connection;

const SQLITE_DUMP: &str = include_str!("fixtures/previous-release.sqlite.sql");
const POSTGRES_DUMP: &str = include_str!("fixtures/previous-release.postgres.sql");

fn page() -> PageQuery {
    PageQuery {
        limit: 100,
        after: None,
    }
}

async fn chain(store: &Store, org_id: &OrgId) -> Vec<AuditEntry> {
    store.audit_chain(org_id, 0, 1000).await.unwrap()
}

async fn works_on_the_new_code(store: Store) {
    // Everything the old release wrote reads back, typed.
    let owner = store
        .user_by_email("admin@enclave.local")
        .await
        .unwrap()
        .expect("the bootstrap owner");
    let (orgs, _) = store.orgs_of_user(&owner.id, &page()).await.unwrap();
    let org = orgs.into_iter().next().expect("the bootstrap organization");
    assert_eq!(
        (org.tier, org.status),
        (Tier::Enterprise, OrgStatus::Active)
    );
    let (members, _) = store
        .members(&org.id, &MemberFilter::default(), &page())
        .await
        .unwrap();
    let ada = members
        .iter()
        .find(|m| m.email == "ada@example.com")
        .unwrap();
    assert_eq!(
        (ada.role, ada.status),
        (Role::Developer, MemberStatus::Invited)
    );

    let envs = store
        .environments(
            &org.id,
            &EnvFilter::default(),
            &EnvPageQuery {
                limit: 100,
                after: None,
            },
        )
        .await
        .unwrap();
    let slugs: Vec<&str> = envs.rows.iter().map(|e| e.slug.as_str()).collect();
    assert_eq!(slugs, ["development", "staging", "production", "preview-1"]);
    let staging = envs.rows[1].clone();
    assert_eq!(staging.env_type, EnvType::Staging);
    assert_eq!(staging.status, EnvStatus::Active);
    assert_eq!(staging.settings.0.query_timeout_ms, 5000);
    assert_eq!(
        envs.rows[3].parent_env_id.as_deref(),
        Some(staging.id.as_str())
    );

    let (keys, _) = store.api_keys(&staging.id, &page()).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].role, Role::ServiceAccount);
    let (secrets, _) = store.secrets(&staging.id, &page()).await.unwrap();
    assert_eq!(secrets[0].key, "API_URL");
    let (policies, _) = store
        .policies(&staging.id, PolicyKind::Standard, &page())
        .await
        .unwrap();
    assert_eq!(policies[0].policy_type, PolicyType::ColumnMasking);
    let (hooks, _) = store.webhooks(&org.id, &page()).await.unwrap();
    assert_eq!(hooks[0].status, WebhookStatus::Active);

    // The old chain verifies, and a change made now extends it.
    let before = chain(&store, &org.id).await;
    assert!(
        verify(
            before
                .iter()
                .map(|e| e.to_value())
                .collect::<Vec<_>>()
                .iter()
        )
        .chain_valid
    );
    let new = NewEnvironment {
        id: EnvId::generate(),
        org_id: org.id.clone(),
        name: "Preview 2".into(),
        slug: "preview-2".into(),
        env_type: EnvType::Custom,
        color: "#64748b".into(),
        parent_env_id: Some(staging.id.clone()),
        description: String::new(),
        settings: EnvSettings::default(),
        policies: Vec::new(),
        capabilities: Vec::new(),
        required_keys: Vec::new(),
        secrets: None,
    };
    let rec = store
        .create_environment(new, None, &Origin::system())
        .await
        .unwrap();
    assert_eq!(rec.position, 4);
    let after = chain(&store, &org.id).await;
    assert_eq!(after.len(), before.len() + 1);
    let verification = verify(
        after
            .iter()
            .map(|e| e.to_value())
            .collect::<Vec<_>>()
            .iter(),
    );
    assert!(verification.chain_valid, "{verification:?}");
    let (count, head) = store.audit_head(&org.id).await.unwrap().unwrap();
    assert_eq!(count as usize, after.len());
    assert_eq!(Some(head), verification.last_entry_hash);
}

#[tokio::test]
async fn a_previous_release_sqlite_database_opens_and_works() {
    let db = TempSqlite::create();
    {
        let options = db
            .url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap();
        // The dump lists tables by name, not by their references.
        let options = options.create_if_missing(true).foreign_keys(false);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::raw_sql(SQLITE_DUMP).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
    works_on_the_new_code(Store::sqlite(&db.url).await.unwrap()).await;
}

#[tokio::test]
async fn a_previous_release_postgres_database_opens_and_works() {
    let Some(db) = TempPostgres::create().await else {
        return;
    };
    {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(POSTGRES_DUMP)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    works_on_the_new_code(Store::postgres(&db.url).await.unwrap()).await;
}
