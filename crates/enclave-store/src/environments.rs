//! Environments: their rows, order, slug aliases and lifecycle (promotion: `promotions.rs`).
//!
//! Every write that depends on the organization's other environments (dense order, quota,
//! parent tree) first updates the organization row (`lock_org_envs`): on PostgreSQL that row
//! lock serialises those writes per organization; SQLite has one writer anyway.

use enclave_core::clock::now_ms;
use enclave_core::environment::{check_writable, EnvStatus, Transition};
use enclave_core::id::{EnvId, OrgId};
use enclave_core::{Error, Result};

use crate::db::{self, Tx};
use crate::db_error::{check_if_match, internal, unique_or};
use crate::journal::*;
use crate::policies::*;
use crate::records::*;
use crate::secrets::*;
use crate::store::Store;
use crate::Invalidation;
use sqlx::types::Json;

pub(crate) const ENV_COLUMNS: &str = "id, org_id, name, slug, env_type, position, color, \
     parent_env_id, description, status, locked, settings, required_keys, created_at, updated_at, \
     version, home_node";

impl Store {
    /// Appends a new environment (status `provisioning`) to its organization's order.
    /// `max_environments` is the organization's quota (`None`: unlimited) → 429 past it; a
    /// slug taken (in any case) → 409.
    pub async fn create_environment(
        &self,
        mut env: NewEnvironment,
        max_environments: Option<u32>,
        origin: &Origin,
    ) -> enclave_core::Result<EnvRecord> {
        let mut tx = self.begin_write().await?;
        let (count, _) = lock_org_envs(&mut tx, &env.org_id, 1, 1).await?;
        if let Some(max) = max_environments {
            if count > i64::from(max) {
                return Err(Error::quota_exceeded("max_environments", u64::from(max)));
            }
        }
        if let Some(parent) = &env.parent_env_id {
            let chain = parent_chain(&mut tx, &env.org_id, parent).await?;
            check_parent_row(chain, None, 1)?;
        }
        let copies = std::mem::take(&mut env.policies);
        let grants = std::mem::take(&mut env.capabilities);
        let secrets = env.secrets.take();
        let rec = insert_env(&mut tx, env, count - 1).await?;
        drop_alias(&mut tx, &rec.org_id, &rec.slug).await?;
        journal(
            &mut tx,
            origin,
            Change::of("environment.created", None, Some(&rec)),
        )
        .await?;
        for spec in copies {
            let policy = NewPolicy {
                id: enclave_core::id::new_id(enclave_core::id::Kind::Policy),
                org_id: rec.org_id.clone(),
                env_id: rec.id.clone(),
                spec,
                created_by: origin.actor.id.clone(),
            };
            let copy = insert_policy(&mut tx, policy).await?;
            journal(
                &mut tx,
                origin,
                Change::of("policy.created", None, Some(&copy)),
            )
            .await?;
        }
        for (agent_id, spec) in grants {
            crate::agents::copy_capabilities(&mut tx, origin, &rec, &agent_id, spec).await?;
        }
        if let Some(EnvSecrets { data_key, secrets }) = secrets {
            check_keyring(&mut tx, &data_key.master_key_id).await?;
            insert_data_key(&mut tx, &rec.id, &data_key).await?;
            let mut changed = SecretChanges::default();
            let writes = secrets.into_iter().map(SecretWrite::Create).collect();
            write_secret_batch(&mut tx, origin, &rec.id, writes, &mut changed).await?;
            announce_secrets(&mut tx, &rec.org_id, &rec.id, &changed).await?;
        }
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    pub async fn environment(&self, env_id: &EnvId) -> enclave_core::Result<Option<EnvRecord>> {
        db::query_as(format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE id = $1"
        ))
        .bind(env_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// By current slug, else by an old slug of a renamed environment.
    pub async fn environment_by_slug(
        &self,
        org_id: &OrgId,
        slug: &str,
    ) -> enclave_core::Result<Option<EnvRecord>> {
        let slug = slug.to_ascii_lowercase();
        let current: Option<EnvRecord> = db::query_as(format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE org_id = $1 AND lower(slug) = $2"
        ))
        .bind(org_id)
        .bind(&slug)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)?;
        if current.is_some() {
            return Ok(current);
        }
        let cols = ENV_COLUMNS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        db::query_as(format!(
            "SELECT {cols} FROM environment_slug_aliases a JOIN environments e ON e.id = a.env_id \
             WHERE a.org_id = $1 AND a.slug = $2"
        ))
        .bind(org_id)
        .bind(&slug)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    pub async fn environments(
        &self,
        org_id: &OrgId,
        filter: &EnvFilter,
        page: &EnvPageQuery,
    ) -> enclave_core::Result<EnvPage> {
        // The order version first: a reorder landing between the two reads then makes
        // the caller's reorder fail (412) instead of applying to an order it never saw.
        let org: Option<(i64, i64)> =
            db::query_as("SELECT env_count, env_order_version FROM organizations WHERE id = $1")
                .bind(org_id)
                .fetch_optional(self.reader())
                .await
                .map_err(internal)?;
        let Some((count, order_version)) = org else {
            return Err(Error::not_found("organization"));
        };
        // Conditions are added only when present, so each query shape gets a plan
        // that uses the (org_id, position, id) index for the keyset.
        let mut conditions = String::new();
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        if filter.status.is_some() {
            conditions += &format!(" AND status = ${}", next());
        }
        if filter.env_type.is_some() {
            conditions += &format!(" AND env_type = ${}", next());
        }
        if filter.parent_env_id.is_some() {
            conditions += &format!(" AND parent_env_id = ${}", next());
        }
        if filter.q.is_some() {
            let p = next();
            conditions +=
                &format!(" AND (lower(name) LIKE ${p} ESCAPE '\\' OR slug LIKE ${p} ESCAPE '\\')");
        }
        let pattern = filter.q.as_deref().map(|q| {
            let escaped = q
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let keyset = if page.after.is_some() {
            let (a, b) = (next(), next());
            format!(" AND (position, id) > (${a}, ${b})")
        } else {
            String::new()
        };
        let limit = next();
        let sql = format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE org_id = $1{conditions}{keyset} \
             ORDER BY position, id LIMIT ${limit}"
        );
        let mut q = db::query_as::<EnvRecord>(&sql).bind(org_id);
        if let Some(s) = filter.status {
            q = q.bind(s.as_str());
        }
        if let Some(t) = filter.env_type {
            q = q.bind(t.as_str());
        }
        if let Some(p) = &filter.parent_env_id {
            q = q.bind(p.as_str());
        }
        if let Some(p) = &pattern {
            q = q.bind(p.as_str());
        }
        if let Some((pos, id)) = &page.after {
            q = q.bind(*pos).bind(id.as_str());
        }
        let rows = q
            .bind(i64::from(page.limit) + 1)
            .fetch_all(self.reader())
            .await
            .map_err(internal)?;
        let total = if filter.is_empty() {
            count
        } else {
            let count_sql =
                format!("SELECT COUNT(*) FROM environments WHERE org_id = $1{conditions}");
            let mut c = db::query_scalar::<i64>(&count_sql).bind(org_id);
            if let Some(s) = filter.status {
                c = c.bind(s.as_str());
            }
            if let Some(t) = filter.env_type {
                c = c.bind(t.as_str());
            }
            if let Some(p) = &filter.parent_env_id {
                c = c.bind(p.as_str());
            }
            if let Some(p) = &pattern {
                c = c.bind(p.as_str());
            }
            c.fetch_one(self.reader()).await.map_err(internal)?
        };
        Ok(EnvPage {
            rows,
            total,
            order_version,
        })
    }

    /// Applies `patch` under the environment rules (docs/environments.md: lock, parent tree, dense
    /// index, unique slug); `expected_version` is the caller's `If-Match`.
    pub async fn update_environment(
        &self,
        env_id: &EnvId,
        expected_version: Option<i64>,
        patch: EnvPatch,
        origin: &Origin,
    ) -> enclave_core::Result<EnvRecord> {
        let mut tx = self.begin_write().await?;
        let org_id = org_of_env(&mut tx, env_id).await?;
        let moves = patch.index.is_some();
        let (count, _) = lock_org_envs(&mut tx, &org_id, 0, i64::from(moves)).await?;
        let cur = select_env(&mut tx, env_id).await?;
        check_if_match("environment", expected_version, cur.version)?;
        check_writable(cur.locked, cur.status, patch.only_locked())?;

        let settings = match &patch.settings {
            Some(p) => cur.settings.0.apply(p)?,
            None => cur.settings.0.clone(),
        };
        let parent = match &patch.parent_env_id {
            None => cur.parent_env_id.clone(),
            Some(None) => None,
            Some(Some(p)) => {
                let chain = parent_chain(&mut tx, &org_id, p).await?;
                let height: Option<i64> = db::query_scalar(
                    "WITH RECURSIVE sub(id, depth) AS ( \
                       SELECT id, 1 FROM environments WHERE id = $1 \
                       UNION ALL SELECT e.id, s.depth + 1 FROM environments e JOIN sub s ON e.parent_env_id = s.id \
                       WHERE s.depth < 16) \
                     SELECT CAST(MAX(depth) AS BIGINT) FROM sub",
                )
                .bind(env_id)
                .fetch_one(&mut tx)
                .await
                .map_err(internal)?;
                check_parent_row(chain, Some(env_id), height.unwrap_or(1) as usize)?;
                Some(p.clone())
            }
        };
        let position = match patch.index {
            None => cur.position,
            Some(to) => {
                if !(0..count).contains(&to) {
                    return Err(Error::validation(
                        "index",
                        "range",
                        format!("index must be between 0 and {}", count - 1),
                    ));
                }
                let from = cur.position;
                let (lo, hi, step) = if to < from {
                    (to, from - 1, 1)
                } else {
                    (from + 1, to, -1)
                };
                if to != from {
                    db::query(
                        "UPDATE environments SET position = position + $4, updated_at = $5, version = version + 1 \
                         WHERE org_id = $1 AND position BETWEEN $2 AND $3",
                    )
                    .bind(&org_id)
                    .bind(lo)
                    .bind(hi)
                    .bind(step)
                    .bind(now_ms())
                    .execute(&mut tx)
                    .await
                    .map_err(internal)?;
                }
                to
            }
        };
        let slug = patch.slug.clone().unwrap_or_else(|| cur.slug.clone());
        if slug != cur.slug {
            db::query(
                "INSERT INTO environment_slug_aliases (org_id, slug, env_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id, slug) DO UPDATE SET env_id = excluded.env_id, created_at = excluded.created_at",
            )
            .bind(&org_id)
            .bind(&cur.slug)
            .bind(env_id)
            .bind(now_ms())
            .execute(&mut tx)
            .await
            .map_err(internal)?;
            drop_alias(&mut tx, &org_id, &slug).await?;
        }
        let rec: EnvRecord = db::query_as(format!(
            "UPDATE environments SET name = $2, slug = $3, env_type = $4, color = $5, description = $6, \
             parent_env_id = $7, settings = $8, locked = $9, position = $10, updated_at = $11, \
             required_keys = $12, version = version + 1 WHERE id = $1 RETURNING {ENV_COLUMNS}"
        ))
        .bind(env_id)
        .bind(patch.name.as_deref().unwrap_or(&cur.name))
        .bind(&slug)
        .bind(patch.env_type.unwrap_or(cur.env_type).as_str())
        .bind(patch.color.as_deref().unwrap_or(&cur.color))
        .bind(patch.description.as_deref().unwrap_or(&cur.description))
        .bind(parent)
        .bind(sqlx::types::Json(settings))
        .bind(patch.locked.unwrap_or(cur.locked))
        .bind(position)
        .bind(now_ms())
        .bind(sqlx::types::Json(patch.required_keys.as_ref().unwrap_or(&cur.required_keys.0)))
        .fetch_one(&mut tx)
        .await
        .map_err(unique_or(slug_taken))?;
        journal(
            &mut tx,
            origin,
            Change::of("environment.updated", Some(&cur), Some(&rec)),
        )
        .await?;
        let mut events = vec![Invalidation::Environment {
            env_id: env_id.into(),
        }];
        if moves {
            events.push(Invalidation::OrgEnvironments { org_id });
        }
        self.commit(tx, events).await?;
        Ok(rec)
    }

    /// A lifecycle move (409 when illegal; suspend/resume refused while locked). Suspend and
    /// resume are audited; activation is not — it completes a create that already was.
    pub async fn transition_environment(
        &self,
        env_id: &EnvId,
        expected_version: Option<i64>,
        transition: Transition,
        origin: &Origin,
    ) -> enclave_core::Result<EnvRecord> {
        let mut tx = self.begin_write().await?;
        // Serialised with updates, so a lock set a moment ago is seen.
        let org_id = org_of_env(&mut tx, env_id).await?;
        lock_org_envs(&mut tx, &org_id, 0, 0).await?;
        let cur = select_env(&mut tx, env_id).await?;
        check_if_match("environment", expected_version, cur.version)?;
        if transition != Transition::Activate {
            check_writable(cur.locked, cur.status, false)?;
        }
        let next = cur.status.apply(transition)?;
        let rec = set_status(&mut tx, env_id, next).await?;
        let action = match transition {
            Transition::Suspend => Some("environment.suspended"),
            Transition::Resume => Some("environment.resumed"),
            _ => None,
        };
        if let Some(action) = action {
            journal(&mut tx, origin, Change::of(action, Some(&cur), Some(&rec))).await?;
        }
        self.commit(
            tx,
            vec![Invalidation::Environment {
                env_id: env_id.into(),
            }],
        )
        .await?;
        Ok(rec)
    }

    /// First step of a delete: refuses while locked or while it has children, else marks the
    /// environment `decommissioning`.
    pub async fn decommission_environment(
        &self,
        env_id: &EnvId,
        expected_version: Option<i64>,
        origin: &Origin,
    ) -> enclave_core::Result<EnvRecord> {
        let mut tx = self.begin_write().await?;
        // Serialised with creates, so no child can appear after the check below.
        let org_id = org_of_env(&mut tx, env_id).await?;
        lock_org_envs(&mut tx, &org_id, 0, 0).await?;
        let cur = select_env(&mut tx, env_id).await?;
        check_if_match("environment", expected_version, cur.version)?;
        check_writable(cur.locked, cur.status, false)?;
        let children: i64 =
            db::query_scalar("SELECT COUNT(*) FROM environments WHERE parent_env_id = $1")
                .bind(env_id)
                .fetch_one(&mut tx)
                .await
                .map_err(internal)?;
        if children > 0 {
            return Err(Error::conflict(
                "has_children",
                format!("the environment has {children} child environment(s); delete or re-parent them first"),
            ));
        }
        let next = cur.status.apply(Transition::Decommission)?;
        let rec = set_status(&mut tx, env_id, next).await?;
        journal(
            &mut tx,
            origin,
            Change::of("environment.deleted", Some(&cur), None),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::Environment {
                env_id: env_id.into(),
            }],
        )
        .await?;
        Ok(rec)
    }

    /// Last step of a delete: removes the row and closes the gap in the order (not audited
    /// again: the delete was, when it was asked for).
    pub async fn purge_environment(&self, env_id: &EnvId) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        let row: Option<(OrgId, i64)> =
            db::query_as("SELECT org_id, position FROM environments WHERE id = $1")
                .bind(env_id)
                .fetch_optional(&mut tx)
                .await
                .map_err(internal)?;
        let Some((org_id, position)) = row else {
            return Ok(());
        };
        lock_org_envs(&mut tx, &org_id, -1, 1).await?;
        // The data key first (the cascade would too): without it, every copy of the
        // environment's ciphertext is unreadable.
        db::query("DELETE FROM secret_keys WHERE env_id = $1")
            .bind(env_id)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        db::query("DELETE FROM environments WHERE id = $1")
            .bind(env_id)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        // The query audit's chain head (its entries cascade with the environment).
        db::query("DELETE FROM audit_chains WHERE chain_id = $1")
            .bind(env_id)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        db::query(
            "UPDATE environments SET position = position - 1, updated_at = $3, version = version + 1 \
             WHERE org_id = $1 AND position > $2",
        )
        .bind(&org_id)
        .bind(position)
        .bind(now_ms())
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        let events = vec![
            Invalidation::Environment {
                env_id: env_id.into(),
            },
            Invalidation::OrgEnvironments { org_id },
        ];
        self.commit(tx, events).await?;
        self.erase_freed_pages().await;
        Ok(())
    }

