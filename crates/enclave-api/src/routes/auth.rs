//! `/v1/auth/*`: signup, login, refresh with rotation, logout, who am I, accepting an
//! invitation; and the JWKS.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use enclave_core::clock::now_ms;
use enclave_core::id::{new_id, EnvId, KeyId, Kind, OrgId, UserId};
use enclave_core::model::{Organization, User};
use enclave_core::{validate, Error, ErrorCode, Role};
use enclave_store::{NewSession, NewUser, RefreshRotation, RotateOutcome, UserRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::standing;
use crate::auth::mfa::{self, ChallengeClaims};
use crate::auth::throttle::Subject;
use crate::auth::tokens::{
    self, Claims, ACCESS_TOKEN_SECONDS, REFRESH_TOKEN_SECONDS, SESSION_MAX_SECONDS,
};
use crate::auth::{Caller, Origin, RequestMeta, UserCaller};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::JsonBody;
use crate::proof;
use crate::state::AppState;
use crate::views;
use enclave_core::audit::Actor;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub email: String,
    pub password: String,
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The organization to sign in to; default: the first one the user is an active member of.
    pub org_id: Option<OrgId>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginMfaRequest {
    /// From the `202` answer to the password.
    pub mfa_token: String,
    /// The authenticator app's current 6-digit code, or one of the recovery codes.
    pub code: String,
}

/// The password was right and the account has a second factor: no tokens yet. Send a code
/// with `mfa_token` to `POST /v1/auth/login/mfa` within `expires_in` seconds.
#[derive(Serialize, ToSchema)]
pub struct MfaChallenge {
    pub mfa_required: bool,
    pub mfa_token: String,
    pub expires_in: i64,
    /// `totp` (a code from the app) and `recovery_code`.
    pub methods: Vec<&'static str>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
    /// Switch the session to another organization the user is an active member of.
    pub org_id: Option<OrgId>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInviteRequest {
    pub token: String,
    /// A new user sets their password; a user who already has one confirms it.
    pub password: String,
    pub name: Option<String>,
}

/// Tokens and who they are for.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    pub token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub user: User,
    pub org: Option<Organization>,
    pub role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct MeOrg {
    pub org_id: OrgId,
    pub role: Role,
    pub tier: enclave_core::model::Tier,
    /// Every permission the role (and, for a key, its scopes) gives in the organization, by
    /// name; `GET /v1/environments/{env_id}/permissions` adds a just-in-time grant's.
    pub permissions: Vec<&'static str>,
}

/// An API key calling: who it is and what it may do.
#[derive(Serialize, ToSchema)]
pub struct MeKey {
    pub key_id: KeyId,
    pub name: String,
    pub env_id: EnvId,
    pub role: Role,
    pub scopes: Vec<enclave_core::api_key::Scope>,
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// The caller: a user (`type: user`, with `user` and `session_id`) or an API key
/// (`type: api_key`, with `key`); `org` for both.
#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<MeKey>,
    pub org: Option<MeOrg>,
}

fn invalid_credentials() -> Error {
    Error::unauthorized("invalid e-mail or password")
}

/// Starts a session for `user` in `org_id` (already checked) and returns its tokens; `mfa`
/// when the sign-in gave a second factor.
async fn issue_session(
    state: &AppState,
    user: &UserRecord,
    org_id: Option<OrgId>,
    origin: Option<&Origin>,
    mfa: bool,
) -> ApiResult<LoginResponse> {
    let refresh_token = tokens::random_token("ert_");
    let now = now_ms();
    let session = state
        .store
        .create_session(
            NewSession {
                id: new_id(Kind::Session),
                user_id: user.id.clone(),
                org_id: org_id.clone(),
                expires_at: now + SESSION_MAX_SECONDS * 1000,
                refresh_hash: tokens::hash_token(&refresh_token),
                refresh_expires_at: now + REFRESH_TOKEN_SECONDS * 1000,
                mfa,
            },
            origin,
        )
        .await?;
    login_response(state, user, &session.id, org_id, refresh_token).await
}

async fn login_response(
    state: &AppState,
    user: &UserRecord,
    session_id: &str,
    org_id: Option<OrgId>,
    refresh_token: String,
) -> ApiResult<LoginResponse> {
    let (org, role) = match &org_id {
        Some(id) => {
            let org = state
                .auth_cache
                .org(id)
                .await?
                .map(|o| views::organization(&state.config, o));
            let role = state
                .auth_cache
                .membership(&user.id, id)
                .await?
                .map(|m| m.role);
            (org, role)
        }
        None => (None, None),
    };
    let now = enclave_core::clock::now().timestamp();
    let claims = Claims {
        sub: user.id.clone(),
        org_id,
        role: role.map(|r| r.to_string()),
        iat: now,
        exp: now + ACCESS_TOKEN_SECONDS,
        iss: state.tokens.issuer().to_string(),
        jti: ulid::Ulid::new().to_string().to_ascii_lowercase(),
        sid: session_id.to_string(),
    };
    Ok(LoginResponse {
        token: state.tokens.sign(&claims),
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_SECONDS,
        refresh_token,
        user: views::user(user),
        org,
        role,
    })
}

/// 202 with a signed challenge: the password was right, the second factor comes next.
fn challenge(state: &AppState, user_id: &UserId, org_id: Option<OrgId>) -> Response {
    let now = enclave_core::clock::now().timestamp();
    let claims = ChallengeClaims {
        sub: user_id.clone(),
        org_id,
        iat: now,
        exp: now + mfa::CHALLENGE_SECONDS,
        iss: state.tokens.issuer().to_string(),
        aud: mfa::CHALLENGE_AUDIENCE.to_string(),
        jti: ulid::Ulid::new().to_string().to_ascii_lowercase(),
    };
    let body = MfaChallenge {
        mfa_required: true,
        mfa_token: state.tokens.sign_challenge(&claims),
        expires_in: mfa::CHALLENGE_SECONDS,
        methods: vec!["totp", "recovery_code"],
    };
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

/// `org_id` when the user is an active member of it; else, with no `org_id` asked for, the
/// first organization they are an active member of.
async fn choose_org(
    state: &AppState,
    user_id: &UserId,
    requested: Option<OrgId>,
) -> ApiResult<Option<OrgId>> {
    match requested {
        Some(org_id) => {
            standing(state.auth_cache.membership(user_id, &org_id).await?)?;
            Ok(Some(org_id))
        }
        None => {
            let page = enclave_core::pagination::PageRequest {
                limit: 1,
                after: None,
            };
            let (orgs, _) = state.store.orgs_of_user(user_id, &page).await?;
            Ok(orgs.into_iter().next().map(|o| o.id))
        }
    }
}

#[utoipa::path(post, path = "/v1/auth/signup", tag = "auth", request_body = SignupRequest, responses(
    (status = 201, body = LoginResponse), (status = 400, body = ErrorEnvelope),
    (status = 403, description = "open signup is disabled", body = ErrorEnvelope),
    (status = 409, description = "e-mail taken", body = ErrorEnvelope)))]
