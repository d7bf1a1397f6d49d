//! `/v1/auth/password`, `/v1/auth/reset-password` and `/v1/auth/mfa/*`: a signed-in user
//! changes their password and manages their second factor; whoever holds a reset link sets a
//! new password.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use enclave_core::clock::from_ms;
use enclave_core::id::UserId;
use enclave_core::{validate, Error};
use enclave_store::{MfaState, UserRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::mfa;
use crate::auth::tokens::hash_token;
use crate::auth::{Origin, RequestMeta, UserCaller};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::JsonBody;
use crate::proof;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct PasswordChanged {
    /// The user's other sessions, ended by the change (this one stays signed in).
    pub sessions_ended: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// The `epr_…` token of the reset link an owner or admin created.
    pub token: String,
    pub new_password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordProof {
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeProof {
    /// The 6-digit code the authenticator app shows now.
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableTotp {
    pub password: String,
    /// A current code, or one of the recovery codes.
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct MfaStatus {
    pub totp_enabled: bool,
    pub enabled_at: Option<DateTime<Utc>>,
    /// An enrolment was begun and awaits its first code.
    pub pending: bool,
    pub recovery_codes_left: i64,
}

/// Shown once: the secret to put in an authenticator app.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// Base32, for typing into an app.
    pub secret: String,
    /// The same as an `otpauth://` URI, for a QR code.
    pub otpauth_uri: String,
}

/// Shown once: each works a single time instead of a code, for a lost device.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

#[utoipa::path(post, path = "/v1/auth/password", tag = "account", security(("bearer" = [])),
    request_body = ChangePassword, responses(
    (status = 200, description = "changed; every other session of the user ended", body = PasswordChanged),
    (status = 400, description = "the new password breaks a rule", body = ErrorEnvelope),
    (status = 401, description = "the current password is wrong", body = ErrorEnvelope)))]
pub async fn change_password(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    JsonBody(req): JsonBody<ChangePassword>,
) -> ApiResult<axum::Json<PasswordChanged>> {
    let user = signed_in_user(&state, &who).await?;
    validate::password("new_password", &req.new_password, Some(&user.email))?;
    proof::password(
        &state,
        &who.user_id,
        req.current_password,
        origin.source_ip.as_deref(),
    )
    .await?;
    let hash = state.passwords.hash(req.new_password).await?;
    let sessions_ended = state
        .store
        .set_password(&who.user_id, hash, Some(&who.session_id), &origin)
        .await?;
    Ok(axum::Json(PasswordChanged { sessions_ended }))
}

#[utoipa::path(post, path = "/v1/auth/reset-password", tag = "account", request_body = ResetPassword, responses(
    (status = 204, description = "the password is set; every session of the user ended"),
    (status = 400, description = "the new password breaks a rule", body = ErrorEnvelope),
    (status = 404, description = "unknown, used or expired reset token", body = ErrorEnvelope)))]
pub async fn reset_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    JsonBody(req): JsonBody<ResetPassword>,
) -> ApiResult<StatusCode> {
    let gone = || Error::not_found("password reset");
    let token_hash = hash_token(&req.token);
    let reset = state
        .store
        .password_reset(&token_hash)
        .await?
        .ok_or_else(gone)?;
    let user = state
        .store
        .user_by_id(&reset.user_id)
        .await?
        .ok_or_else(gone)?;
    validate::password("new_password", &req.new_password, Some(&user.email))?;
    let hash = state.passwords.hash(req.new_password).await?;
    let origin = meta.by(enclave_core::audit::Actor::user(&user.id));
    state
        .store
        .redeem_password_reset(&token_hash, hash, &origin)
        .await?
        .ok_or_else(gone)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/auth/mfa", tag = "account", security(("bearer" = [])), responses(
    (status = 200, body = MfaStatus)))]
pub async fn status(
    State(state): State<AppState>,
    who: UserCaller,
) -> ApiResult<axum::Json<MfaStatus>> {
    let m = mfa_state(&state, &who).await?;
    Ok(axum::Json(MfaStatus {
        totp_enabled: m.mfa_secret.is_some(),
        enabled_at: m.mfa_enabled_at.map(from_ms),
        pending: m.mfa_pending_secret.is_some() && m.mfa_secret.is_none(),
        recovery_codes_left: m.recovery_codes_left,
    }))
}

#[utoipa::path(post, path = "/v1/auth/mfa/totp", tag = "account", security(("bearer" = [])),
    request_body = PasswordProof, responses(
    (status = 201, description = "enrolment begun: confirm it with a first code", body = TotpEnrolment),
    (status = 401, description = "the password is wrong", body = ErrorEnvelope),
    (status = 409, description = "a second factor is already on", body = ErrorEnvelope)))]
pub async fn begin_totp(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    JsonBody(req): JsonBody<PasswordProof>,
) -> ApiResult<Response> {
    let user = signed_in_user(&state, &who).await?;
    if user.mfa_enabled_at.is_some() {
        return Err(already_on().into());
    }
    proof::password(
        &state,
        &who.user_id,
        req.password,
        origin.source_ip.as_deref(),
    )
    .await?;
    let secret = mfa::new_secret();
    state
        .store
        .begin_totp(&who.user_id, state.keyring.seal_text(&who.user_id, &secret))
        .await?;
    let body = TotpEnrolment {
        otpauth_uri: mfa::otpauth_uri(&user.email, &secret),
        secret,
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

#[utoipa::path(post, path = "/v1/auth/mfa/totp/confirm", tag = "account", security(("bearer" = [])),
    request_body = CodeProof, responses(
    (status = 200, description = "the second factor is on; this session counts as verified", body = RecoveryCodes),
    (status = 401, description = "the code is wrong", body = ErrorEnvelope),
    (status = 409, description = "no enrolment to confirm, or a factor is already on", body = ErrorEnvelope)))]