    /// Environments left mid-lifecycle (`provisioning`, `decommissioning`), e.g. by a crash.
    pub async fn unsettled_environments(&self) -> enclave_core::Result<Vec<EnvRecord>> {
        db::query_as(format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE status IN ('provisioning', 'decommissioning') ORDER BY id"
        ))
        .fetch_all(self.reader())
        .await
        .map_err(internal)
    }

    pub async fn child_count(&self, env_id: &EnvId) -> enclave_core::Result<i64> {
        db::query_scalar("SELECT COUNT(*) FROM environments WHERE parent_env_id = $1")
            .bind(env_id)
            .fetch_one(self.reader())
            .await
            .map_err(internal)
    }

    /// What a delete would remove besides the environment itself.
    pub async fn environment_contents(&self, env_id: &EnvId) -> enclave_core::Result<EnvContents> {
        // Tables add their count with the gateway's engines.
        let (api_keys, policies, secrets): (i64, i64, i64) = db::query_as(
            "SELECT (SELECT COUNT(*) FROM api_keys WHERE env_id = $1 AND status IN ('active', 'rotating')), \
             (SELECT COUNT(*) FROM policies WHERE env_id = $1), \
             (SELECT COUNT(*) FROM secrets WHERE env_id = $1)",
        )
        .bind(env_id)
        .fetch_one(self.reader())
        .await
        .map_err(internal)?;
        Ok(EnvContents {
            api_keys,
            policies,
            secrets,
        })
    }

    /// Applies a complete new order (every environment of the organization exactly once) if
    /// the order is still at `expected_version`; returns the new order version.
    pub async fn reorder_environments(
        &self,
        org_id: &OrgId,
        expected_version: i64,
        order: &[EnvId],
        origin: &Origin,
    ) -> enclave_core::Result<i64> {
        let mut tx = self.begin_write().await?;
        let version: Option<i64> = db::query_scalar(
            "UPDATE organizations SET env_order_version = env_order_version + 1 \
             WHERE id = $1 AND env_order_version = $2 RETURNING env_order_version",
        )
        .bind(org_id)
        .bind(expected_version)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let Some(version) = version else {
            return Err(Error::new(
                enclave_core::ErrorCode::PreconditionFailed,
                "the order changed since it was read (another reorder, create or delete won); list again and retry",
            )
            .with_details(serde_json::json!({ "field": "expected_version", "rule": "current_order_version" })));
        };
        let ids: Vec<EnvId> =
            db::query_scalar("SELECT id FROM environments WHERE org_id = $1 ORDER BY position")
                .bind(org_id)
                .fetch_all(&mut tx)
                .await
                .map_err(internal)?;
        enclave_core::environment::check_order(&ids, order)?;
        // One statement: each id's new position is a CASE arm (positions are the
        // arms' own numbers, ids are bound), rows already in place are left alone.
        let arms: String = (0..order.len())
            .map(|i| format!(" WHEN ${} THEN {i}", i + 3))
            .collect();
        let sql = format!(
            "UPDATE environments SET position = CASE id{arms} END, updated_at = $2, version = version + 1 \
             WHERE org_id = $1 AND position <> CASE id{arms} END"
        );
        if !order.is_empty() {
            let mut q = db::query(&sql).bind(org_id).bind(now_ms());
            for id in order {
                q = q.bind(id);
            }
            q.execute(&mut tx).await.map_err(internal)?;
        }
        let change = Change::new(org_id, "environment.reordered", "organization", org_id)
            .before(serde_json::json!({"order": ids, "order_version": expected_version}))
            .after(serde_json::json!({"order": order, "order_version": version}));
        journal(&mut tx, origin, change).await?;
        self.commit(
            tx,
            vec![Invalidation::OrgEnvironments {
                org_id: org_id.into(),
            }],
        )
        .await?;
        Ok(version)
    }
}

