//! Secrets in the store, on SQLite and PostgreSQL alike: the keyring and data keys, writes
//! all or nothing, versions checked, keys case-sensitive and ordered byte-wise, and the data
//! key gone with its environment. The store only ever sees ciphertext: these tests seal real
//! values with real keys.

use std::sync::Arc;

use enclave_core::id::{new_id, EnvId, Kind, OrgId};
use enclave_core::pagination::PageRequest;
use enclave_core::secret::crypto::{DataKey, MasterKey};
use enclave_core::ErrorCode;
use enclave_store::*;

use super::environments::org_with;

conformance!(
    keyring_and_data_keys,
    writes_are_all_or_nothing,
    versions_order_and_cascade,
    rotation_rewraps_atomically,
    secrets_in_clear_are_resealed,
);

async fn env_of(store: &Arc<Store>, org: &OrgId, slug: &str) -> EnvRecord {
    store.environment_by_slug(org, slug).await.unwrap().unwrap()
}

fn create(env: &EnvRecord, key: &DataKey, name: &str, value: &str) -> SecretWrite {
    let id = new_id(Kind::Secret);
    SecretWrite::Create(NewSecret {
        ciphertext: key.seal(&id, 1, value),
        id,
        org_id: env.org_id.clone(),
        env_id: env.id.clone(),
        key: name.into(),
        comment: String::new(),
        tags: vec!["t".into()],
    })
}

/// The environment's data key as this master key opens it (made on first use).
async fn data_key(store: &Arc<Store>, master: &MasterKey, env: &EnvRecord) -> DataKey {
    let (_, wrapped) = master.new_data_key(&env.id);
    let stored = store.create_data_key(&env.id, wrapped).await.unwrap();
    master
        .unwrap(&env.id, &stored.key_id, &stored.wrapped)
        .unwrap()
}

async fn keyring_and_data_keys(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let dev = env_of(&store, &org, "dev").await;
    let master = MasterKey::generate();
    assert_eq!(store.keyring_id().await.unwrap(), None);
    assert_eq!(store.keyring(master.id()).await.unwrap(), master.id());
    // The first key recorded stays the database's key.
    let other = MasterKey::generate();
    assert_eq!(store.keyring(other.id()).await.unwrap(), master.id());
    assert_eq!(
        store.keyring_id().await.unwrap().as_deref(),
        Some(master.id())
    );
    // A node holding another master key cannot add data keys.
    let (_, foreign) = other.new_data_key(&dev.id);
    let refused = store.create_data_key(&dev.id, foreign).await.unwrap_err();
    assert_eq!(
        (refused.code, refused.details["rule"].as_str()),
        (ErrorCode::ServiceUnavailable, Some("master_key_rotated"))
    );
    assert!(store.data_key(&dev.id).await.unwrap().is_none());
    // Two nodes racing to create the key: both get the one stored first.
    let (_, a) = master.new_data_key(&dev.id);
    let (_, b) = master.new_data_key(&dev.id);
    let first = store.create_data_key(&dev.id, a.clone()).await.unwrap();
    let second = store.create_data_key(&dev.id, b).await.unwrap();
    assert_eq!(first, a);
    assert_eq!(second, a);
    assert_eq!(store.data_key(&dev.id).await.unwrap(), Some(a));
}