pub async fn confirm_totp(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    JsonBody(req): JsonBody<CodeProof>,
) -> ApiResult<axum::Json<RecoveryCodes>> {
    let m = mfa_state(&state, &who).await?;
    if m.mfa_secret.is_some() {
        return Err(already_on().into());
    }
    let Some(sealed) = m.mfa_pending_secret else {
        return Err(Error::conflict(
            "mfa_not_pending",
            "no enrolment to confirm: begin one with POST /v1/auth/mfa/totp",
        )
        .into());
    };
    let step = proof::enrolment_code(
        &state,
        &who.user_id,
        &sealed,
        &req.code,
        origin.source_ip.as_deref(),
    )?;
    let (codes, hashes) = recovery_codes();
    state
        .store
        .enable_totp(&who.user_id, step, hashes, &who.session_id, &origin)
        .await?;
    Ok(axum::Json(codes))
}

#[utoipa::path(post, path = "/v1/auth/mfa/totp/disable", tag = "account", security(("bearer" = [])),
    request_body = DisableTotp, responses(
    (status = 204, description = "the second factor is off"),
    (status = 401, description = "the password or the code is wrong", body = ErrorEnvelope),
    (status = 409, description = "no factor is on, or an organization of the user requires one", body = ErrorEnvelope)))]
pub async fn disable_totp(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    JsonBody(req): JsonBody<DisableTotp>,
) -> ApiResult<StatusCode> {
    if let Some(org) = requiring_org(&state, &who.user_id).await? {
        return Err(Error::conflict(
            "mfa_required_by_organization",
            format!("the organization {org} requires a second factor of its members"),
        )
        .into());
    }
    proof::password(
        &state,
        &who.user_id,
        req.password,
        origin.source_ip.as_deref(),
    )
    .await?;
    proof::second_factor(&state, &who.user_id, &req.code, true, &origin).await?;
    state
        .store
        .disable_totp(&who.user_id, "user.mfa_disabled", &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/auth/mfa/recovery-codes", tag = "account", security(("bearer" = [])),
    request_body = PasswordProof, responses(
    (status = 200, description = "new recovery codes; the old ones no longer work", body = RecoveryCodes),
    (status = 401, description = "the password is wrong", body = ErrorEnvelope),
    (status = 409, description = "no second factor is on", body = ErrorEnvelope)))]
pub async fn new_recovery_codes(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    JsonBody(req): JsonBody<PasswordProof>,
) -> ApiResult<axum::Json<RecoveryCodes>> {
    let user = signed_in_user(&state, &who).await?;
    if user.mfa_enabled_at.is_none() {
        return Err(Error::conflict("mfa_not_enabled", "this account has no second factor").into());
    }
    proof::password(
        &state,
        &who.user_id,
        req.password,
        origin.source_ip.as_deref(),
    )
    .await?;
    let (codes, hashes) = recovery_codes();
    state
        .store
        .replace_recovery_codes(&who.user_id, hashes, &origin)
        .await?;
    Ok(axum::Json(codes))
}

async fn signed_in_user(state: &AppState, who: &UserCaller) -> enclave_core::Result<UserRecord> {
    state
        .auth_cache
        .user(&who.user_id)
        .await?
        .ok_or_else(|| Error::unauthorized("unknown user"))
}

async fn mfa_state(state: &AppState, who: &UserCaller) -> enclave_core::Result<MfaState> {
    state
        .store
        .mfa_state(&who.user_id)
        .await?
        .ok_or_else(|| Error::unauthorized("unknown user"))
}

/// Fresh recovery codes to show once, and the hashes to store.
fn recovery_codes() -> (RecoveryCodes, Vec<String>) {
    let codes = mfa::recovery_codes();
    let hashes = codes.iter().map(|c| hash_token(c)).collect();
    (
        RecoveryCodes {
            recovery_codes: codes,
        },
        hashes,
    )
}

fn already_on() -> Error {
    Error::conflict(
        "mfa_already_enabled",
        "a second factor is already on; turn it off first to enrol another device",
    )
}

/// The slug of an organization of the user that requires a second factor, if any.
async fn requiring_org(state: &AppState, user_id: &UserId) -> enclave_core::Result<Option<String>> {
    let mut page = enclave_core::pagination::PageRequest {
        limit: 100,
        after: None,
    };
    loop {
        let (orgs, _) = state.store.orgs_of_user(user_id, &page).await?;
        let more = orgs.len() > page.limit as usize;
        for org in orgs.iter().take(page.limit as usize) {
            if validate::requires_mfa(&org.settings.0) {
                return Ok(Some(org.slug.clone()));
            }
        }
        match (more, orgs.get(page.limit as usize - 1)) {
            (true, Some(last)) => page.after = Some(last.id.to_string()),
            _ => return Ok(None),
        }
    }
}