/// Moves the organization's environment count by `count` and its order version by `order`,
/// returning both; the update holds the organization row until commit (PostgreSQL row lock;
/// SQLite's single writer), so writes that depend on the other environments take turns. 404
/// when the organization is gone.
pub(crate) async fn lock_org_envs(
    tx: &mut Tx,
    org_id: &OrgId,
    count: i64,
    order: i64,
) -> Result<(i64, i64)> {
    db::query_as::<(i64, i64)>(
        "UPDATE organizations SET env_count = env_count + $2, \
         env_order_version = env_order_version + $3 WHERE id = $1 \
         RETURNING env_count, env_order_version",
    )
    .bind(org_id)
    .bind(count)
    .bind(order)
    .fetch_optional(tx)
    .await
    .map_err(internal)?
    .ok_or_else(|| Error::not_found("organization"))
}

/// The organization of environment `env_id` (immutable, so it may be read before the lock);
/// 404 when absent.
pub(crate) async fn org_of_env(tx: &mut Tx, env_id: &EnvId) -> Result<OrgId> {
    db::query_scalar::<OrgId>("SELECT org_id FROM environments WHERE id = $1")
        .bind(env_id)
        .fetch_optional(tx)
        .await
        .map_err(internal)?
        .ok_or_else(|| Error::not_found("environment"))
}