async fn writes_are_all_or_nothing(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let dev = env_of(&store, &org, "dev").await;
    let master = MasterKey::generate();
    store.keyring(master.id()).await.unwrap();
    let key = data_key(&store, &master, &dev).await;
    let o = Origin::system();
    let made = store
        .write_secrets(&dev.id, vec![create(&dev, &key, "A", "1")], &o)
        .await
        .unwrap();
    // A batch with a taken key creates nothing, not even the keys before it.
    let err = store
        .write_secrets(
            &dev.id,
            vec![
                create(&dev, &key, "B", "2"),
                create(&dev, &key, "A", "again"),
            ],
            &o,
        )
        .await
        .unwrap_err();
    assert_eq!(
        (
            err.code,
            err.details["rule"].as_str(),
            err.details["key"].as_str()
        ),
        (ErrorCode::Conflict, Some("key_taken"), Some("A"))
    );
    assert!(store.secret(&dev.id, "B").await.unwrap().is_none());
    // Keys are case-sensitive.
    store
        .write_secrets(&dev.id, vec![create(&dev, &key, "a", "lower")], &o)
        .await
        .unwrap();
    // An update planned from a stale version changes nothing (the create beside it neither).
    let a = &made[0];
    let update = |expected: i64, value: &str| SecretWrite::Update {
        secret_id: a.id.clone(),
        key: "A".into(),
        expected_version: expected,
        ciphertext: key.seal(&a.id, expected + 1, value),
        comment: "c".into(),
        tags: vec![],
    };
    let stale = store
        .write_secrets(
            &dev.id,
            vec![create(&dev, &key, "C", "3"), update(7, "x")],
            &o,
        )
        .await
        .unwrap_err();
    assert_eq!(stale.code, ErrorCode::PreconditionFailed);
    assert!(store.secret(&dev.id, "C").await.unwrap().is_none());
    let saved = store
        .write_secrets(&dev.id, vec![update(1, "2nd")], &o)
        .await
        .unwrap();
    assert_eq!((saved[0].version, saved[0].comment.as_str()), (2, "c"));
    assert_eq!(key.open(&a.id, 2, &saved[0].ciphertext).unwrap(), "2nd");
    // A locked environment takes no writes.
    let patch = EnvPatch {
        locked: Some(true),
        ..Default::default()
    };
    store
        .update_environment(&dev.id, None, patch, &o)
        .await
        .unwrap();
    let locked = store
        .write_secrets(&dev.id, vec![create(&dev, &key, "D", "4")], &o)
        .await
        .unwrap_err();
    assert_eq!(locked.details["rule"], "environment_locked");
    let locked = store
        .delete_secret(&dev.id, "A", None, &o)
        .await
        .unwrap_err();
    assert_eq!(locked.details["rule"], "environment_locked");
    // Every change left its audit entry; no entry carries a value or ciphertext.
    let (seq, _) = store.audit_head(&org).await.unwrap().unwrap();
    let entries = store.audit_chain(&org, 0, seq).await.unwrap();
    let secret_entries: Vec<_> = entries
        .iter()
        .filter(|e| e.resource_type == "secret")
        .collect();
    assert_eq!(secret_entries.len(), 3, "A, a, A updated");
    for e in secret_entries {
        // Ids are random text: one may hold `2nd` by chance, so they are left out.
        let without_ids = |v: &serde_json::Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.retain(|k, _| !k.ends_with("_id"));
            }
            v
        };
        let text = format!("{} {}", without_ids(&e.before), without_ids(&e.after));
        assert!(
            !text.contains("2nd") && !text.contains("lower") && !text.contains("ciphertext"),
            "{text}"
        );
    }
}

