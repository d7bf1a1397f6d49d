//! Configuration between environments: promote (with dry run) and its history, clone, diff.
//!
//! Settings, policies, secrets and agents' capability grants move in one change list and one
//! store transaction. Secret
//! values are opened with the source's data key and sealed again with the target's; the
//! answers name keys only.

use std::collections::BTreeMap;

use axum::extract::State;

use crate::extract::Path;
use axum::response::Response;
use enclave_core::agent::CapabilitySpec;
use enclave_core::diff::{
    diff_capabilities, diff_policies, diff_settings, DiffStatus, EnvironmentDiff,
};
use enclave_core::environment::{check_writable, EnvType};
use enclave_core::id::{new_id, EnvId, Kind};
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::policy::PolicySpec;
use enclave_core::promotion::{
    self, plan_capabilities, plan_policies, plan_settings, CloneItem, PromoteItem, Promotion,
    PromotionCounts, PromotionStatus, TargetPolicy,
};
use enclave_core::secret::{self, Content};
use enclave_core::{Error, ErrorCode, Permission, Result};
use enclave_store::{
    EnvRecord, EnvSecrets, NewPolicy, NewSecret, PolicyRecord, PolicyWrite, PromotionApply,
    SecretWrite,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::access::{env_access, find_env, require};
use crate::auth::{Caller, Origin, UserCaller};
use crate::environments::{create_and_provision, created, new_environment, EnvFields};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{JsonBody, QueryParams};
use crate::secrets;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    /// Another environment of the same organization.
    pub target_env_id: String,
    /// Default: everything.
    pub include: Option<Vec<PromoteItem>>,
    /// Answer what a real run would do; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneEnvironment {
    pub name: String,
    /// Default derived from `name`.
    pub slug: Option<String>,
    /// Default inferred from the slug.
    #[serde(rename = "type")]
    pub env_type: Option<EnvType>,
    pub color: Option<String>,
    /// Default: the source's description.
    pub description: Option<String>,
    pub parent_env_id: Option<String>,
    /// Default: settings, policies, secrets and capabilities. `data` (tables with their rows,
    /// and views) is copied only when named. API keys are never copied.
    pub include: Option<Vec<CloneItem>>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiffParams {
    /// The environment to compare with (required).
    pub against: String,
}

pub use crate::extract::ListParams;

/// Another environment of `source`'s organization named by the caller; 404 otherwise.
async fn sibling(state: &AppState, source: &EnvRecord, env_id: &str) -> Result<EnvRecord> {
    let env = find_env(state, env_id).await?;
    if env.org_id != source.org_id {
        return Err(Error::not_found("environment"));
    }
    Ok(env)
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/promote", tag = "environments", security(("bearer" = [])),
    params(("env_id" = String, Path, description = "the source")), request_body = Promote, responses(
    (status = 200, body = Promotion), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, description = "target locked", body = ErrorEnvelope)))]