pub async fn signup(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<SignupRequest>,
) -> ApiResult<Response> {
    if !state.config.open_signup {
        return Err(Error::forbidden(
            "signup_disabled",
            "open signup is disabled on this server; ask for an invitation",
        )
        .into());
    }
    let email = validate::email("email", &req.email)?;
    validate::password("password", &req.password, Some(&email))?;
    let name = validate::display_name("name", &req.name, 128)?;
    let hash = state.passwords.hash(req.password).await?;
    let user = state
        .store
        .create_user(NewUser {
            id: UserId::generate(),
            email,
            name,
            password_hash: Some(hash),
        })
        .await?;
    // The account belongs to no organization yet: there is no trail to record it in.
    let resp = issue_session(&state, &user, None, None, false).await?;
    Ok((StatusCode::CREATED, axum::Json(resp)).into_response())
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, description = "signed in", body = LoginResponse),
    (status = 202, description = "the password is right; the account's second factor is asked for next", body = MfaChallenge),
    (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
    (status = 403, description = "the organization asked for is suspended", body = ErrorEnvelope),
    (status = 404, description = "not a member of the organization asked for", body = ErrorEnvelope)))]
pub async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Response> {
    let email = validate::email("email", &req.email)?;
    // Guessing from one address, or at one account, slows down before Argon2id runs.
    let account = Subject::Account(email.clone());
    let mut subjects = vec![account.clone()];
    subjects.extend(
        meta.source_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .map(Subject::Source),
    );
    state.throttle.check(&subjects)?;
    let user = state.store.user_by_email(&email).await?;
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    // Verified even for unknown users, so timing does not tell which e-mails exist.
    if !state.passwords.verify(req.password, hash).await? {
        state.throttle.failed(&subjects);
        return Err(invalid_credentials().into());
    }
    state.throttle.succeeded(&account);
    let user = user.ok_or_else(invalid_credentials)?;
    let org_id = choose_org(&state, &user.id, req.org_id).await?;
    if user.mfa_enabled_at.is_some() {
        return Ok(challenge(&state, &user.id, org_id));
    }
    let origin = meta.by(Actor::user(&user.id));
    let resp = issue_session(&state, &user, org_id, Some(&origin), false).await?;
    Ok(axum::Json(resp).into_response())
}