async fn versions_order_and_cascade(store: Arc<Store>) {
    let org = org_with(&store, &["dev", "prod"]).await;
    let (dev, prod) = (
        env_of(&store, &org, "dev").await,
        env_of(&store, &org, "prod").await,
    );
    let master = MasterKey::generate();
    store.keyring(master.id()).await.unwrap();
    let key = data_key(&store, &master, &dev).await;
    let o = Origin::system();
    let names = ["b", "B", "a_1", "A", "Z.z", "a-1"];
    let writes = names.iter().map(|n| create(&dev, &key, n, "v")).collect();
    store.write_secrets(&dev.id, writes, &o).await.unwrap();
    // Byte order on both databases, page by page.
    let mut seen = Vec::new();
    let mut page = PageRequest::parse(Some(4), None).unwrap();
    loop {
        let (rows, total) = store.secrets(&dev.id, &page).await.unwrap();
        assert_eq!(total, 6);
        let more = rows.len() > 4;
        seen.extend(rows.iter().take(4).map(|r| r.key.clone()));
        if !more {
            break;
        }
        page.after = seen.last().cloned();
    }
    assert_eq!(seen, ["A", "B", "Z.z", "a-1", "a_1", "b"]);
    let all: Vec<String> = store
        .env_secrets(&dev.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(all, seen);
    // Versions, newest first; each opens with its own version number only.
    let a = store.secret(&dev.id, "A").await.unwrap().unwrap();
    for v in 1..3 {
        let write = SecretWrite::Update {
            secret_id: a.id.clone(),
            key: "A".into(),
            expected_version: v,
            ciphertext: key.seal(&a.id, v + 1, &format!("v{}", v + 1)),
            comment: String::new(),
            tags: vec![],
        };
        store.write_secrets(&dev.id, vec![write], &o).await.unwrap();
    }
    let (versions, total) = store
        .secret_versions(&a.id, &PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    assert_eq!(total, 3);
    let numbers: Vec<i64> = versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert_eq!(key.open(&a.id, 2, &versions[1].ciphertext).unwrap(), "v2");
    assert!(key.open(&a.id, 3, &versions[1].ciphertext).is_err());
    // Which required keys exist, across environments, in one call.
    let pairs: Vec<(EnvId, String)> = [(&dev.id, "A"), (&dev.id, "missing"), (&prod.id, "A")]
        .iter()
        .map(|(e, k)| ((*e).clone(), k.to_string()))
        .collect();
    let found = store.existing_secret_keys(&pairs).await.unwrap();
    assert_eq!(found, vec![(dev.id.clone(), "A".to_string())]);
    // Delete: the secret and its versions.
    store
        .delete_secret(&dev.id, "A", Some(1), &o)
        .await
        .unwrap_err();
    store
        .delete_secret(&dev.id, "A", Some(3), &o)
        .await
        .unwrap();
    assert!(store.secret_version(&a.id, 1).await.unwrap().is_none());
    // The environment's purge takes its secrets and its data key.
    assert_eq!(
        store.environment_contents(&dev.id).await.unwrap().secrets,
        5
    );
    store
        .decommission_environment(&dev.id, None, &o)
        .await
        .unwrap();
    store.purge_environment(&dev.id).await.unwrap();
    assert!(store.data_key(&dev.id).await.unwrap().is_none());
    assert!(store.env_secrets(&dev.id).await.unwrap().is_empty());
}

async fn rotation_rewraps_atomically(store: Arc<Store>) {
    let org = org_with(&store, &["dev", "prod"]).await;
    let (dev, prod) = (
        env_of(&store, &org, "dev").await,
        env_of(&store, &org, "prod").await,
    );
    let old = MasterKey::generate();
    store.keyring(old.id()).await.unwrap();
    let dev_key = data_key(&store, &old, &dev).await;
    data_key(&store, &old, &prod).await;
    let o = Origin::system();
    let rec = store
        .write_secrets(&dev.id, vec![create(&dev, &dev_key, "A", "kept")], &o)
        .await
        .unwrap()
        .remove(0);
    // A webhook whose signing secret is sealed by the master key, and rotated once (its
    // previous secret still signs).
    let hook_id = new_id(Kind::Webhook);
    store
        .create_webhook(
            NewWebhook {
                id: hook_id.clone(),
                org_id: org.clone(),
                url: "https://hooks.example.com/x".into(),
                description: String::new(),
                events: vec!["secret.changed".into()],
                secret: old.seal_text(&hook_id, "whsec_first"),
                created_by: "usr_x".into(),
            },
            &o,
        )
        .await
        .unwrap();
    store
        .rotate_webhook_secret(
            &org,
            &hook_id,
            old.seal_text(&hook_id, "whsec_second"),
            enclave_core::clock::now_ms() + 60_000,
            &o,
        )
        .await
        .unwrap();
    let new = MasterKey::generate();
    let reseal = |webhook_id: &str, stored: &str| {
        new.reseal_text(&old, webhook_id, stored)
            .map_err(|_| enclave_core::Error::internal())
    };
    // A failure half-way rolls everything back.
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let failing = |env_id: &str, key_id: &str, wrapped: &[u8]| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            return Err(enclave_core::Error::internal());
        }
        new.rewrap(&old, env_id, key_id, wrapped)
            .map_err(|_| enclave_core::Error::internal())
    };
    store
        .rotate_master_key(old.id(), new.id(), &failing, &reseal)
        .await
        .unwrap_err();
    assert_eq!(store.keyring_id().await.unwrap().as_deref(), Some(old.id()));
    assert_eq!(
        store
            .data_key(&dev.id)
            .await
            .unwrap()
            .unwrap()
            .master_key_id,
        old.id()
    );
    // From the wrong key: refused.
    let rewrap = |env_id: &str, key_id: &str, wrapped: &[u8]| {
        new.rewrap(&old, env_id, key_id, wrapped)
            .map_err(|_| enclave_core::Error::internal())
    };
    let stale = store
        .rotate_master_key(new.id(), old.id(), &rewrap, &reseal)
        .await
        .unwrap_err();
    assert_eq!(stale.code, ErrorCode::PreconditionFailed);
    // The real one: both keys move, the value still opens, the old master key opens nothing.
    assert_eq!(
        store
            .rotate_master_key(old.id(), new.id(), &rewrap, &reseal)
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.keyring_id().await.unwrap().as_deref(), Some(new.id()));
    let w = store.data_key(&dev.id).await.unwrap().unwrap();
    assert_eq!(w.master_key_id, new.id());
    let reopened = new.unwrap(&dev.id, &w.key_id, &w.wrapped).unwrap();
    assert_eq!(reopened.open(&rec.id, 1, &rec.ciphertext).unwrap(), "kept");
    assert!(old.unwrap(&dev.id, &w.key_id, &w.wrapped).is_err());
    // The webhook's secrets moved in the same transaction: both open with the new key only.
    let hook = store.webhook(&org, &hook_id).await.unwrap().unwrap();
    assert_eq!(
        new.open_text(&hook_id, &hook.secret).unwrap(),
        "whsec_second"
    );
    let previous = hook.previous_secret.unwrap();
    assert_eq!(new.open_text(&hook_id, &previous).unwrap(), "whsec_first");
    assert!(old.open_text(&hook_id, &hook.secret).is_err());
}