/// The environment `env_id`; 404 when absent.
pub(crate) async fn select_env(tx: &mut Tx, env_id: &EnvId) -> Result<EnvRecord> {
    db::query_as::<EnvRecord>(&format!(
        "SELECT {ENV_COLUMNS} FROM environments WHERE id = $1"
    ))
    .bind(env_id)
    .fetch_optional(tx)
    .await
    .map_err(internal)?
    .ok_or_else(|| Error::not_found("environment"))
}

/// The parent's ancestry as `(id, status)`, parent first; empty when it is not an
/// environment of `org_id`.
pub(crate) async fn parent_chain(
    tx: &mut Tx,
    org_id: &OrgId,
    parent: &str,
) -> Result<Vec<(String, String)>> {
    db::query_as::<(String, String)>(
        "WITH RECURSIVE chain(id, parent_env_id, status, depth) AS ( \
           SELECT id, parent_env_id, status, 1 FROM environments WHERE id = $1 AND org_id = $2 \
           UNION ALL SELECT e.id, e.parent_env_id, e.status, c.depth + 1 FROM environments e \
           JOIN chain c ON e.id = c.parent_env_id WHERE c.depth < 16) \
         SELECT id, status FROM chain ORDER BY depth",
    )
    .bind(parent)
    .bind(org_id)
    .fetch_all(tx)
    .await
    .map_err(internal)
}