pub async fn promote(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path(env_id): Path<String>,
    JsonBody(req): JsonBody<Promote>,
) -> ApiResult<axum::Json<Promotion>> {
    let (source, _) = env_access(
        &state,
        &Caller::User(who.clone()),
        &env_id,
        Permission::ManageEnvironments,
    )
    .await?;
    let include = promotion::include(req.include, &PromoteItem::ALL)?;
    if req.target_env_id == source.id {
        return Err(Error::validation(
            "target_env_id",
            "different_environment",
            "target_env_id must be another environment than the source",
        )
        .into());
    }
    let policy_types = promotion::policy_types(&include);
    let with_secrets = include.contains(&PromoteItem::Secrets);
    let source_secrets = if with_secrets {
        contents_of(secrets::env_contents(&state.store, &state.keyring, &source.id).await?)
    } else {
        BTreeMap::new()
    };
    let source_grants = if include.contains(&PromoteItem::Capabilities) {
        grants_of(&state, &source.id).await?
    } else {
        BTreeMap::new()
    };
    let source_policies = if policy_types.is_empty() {
        Vec::new()
    } else {
        state.store.env_policies(&source.id).await?
    };
    // Planned from the target as read, applied only if it is still that version (and each
    // updated policy still at its version): a write landing in between makes the store
    // answer 412, and the plan is made again.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let target = sibling(&state, &source, &req.target_env_id).await?;
        // The change lands in the target: the caller must be allowed to manage it there (a
        // just-in-time grant in the source alone does not reach it).
        let (_, target_access) = env_access(
            &state,
            &Caller::User(who.clone()),
            &target.id,
            Permission::ManageEnvironments,
        )
        .await?;
        let origin = origin.clone().via(target_access.grant());
        check_writable(target.locked, target.status, false)?;
        let mut details = Vec::new();
        let mut settings = None;
        if include.contains(&PromoteItem::Settings) {
            if let Some((new, changes)) = plan_settings(&source.settings.0, &target.settings.0) {
                settings = Some(new);
                details.extend(changes);
            }
        }
        let mut policies = Vec::new();
        if !policy_types.is_empty() {
            let target_policies = state.store.env_policies(&target.id).await?;
            let plan = plan_policies(
                &specs(&source_policies),
                &target_policies
                    .iter()
                    .map(|p| TargetPolicy {
                        policy_id: &p.id,
                        version: p.version,
                        spec: &p.spec.0,
                    })
                    .collect::<Vec<_>>(),
                &policy_types,
            );
            details.extend(plan.changes);
            policies.extend(plan.creates.into_iter().map(|spec| {
                PolicyWrite::Create(NewPolicy {
                    id: new_id(Kind::Policy),
                    org_id: target.org_id.clone(),
                    env_id: target.id.clone(),
                    spec,
                    created_by: who.user_id.to_string(),
                })
            }));
            policies.extend(
                plan.updates
                    .into_iter()
                    .map(|(policy_id, expected_version, spec)| PolicyWrite::Update {
                        policy_id,
                        expected_version,
                        spec,
                    }),
            );
        }
        let mut secret_writes = Vec::new();
        if with_secrets {
            let target_secrets =
                secrets::env_contents(&state.store, &state.keyring, &target.id).await?;
            let changes =
                secret::plan_promotion(&source_secrets, &contents_of(target_secrets.clone()));
            if !changes.is_empty() && !req.dry_run {
                let key = state.keyring.for_writing(&target.id).await?;
                for change in &changes {
                    let content = &source_secrets[&change.name];
                    secret_writes.push(match target_secrets.get(&change.name) {
                        None => {
                            let id = new_id(Kind::Secret);
                            SecretWrite::Create(NewSecret {
                                ciphertext: key.seal(&id, 1, &content.value),
                                id,
                                org_id: target.org_id.clone(),
                                env_id: target.id.clone(),
                                key: change.name.clone(),
                                comment: content.comment.clone(),
                                tags: content.tags.clone(),
                            })
                        }
                        Some((rec, _)) => SecretWrite::Update {
                            secret_id: rec.id.clone(),
                            key: rec.key.clone(),
                            expected_version: rec.version,
                            ciphertext: key.seal(&rec.id, rec.version + 1, &content.value),
                            comment: content.comment.clone(),
                            tags: content.tags.clone(),
                        },
                    });
                }
            }
            details.extend(changes);
        }
        let mut capabilities = Vec::new();
        if include.contains(&PromoteItem::Capabilities) {
            let target_grants = grants_of(&state, &target.id).await?;
            let (writes, changes) = plan_capabilities(&source_grants, &target_grants);
            capabilities = writes;
            details.extend(changes);
        }
        let record = Promotion {
            promotion_id: new_id(Kind::Promotion),
            source_env: source.id.clone(),
            target_env: target.id.clone(),
            status: if req.dry_run {
                PromotionStatus::DryRun
            } else {
                PromotionStatus::Completed
            },
            dry_run: req.dry_run,
            include: include.iter().copied().collect(),
            changes: PromotionCounts::of(&details),
            details,
            promoted_by: who.user_id.to_string(),
            promoted_at: enclave_core::clock::now(),
        };
        if req.dry_run {
            return Ok(axum::Json(record));
        }
        let apply = PromotionApply {
            org_id: source.org_id.clone(),
            target_env_id: target.id.clone(),
            expected_target_version: target.version,
            settings,
            policies,
            secrets: secret_writes,
            capabilities,
            record: record.clone(),
        };
        match state.store.apply_promotion(apply, &origin).await {
            Ok(()) => return Ok(axum::Json(record)),
            Err(e)
                if (e.code == ErrorCode::PreconditionFailed
                    || e.details["rule"] == "key_taken")
                    && attempts < 5 =>
            {
                continue
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/promotions", tag = "environments", security(("bearer" = [])),
    params(("env_id" = String, Path), ListParams), responses(
    (status = 200, body = Page<Promotion>), (status = 404, body = ErrorEnvelope)))]
pub async fn promotions(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<Page<Promotion>>> {
    let env_id = env_access(&state, &who, &env_id, Permission::ReadEnvironments)
        .await?
        .0
        .id;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state.store.promotions(&env_id, &page).await?;
    Ok(axum::Json(Page::from_rows(rows, &page, total, |p| {
        p.promotion_id.clone()
    })))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/clone", tag = "environments", security(("bearer" = [])),
    params(("env_id" = String, Path, description = "the source")), request_body = CloneEnvironment, responses(
    (status = 201, body = enclave_core::environment::Environment), (status = 400, body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "slug taken", body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
pub async fn clone(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path(env_id): Path<String>,
    JsonBody(req): JsonBody<CloneEnvironment>,
) -> ApiResult<Response> {
    let (source, _) = env_access(
        &state,
        &Caller::User(who.clone()),
        &env_id,
        Permission::ManageEnvironments,
    )
    .await?;
    // A clone is a new environment of the organization: the caller's own role must allow
    // that (a just-in-time grant covers only the environment it was given for).
    require(&state, &who, &source.org_id, Permission::ManageEnvironments).await?;
    let include = promotion::include(req.include, &CloneItem::DEFAULT)?;
    let settings = if include.contains(&CloneItem::Settings) {
        source.settings.0.clone()
    } else {
        crate::environments::initial_settings(state.gateway.engines().default_engine)
    };
    crate::environments::check_placement(&state, None, &settings)?;
    let with_data = include.contains(&CloneItem::Data);
    if with_data {
        crate::data_clone::check(&state, &source, &settings).await?;
    }
    let policies = if include.contains(&CloneItem::Policies) {
        state
            .store
            .env_policies(&source.id)
            .await?
            .into_iter()
            .map(|p| p.spec.0)
            .collect()
    } else {
        Vec::new()
    };
    let mut env = new_environment(
        &source.org_id,
        EnvFields {
            name: req.name,
            slug: req.slug,
            env_type: req.env_type,
            color: req.color,
            parent_env_id: req.parent_env_id,
            description: Some(req.description.unwrap_or(source.description.clone())),
        },
        settings,
    )?;
    env.policies = policies;
    if include.contains(&CloneItem::Capabilities) {
        env.capabilities = grants_of(&state, &source.id).await?.into_iter().collect();
    }
    if include.contains(&CloneItem::Secrets) {
        env.required_keys = source.required_keys.0.clone();
        let copies = secrets::env_contents(&state.store, &state.keyring, &source.id).await?;
        if !copies.is_empty() {
            let (key, data_key) = state.keyring.new_data_key(&env.id);
            let secrets = copies
                .into_values()
                .map(|(rec, content)| {
                    let id = new_id(Kind::Secret);
                    NewSecret {
                        ciphertext: key.seal(&id, 1, &content.value),
                        id,
                        org_id: env.org_id.clone(),
                        env_id: env.id.clone(),
                        key: rec.key,
                        comment: content.comment,
                        tags: content.tags,
                    }
                })
                .collect();
            env.secrets = Some(EnvSecrets { data_key, secrets });
        }
    }
    let rec = if with_data {
        crate::data_clone::create(&state, env, &source, &origin).await?
    } else {
        create_and_provision(&state, env, &origin).await?
    };
    Ok(created(&state, rec).await?)
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/diff", tag = "environments", security(("bearer" = [])),
    params(("env_id" = String, Path), DiffParams), responses(
    (status = 200, body = EnvironmentDiff), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn diff(
    State(state): State<AppState>,
    who: UserCaller,
    Path(env_id): Path<String>,
    QueryParams(q): QueryParams<DiffParams>,
) -> ApiResult<axum::Json<EnvironmentDiff>> {
    let (this, _) = env_access(
        &state,
        &Caller::User(who.clone()),
        &env_id,
        Permission::ReadEnvironments,
    )
    .await?;
    let against = sibling(&state, &this, &q.against).await?;
    let settings = diff_settings(&this.settings.0, &against.settings.0);
    let (mine, theirs) = (
        state.store.env_policies(&this.id).await?,
        state.store.env_policies(&against.id).await?,
    );
    let policies = diff_policies(&specs(&mine), &specs(&theirs));
    let (mine, theirs) = (
        crate::secrets::env_values(&state.store, &state.keyring, &this.id).await?,
        crate::secrets::env_values(&state.store, &state.keyring, &against.id).await?,
    );
    let secrets = secret::diff(&mine, &theirs);
    let capabilities = diff_capabilities(
        &grants_of(&state, &this.id).await?,
        &grants_of(&state, &against.id).await?,
    );
    let equal = |s: &DiffStatus| *s == DiffStatus::Equal;
    let identical = settings.iter().all(|s| equal(&s.status))
        && policies.iter().all(|p| equal(&p.status))
        && secrets.iter().all(|s| equal(&s.status))
        && capabilities.iter().all(|c| equal(&c.status));
    let missing = |required: &[String], held: &BTreeMap<String, String>| -> Vec<String> {
        required
            .iter()
            .filter(|k| !held.contains_key(*k))
            .cloned()
            .collect()
    };
    Ok(axum::Json(EnvironmentDiff {
        missing_keys: missing(&this.required_keys.0, &mine),
        against_missing_keys: missing(&against.required_keys.0, &theirs),
        env_id: this.id,
        against_env_id: against.id,
        identical,
        settings,
        policies,
        secrets,
        capabilities,
    }))
}

/// The environment's capability grants' content, by agent id.
async fn grants_of(state: &AppState, env_id: &EnvId) -> Result<BTreeMap<String, CapabilitySpec>> {
    Ok(state
        .store
        .env_capabilities(env_id)
        .await?
        .into_iter()
        .map(|g| (g.agent_id, g.spec.0))
        .collect())
}

fn contents_of(
    secrets: BTreeMap<String, (enclave_store::SecretRecord, Content)>,
) -> BTreeMap<String, Content> {
    secrets.into_iter().map(|(k, (_, c))| (k, c)).collect()
}

fn specs(records: &[PolicyRecord]) -> Vec<&PolicySpec> {
    records.iter().map(|r| &r.spec.0).collect()
}