#[utoipa::path(post, path = "/v1/auth/login/mfa", tag = "auth", request_body = LoginMfaRequest, responses(
    (status = 200, description = "signed in with both factors", body = LoginResponse),
    (status = 400, body = ErrorEnvelope),
    (status = 401, description = "the challenge expired or the code is wrong", body = ErrorEnvelope),
    (status = 403, description = "the organization is suspended", body = ErrorEnvelope),
    (status = 404, description = "no longer a member of the organization", body = ErrorEnvelope)))]
pub async fn login_mfa(
    State(state): State<AppState>,
    meta: RequestMeta,
    JsonBody(req): JsonBody<LoginMfaRequest>,
) -> ApiResult<axum::Json<LoginResponse>> {
    let claims = state
        .tokens
        .verify_challenge(&req.mfa_token)
        .ok_or_else(|| {
            Error::unauthorized("the sign-in expired or is not genuine; log in again")
        })?;
    let user = state
        .store
        .user_by_id(&claims.sub)
        .await?
        .filter(|u| u.mfa_enabled_at.is_some())
        .ok_or_else(|| Error::unauthorized("the sign-in expired; log in again"))?;
    let origin = meta.by(Actor::user(&user.id));
    proof::second_factor(&state, &user.id, &req.code, true, &origin).await?;
    let org_id = match claims.org_id {
        Some(org_id) => choose_org(&state, &user.id, Some(org_id)).await?,
        None => choose_org(&state, &user.id, None).await?,
    };
    Ok(axum::Json(
        issue_session(&state, &user, org_id, Some(&origin), true).await?,
    ))
}

#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = LoginResponse),
    (status = 401, description = "unknown, expired or reused refresh token (reuse revokes the session)", body = ErrorEnvelope)))]
pub async fn refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> ApiResult<axum::Json<LoginResponse>> {
    let old_hash = tokens::hash_token(&req.refresh_token);
    let user_id = state
        .store
        .refresh_token_owner(&old_hash)
        .await?
        .ok_or_else(|| Error::unauthorized("invalid or expired refresh token"))?;
    // A switch of organization is checked before the token is spent.
    let switch_to = match &req.org_id {
        Some(org_id) => choose_org(&state, &user_id, Some(org_id.clone())).await?,
        None => None,
    };
    let new_token = tokens::random_token("ert_");
    let now = now_ms();
    let outcome = state
        .store
        .rotate_refresh(
            RefreshRotation {
                old_hash,
                new_hash: tokens::hash_token(&new_token),
                new_expires_at: now + REFRESH_TOKEN_SECONDS * 1000,
                org_id: switch_to,
                now,
            },
            &meta.by(Actor::user(&user_id)),
        )
        .await?;
    match outcome {
        RotateOutcome::Rotated { session, .. } => {
            let user = state
                .store
                .user_by_id(&session.user_id)
                .await?
                .ok_or_else(|| Error::unauthorized("invalid refresh token"))?;
            if let Some(org_id) = &session.org_id {
                match standing(state.auth_cache.membership(&user.id, org_id).await?) {
                    Err(e) if e.code == ErrorCode::Unauthorized => return Err(e.into()),
                    _ => {}
                }
            }
            Ok(axum::Json(
                login_response(
                    &state,
                    &user,
                    &session.id,
                    session.org_id.clone(),
                    new_token,
                )
                .await?,
            ))
        }
        RotateOutcome::Reused => Err(Error::unauthorized(
            "refresh token reused: the session is revoked; log in again",
        )
        .with_details(serde_json::json!({"rule": "refresh_token_reused"}))
        .into()),
        RotateOutcome::Invalid => {
            Err(Error::unauthorized("invalid or expired refresh token").into())
        }
    }
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])), responses(
    (status = 204, description = "session revoked"), (status = 401, body = ErrorEnvelope)))]