/// The parent rules of `enclave_core::environment::check_parent`, plus: a parent being
/// deleted cannot take children.
pub(crate) fn check_parent_row(
    chain: Vec<(String, String)>,
    env: Option<&str>,
    height: usize,
) -> Result<()> {
    let ids: Vec<String> = chain.iter().map(|(id, _)| id.clone()).collect();
    enclave_core::environment::check_parent(env, &ids, height)?;
    match chain.first() {
        Some((_, status)) if status == "decommissioning" => Err(Error::conflict(
            "parent_decommissioning",
            "the parent environment is being deleted",
        )),
        _ => Ok(()),
    }
}

/// Inserts a new environment at `position` (409 when the slug is taken).
pub(crate) async fn insert_env(tx: &mut Tx, e: NewEnvironment, position: i64) -> Result<EnvRecord> {
    let now = now_ms();
    db::query_as::<EnvRecord>(&format!(
        "INSERT INTO environments (id, org_id, name, slug, env_type, position, color, \
         parent_env_id, description, status, locked, settings, required_keys, created_at, \
         updated_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'provisioning', $10, $11, $13, $12, $12, 1) \
         RETURNING {ENV_COLUMNS}"
    ))
    .bind(e.id)
    .bind(e.org_id)
    .bind(e.name)
    .bind(e.slug)
    .bind(e.env_type.as_str())
    .bind(position)
    .bind(e.color)
    .bind(e.parent_env_id)
    .bind(e.description)
    .bind(false)
    .bind(Json(e.settings))
    .bind(now)
    .bind(Json(e.required_keys))
    .fetch_one(tx)
    .await
    .map_err(unique_or(slug_taken))
}

/// An old slug stops resolving once an environment takes it.
pub(crate) async fn drop_alias(tx: &mut Tx, org_id: &OrgId, slug: &str) -> Result<()> {
    db::query("DELETE FROM environment_slug_aliases WHERE org_id = $1 AND slug = $2")
        .bind(org_id)
        .bind(slug)
        .execute(tx)
        .await
        .map(|_| ())
        .map_err(internal)
}

pub(crate) async fn set_status(
    tx: &mut Tx,
    env_id: &EnvId,
    status: EnvStatus,
) -> Result<EnvRecord> {
    db::query_as::<EnvRecord>(&format!(
        "UPDATE environments SET status = $2, updated_at = $3, version = version + 1 \
         WHERE id = $1 RETURNING {ENV_COLUMNS}"
    ))
    .bind(env_id)
    .bind(status.as_str())
    .bind(now_ms())
    .fetch_one(tx)
    .await
    .map_err(internal)
}

pub(crate) fn slug_taken() -> enclave_core::Error {
    enclave_core::Error::conflict(
        "slug_taken",
        "an environment with this slug already exists in the organization",
    )
    .with_details(serde_json::json!({ "field": "slug", "rule": "slug_taken" }))
}