/// What an older release stored in clear goes through `reseal_webhook_secrets`; what it
/// leaves unchanged is not written.
async fn secrets_in_clear_are_resealed(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let key = MasterKey::generate();
    let o = Origin::system();
    let mut ids = Vec::new();
    for secret in ["whsec_in_clear", "already"] {
        let id = new_id(Kind::Webhook);
        let stored = match secret {
            "already" => key.seal_text(&id, secret),
            clear => clear.to_string(),
        };
        store
            .create_webhook(
                NewWebhook {
                    id: id.clone(),
                    org_id: org.clone(),
                    url: "https://hooks.example.com/x".into(),
                    description: String::new(),
                    events: vec!["secret.changed".into()],
                    secret: stored,
                    created_by: "usr_x".into(),
                },
                &o,
            )
            .await
            .unwrap();
        ids.push(id);
    }
    let seal = |id: &str, stored: &str| {
        Ok(if enclave_core::secret::crypto::is_sealed_text(stored) {
            stored.to_string()
        } else {
            key.seal_text(id, stored)
        })
    };
    assert_eq!(store.reseal_webhook_secrets(&seal).await.unwrap(), 1);
    assert_eq!(store.reseal_webhook_secrets(&seal).await.unwrap(), 0);
    for (id, value) in ids.iter().zip(["whsec_in_clear", "already"]) {
        let hook = store.webhook(&org, id).await.unwrap().unwrap();
        assert_eq!(key.open_text(id, &hook.secret).unwrap(), value);
    }
}
