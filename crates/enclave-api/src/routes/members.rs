//! `/v1/organizations/{org_id}/users`: invite, list, get, update, remove, change role. The
//! rules of who may do what to whom are in `enclave_core::membership`.

use enclave_core::clock::now_ms;
use std::collections::BTreeMap;

use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use enclave_core::id::{OrgId, UserId};
use enclave_core::membership::{
    check_account_recovery, check_invite, check_removal, check_role_change, check_status_change,
    ActingMember, Target,
};
use enclave_core::model::{Member, MemberStatus};
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::{validate, Error, Permission, Role};
use enclave_store::{MemberFilter, MemberPatch, MemberRecord, NewInvite, NewPasswordReset};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::access::{require, OrgAccess};
use crate::auth::{tokens, Origin, UserCaller};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{IfMatch, JsonBody, QueryParams};
use crate::state::AppState;
use crate::views;

const INVITATION_DAYS: i64 = 7;
/// A reset link is good once, for a day: long enough to hand it over, short enough to lapse.
const RESET_HOURS: i64 = 24;

/// Shown once, to hand to the member: `token` sets a new password at
/// `POST /v1/auth/reset-password`. Only its hash is stored.
#[derive(Serialize, ToSchema)]
pub struct PasswordResetLink {
    pub user_id: UserId,
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub name: Option<String>,
    /// `active` or `suspended`; suspension takes effect at once.
    pub status: Option<MemberStatus>,
    /// Replaces the whole map; row-level filters use these as placeholders.
    pub attributes: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    pub role: Role,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListMembers {
    pub role: Option<Role>,
    pub status: Option<MemberStatus>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn actor(a: &OrgAccess) -> ActingMember<'_> {
    ActingMember {
        user_id: &a.user_id,
        role: a.role,
    }
}

fn target(m: &MemberRecord) -> Target<'_> {
    Target {
        user_id: &m.user_id,
        role: m.role,
        status: m.status,
    }
}

async fn load(
    state: &AppState,
    org_id: &OrgId,
    user_id: &str,
    expected: Option<i64>,
) -> ApiResult<MemberRecord> {
    let not_found = || Error::not_found("user");
    let user_id = UserId::parse(user_id).ok_or_else(not_found)?;
    let m = state
        .store
        .member(org_id, &user_id)
        .await?
        .ok_or_else(not_found)?;
    if expected.is_some_and(|v| v != m.version) {
        return Err(Error::precondition_failed(
            "the member changed since it was read (stale If-Match)",
        )
        .into());
    }
    Ok(m)
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/users", tag = "members", security(("bearer" = [])),
    params(("org_id" = String, Path), ListMembers), responses(
    (status = 200, body = Page<Member>), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: UserCaller,
    Path(org_id): Path<String>,
    QueryParams(q): QueryParams<ListMembers>,
) -> ApiResult<axum::Json<Page<Member>>> {
    let org_id = require(&state, &who, &org_id, Permission::ManageUsers)
        .await?
        .org_id;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let filter = MemberFilter {
        role: q.role,
        status: q.status,
    };
    let (rows, total) = state.store.members(&org_id, &filter, &page).await?;
    let rows = rows.into_iter().map(views::member).collect();
    Ok(axum::Json(Page::from_rows(
        rows,
        &page,
        total,
        |m: &Member| m.user_id.to_string(),
    )))
}

#[utoipa::path(post, path = "/v1/organizations/{org_id}/users", tag = "members", security(("bearer" = [])),
    params(("org_id" = String, Path)), request_body = InviteRequest, responses(
    (status = 201, description = "invited; the invitation token is in `invitation.token`, shown this once", body = Member),
    (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
    (status = 429, description = "QUOTA_EXCEEDED: the organization's max_users (members and invitations)", body = ErrorEnvelope)))]
