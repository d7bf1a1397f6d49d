//! Promotion: configuration (settings, policies, secrets) carried from one environment into
//! another in one transaction, and the record of every promotion.

use enclave_core::clock::now_ms;
use enclave_core::environment::check_writable;
use enclave_core::id::EnvId;
use enclave_core::promotion::Promotion;
use enclave_core::Error;

use crate::db::{self};
use crate::db_error::internal;
use crate::environments::*;
use crate::journal::*;
use crate::policies::*;
use crate::records::*;
use crate::secrets::*;
use crate::store::Store;
use crate::Invalidation;

impl Store {
    /// Writes a promotion's changes into its target and records it, in one transaction.
    pub async fn apply_promotion(
        &self,
        apply: PromotionApply,
        origin: &Origin,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        lock_org_envs(&mut tx, &apply.org_id, 0, 0).await?;
        let target = select_env(&mut tx, &apply.target_env_id).await?;
        check_writable(target.locked, target.status, false)?;
        if target.version != apply.expected_target_version {
            return Err(Error::precondition_failed(
                "the target environment changed while the promotion was planned",
            ));
        }
        let mut changed_policies = false;
        for write in apply.policies {
            changed_policies = true;
            match write {
                PolicyWrite::Create(policy) => {
                    if policy.env_id != target.id {
                        return Err(Error::internal());
                    }
                    let rec = insert_policy(&mut tx, policy).await
                        .map_err(|e| if e.code == enclave_core::ErrorCode::Conflict {
                            Error::precondition_failed("a policy of that name appeared in the target while the promotion was planned")
                        } else { e })?;
                    journal(
                        &mut tx,
                        origin,
                        Change::of("policy.created", None, Some(&rec)),
                    )
                    .await?;
                }
                PolicyWrite::Update {
                    policy_id,
                    expected_version,
                    spec,
                } => {
                    let before =
                        select_policy(&mut tx, &target.id, &policy_id, Some(expected_version))
                            .await?;
                    let rec = save_policy_version(
                        &mut tx,
                        &policy_id,
                        expected_version,
                        &spec,
                        &origin.actor.id,
                    )
                    .await?
                    .ok_or_else(|| {
                        Error::precondition_failed(
                            "a target policy changed while the promotion was planned",
                        )
                    })?;
                    journal(
                        &mut tx,
                        origin,
                        Change::of("policy.updated", Some(&before), Some(&rec)),
                    )
                    .await?;
                }
            }
        }
        let mut changed_secrets = SecretChanges::default();
        write_secret_batch(
            &mut tx,
            origin,
            &target.id,
            apply.secrets,
            &mut changed_secrets,
        )
        .await?;
        announce_secrets(&mut tx, &target.org_id, &target.id, &changed_secrets).await?;
        let changed_capabilities = !apply.capabilities.is_empty();
        for (agent_id, spec) in apply.capabilities {
            crate::agents::copy_capabilities(&mut tx, origin, &target, &agent_id, spec).await?;
        }
        if let Some(settings) = apply.settings {
            db::query("UPDATE environments SET settings = $2, updated_at = $3, version = version + 1 WHERE id = $1")
                .bind(&apply.target_env_id)
                .bind(sqlx::types::Json(settings))
                .bind(now_ms())
                .execute(&mut tx)
                .await
                .map_err(internal)?;
        }
        let r = &apply.record;
        db::query(
            "INSERT INTO promotions (id, org_id, source_env_id, target_env_id, record, promoted_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.promotion_id)
        .bind(&apply.org_id)
        .bind(&r.source_env)
        .bind(&r.target_env)
        .bind(sqlx::types::Json(r))
        .bind(r.promoted_at.timestamp_millis())
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        let change = Change::new(
            &apply.org_id,
            "environment.promoted",
            "environment",
            &target.id,
        )
        .env(&target.id)
        .before(serde_json::json!({"settings": target.settings.0, "version": target.version}))
        .after(serde_json::to_value(r).unwrap_or_default());
        journal(&mut tx, origin, change).await?;
        let mut events = vec![Invalidation::Environment {
            env_id: apply.target_env_id.clone(),
        }];
        if changed_policies {
            events.push(Invalidation::Policies {
                env_id: apply.target_env_id.clone(),
            });
        }
        if changed_capabilities {
            events.push(Invalidation::Capabilities {
                env_id: apply.target_env_id.clone(),
            });
        }
        self.commit(tx, events).await
    }

    /// Promotions from or into `env_id`, newest first.
    pub async fn promotions(
        &self,
        env_id: &EnvId,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<Promotion>, i64)> {
        let rows: Vec<(sqlx::types::Json<Promotion>,)> = db::query_as(
            "SELECT record FROM promotions WHERE (source_env_id = $1 OR target_env_id = $1) \
             AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(env_id)
        .bind(page.after.as_deref())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total = db::query_scalar(
            "SELECT COUNT(*) FROM promotions WHERE source_env_id = $1 OR target_env_id = $1",
        )
        .bind(env_id)
        .fetch_one(self.reader())
        .await
        .map_err(internal)?;
        Ok((rows.into_iter().map(|(r,)| r.0).collect(), total))
    }
}