pub async fn logout(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
) -> ApiResult<StatusCode> {
    state.store.revoke_session(&who.session_id, &origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/auth/me", tag = "auth", security(("bearer" = []), ("api_key" = [])), responses(
    (status = 200, body = MeResponse), (status = 401, body = ErrorEnvelope)))]
pub async fn me(State(state): State<AppState>, who: Caller) -> ApiResult<axum::Json<MeResponse>> {
    let me = match who {
        Caller::User(who) => {
            let user = state
                .auth_cache
                .user(&who.user_id)
                .await?
                .ok_or_else(|| Error::unauthorized("unknown user"))?;
            MeResponse {
                kind: "user",
                user: Some(views::user(&user)),
                session_id: Some(who.session_id),
                key: None,
                org: who.org.map(|(org_id, role, tier)| MeOrg {
                    org_id,
                    role,
                    tier,
                    permissions: crate::access::permitted(|p| role.can(p)),
                }),
            }
        }
        Caller::Key(k) => MeResponse {
            kind: "api_key",
            user: None,
            session_id: None,
            org: Some(MeOrg {
                org_id: k.org_id,
                role: k.role,
                tier: k.tier,
                permissions: crate::access::permitted(|p| {
                    enclave_core::api_key::key_can(k.role, &k.scopes, p)
                }),
            }),
            key: Some(MeKey {
                key_id: k.key_id,
                name: k.name,
                env_id: k.env_id,
                role: k.role,
                scopes: k.scopes.into_iter().collect(),
                attributes: k.attributes,
            }),
        },
    };
    Ok(axum::Json(me))
}

#[utoipa::path(post, path = "/v1/auth/accept-invite", tag = "auth", request_body = AcceptInviteRequest, responses(
    (status = 200, description = "membership active; signed in to the organization", body = LoginResponse),
    (status = 202, description = "membership active; the account's second factor is asked for before signing in", body = MfaChallenge),
    (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "the invitation was accepted already", body = ErrorEnvelope)))]
pub async fn accept_invite(
    State(state): State<AppState>,
    meta: RequestMeta,
    JsonBody(req): JsonBody<AcceptInviteRequest>,
) -> ApiResult<Response> {
    let (member, user) = state
        .store
        .member_by_invite(&crate::auth::tokens::hash_token(&req.token))
        .await?
        .ok_or_else(|| Error::not_found("invitation"))?;
    if member.invite_expires_at.is_some_and(|exp| exp <= now_ms()) {
        return Err(Error::validation(
            "token",
            "expired",
            "this invitation has expired; ask for a new one",
        )
        .into());
    }
    let name = req
        .name
        .as_deref()
        .map(|n| validate::display_name("name", n, 128))
        .transpose()?;
    let new_hash = match &user.password_hash {
        // An existing account proves it is theirs; the token alone never resets a password.
        Some(existing) => {
            if !state
                .passwords
                .verify(req.password, Some(existing.clone()))
                .await?
            {
                return Err(Error::unauthorized(
                    "this e-mail already has an account: give its current password",
                )
                .into());
            }
            None
        }
        None => {
            validate::password("password", &req.password, Some(&user.email))?;
            Some(state.passwords.hash(req.password).await?)
        }
    };
    let accepted = state
        .store
        .accept_invite(
            &member.org_id,
            &member.user_id,
            new_hash,
            name,
            &meta.by(Actor::user(&member.user_id)),
        )
        .await?;
    let user = state
        .store
        .user_by_id(&accepted.user_id)
        .await?
        .ok_or_else(Error::internal)?;
    // An existing account with a second factor signs in with it, as at login.
    if user.mfa_enabled_at.is_some() {
        return Ok(challenge(&state, &user.id, Some(accepted.org_id)));
    }
    // The sign-in is part of joining, recorded by the `user.joined` entry.
    let resp = issue_session(&state, &user, Some(accepted.org_id), None, false).await?;
    Ok(axum::Json(resp).into_response())
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "the token signing keys (JWKS)")))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(state.tokens.jwks())
}