pub async fn invite(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path(org_id): Path<String>,
    JsonBody(req): JsonBody<InviteRequest>,
) -> ApiResult<Response> {
    let me = require(&state, &who, &org_id, Permission::ManageUsers).await?;
    let email = validate::email("email", &req.email)?;
    let name = req
        .name
        .as_deref()
        .map(|n| validate::display_name("name", n, 128))
        .transpose()?;
    check_invite(actor(&me), req.role)?;
    let token = tokens::random_token("inv_");
    let max_users = crate::billing::org_quotas(&state, &me.org_id)
        .await?
        .max_users;
    let rec = state
        .store
        .invite(
            NewInvite {
                org_id: me.org_id.clone(),
                new_user_id: UserId::generate(),
                email,
                name,
                role: req.role,
                token: tokens::hash_token(&token),
                expires_at: now_ms() + INVITATION_DAYS * 24 * 3600 * 1000,
            },
            max_users,
            &origin,
        )
        .await?;
    let location = format!("/v1/organizations/{org_id}/users/{}", rec.user_id);
    let version = rec.version;
    let member = views::member_with_token(rec, Some(token));
    Ok(views::created(version, location, member))
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/users/{user_id}", tag = "members", security(("bearer" = [])),
    params(("org_id" = String, Path), ("user_id" = String, Path)), responses(
    (status = 200, body = Member), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: UserCaller,
    Path((org_id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let org_id = require(&state, &who, &org_id, Permission::ManageUsers)
        .await?
        .org_id;
    let m = load(&state, &org_id, &user_id, None).await?;
    Ok(views::with_etag(m.version, views::member(m)))
}

#[utoipa::path(patch, path = "/v1/organizations/{org_id}/users/{user_id}", tag = "members", security(("bearer" = [])),
    params(("org_id" = String, Path), ("user_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateMember, responses(
    (status = 200, body = Member), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((org_id, user_id)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
    JsonBody(req): JsonBody<UpdateMember>,
) -> ApiResult<Response> {
    let me = require(&state, &who, &org_id, Permission::ManageUsers).await?;
    let name = req
        .name
        .as_deref()
        .map(|n| validate::display_name("name", n, 128))
        .transpose()?;
    if let Some(a) = &req.attributes {
        validate::attributes("attributes", a)?;
    }
    let current = load(&state, &me.org_id, &user_id, expected).await?;
    if let Some(status) = req.status {
        check_status_change(actor(&me), target(&current), status)?;
    }
    let patch = MemberPatch {
        name,
        status: req.status,
        attributes: req.attributes,
        role: None,
    };
    let m = state
        .store
        .update_member(
            &me.org_id,
            &current.user_id,
            current.version,
            patch,
            &origin,
        )
        .await?;
    Ok(views::with_etag(m.version, views::member(m)))
}

#[utoipa::path(delete, path = "/v1/organizations/{org_id}/users/{user_id}", tag = "members", security(("bearer" = [])),
    params(("org_id" = String, Path), ("user_id" = String, Path), ("If-Match" = Option<String>, Header)), responses(
    (status = 204, description = "removed"), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "the owner cannot be removed", body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn remove(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((org_id, user_id)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
) -> ApiResult<StatusCode> {
    let me = require(&state, &who, &org_id, Permission::ManageUsers).await?;
    let current = load(&state, &me.org_id, &user_id, expected).await?;
    check_removal(actor(&me), target(&current))?;
    state
        .store
        .remove_member(&me.org_id, &current.user_id, current.version, &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/v1/organizations/{org_id}/users/{user_id}/role", tag = "members", security(("bearer" = [])),
    params(("org_id" = String, Path), ("user_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = SetRole, responses(
    (status = 200, body = Member), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn set_role(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((org_id, user_id)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
    JsonBody(req): JsonBody<SetRole>,
) -> ApiResult<Response> {
    let me = require(&state, &who, &org_id, Permission::ManageUsers).await?;
    let current = load(&state, &me.org_id, &user_id, expected).await?;
    check_role_change(actor(&me), target(&current), req.role)?;
    let patch = MemberPatch {
        role: Some(req.role),
        ..Default::default()
    };
    let m = state
        .store
        .update_member(
            &me.org_id,
            &current.user_id,
            current.version,
            patch,
            &origin,
        )
        .await?;
    Ok(views::with_etag(m.version, views::member(m)))
}

/// The member whose account an owner or admin may recover: the rules of
/// [`check_account_recovery`], and no membership in another organization — whose admins never
/// agreed to this one's resetting their member.
async fn recoverable(state: &AppState, me: &OrgAccess, user_id: &str) -> ApiResult<MemberRecord> {
    let current = load(state, &me.org_id, user_id, None).await?;
    check_account_recovery(actor(me), target(&current))?;
    if state.store.membership_count(&current.user_id).await? > 1 {
        return Err(Error::conflict(
            "user_in_other_organizations",
            "this account belongs to other organizations too; only its owner can recover it",
        )
        .into());
    }
    Ok(current)
}

#[utoipa::path(post, path = "/v1/organizations/{org_id}/users/{user_id}/password-reset", tag = "members", security(("bearer" = [])),
    params(("org_id" = String, Path), ("user_id" = String, Path)), responses(
    (status = 201, description = "a one-time reset token, valid 24 hours, shown once; earlier ones stop working", body = PasswordResetLink),
    (status = 403, description = "one's own account, the owner's, or an admin's without being owner", body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope),
    (status = 409, description = "invitation not accepted yet, or the account belongs to other organizations", body = ErrorEnvelope)))]
pub async fn reset_password(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((org_id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let me = require(&state, &who, &org_id, Permission::ManageUsers).await?;
    let current = recoverable(&state, &me, &user_id).await?;
    let token = tokens::random_token("epr_");
    let expires_at = now_ms() + RESET_HOURS * 3600 * 1000;
    state
        .store
        .create_password_reset(
            NewPasswordReset {
                token_hash: tokens::hash_token(&token),
                user_id: current.user_id.clone(),
                org_id: me.org_id.clone(),
                created_by: who.user_id.to_string(),
                expires_at,
            },
            &origin,
        )
        .await?;
    let body = PasswordResetLink {
        user_id: current.user_id,
        token,
        expires_at: enclave_core::clock::from_ms(expires_at),
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

#[utoipa::path(delete, path = "/v1/organizations/{org_id}/users/{user_id}/mfa", tag = "members", security(("bearer" = [])),
    params(("org_id" = String, Path), ("user_id" = String, Path)), responses(
    (status = 204, description = "the member's second factor is off; they enrol again"),
    (status = 403, description = "one's own account, the owner's, or an admin's without being owner", body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope),
    (status = 409, description = "no second factor on, invitation pending, or the account belongs to other organizations", body = ErrorEnvelope)))]
pub async fn reset_mfa(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((org_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let me = require(&state, &who, &org_id, Permission::ManageUsers).await?;
    let current = recoverable(&state, &me, &user_id).await?;
    state
        .store
        .disable_totp(&current.user_id, "user.mfa_reset", &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
