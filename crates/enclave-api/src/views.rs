//! Stored records as the API shows them, and response helpers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use enclave_core::api_key::ApiKey;
use enclave_core::clock::from_ms;
use enclave_core::environment::{Connection, Environment};
use enclave_core::model::{Invitation, Member, Organization, User};
use enclave_store::{ApiKeyRecord, EnvRecord, MemberRecord, OrgRecord, UserRecord};
use serde::Serialize;

use crate::config::ApiConfig;
use crate::extract::etag;

pub fn organization(config: &ApiConfig, r: OrgRecord) -> Organization {
    let tier = r.tier;
    Organization {
        status: r.status,
        quotas: config.quotas(&r),
        rate_limits: config.limits(tier).rate_limits,
        tier,
        org_id: r.id,
        name: r.name,
        slug: r.slug,
        billing_email: r.billing_email,
        cloud_region: r.cloud_region,
        settings: r.settings.0,
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
        version: r.version,
    }
}

pub fn environment(config: &ApiConfig, r: EnvRecord) -> Environment {
    Environment {
        env_type: r.env_type,
        status: r.status,
        connection: Connection {
            host: config.gateway_host.clone(),
            port: config.gateway_port,
            database: r.slug.clone(),
        },
        env_id: r.id,
        org_id: r.org_id,
        name: r.name,
        slug: r.slug,
        index: r.position,
        color: r.color,
        parent_env_id: r.parent_env_id,
        description: r.description,
        locked: r.locked,
        settings: r.settings.0,
        required_keys: r.required_keys.0,
        // Filled in by `environments::shown`, which asks the store.
        missing_keys: Vec::new(),
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
        version: r.version,
    }
}

/// A key's metadata; `plaintext` only in the answers to create and rotate.
pub fn api_key(r: ApiKeyRecord, plaintext: Option<String>) -> ApiKey {
    ApiKey {
        status: r.status_at(enclave_core::clock::now_ms()),
        role: r.role,
        key_id: r.id,
        env_id: r.env_id,
        name: r.name,
        prefix: r.prefix,
        attributes: r.attributes.0,
        scopes: r.scopes.0,
        ip_allowlist: r.ip_allowlist.0,
        last_used_at: r.last_used_at.map(from_ms),
        expires_at: r.expires_at.map(from_ms),
        grace_expires_at: r.grace_expires_at.map(from_ms),
        rotated_to: r.rotated_to,
        created_at: from_ms(r.created_at),
        created_by: r.created_by,
        key: plaintext,
    }
}

/// A just-in-time request as of `now_ms` (its deadlines counted).
pub fn jit_request(r: enclave_store::JitRecord, now_ms: i64) -> enclave_core::jit::JitRequest {
    let status = r.status_at(now_ms);
    enclave_core::jit::JitRequest {
        answer_by: (status == enclave_core::jit::JitStatus::Pending)
            .then(|| from_ms(r.answer_by())),
        status,
        request_id: r.id,
        env_id: r.env_id,
        requester_id: r.requester_id,
        current_role: r.current_role,
        requested_role: r.requested_role,
        reason: r.reason,
        duration_minutes: r.duration_minutes,
        decided_by: r.decided_by,
        decided_at: r.decided_at.map(from_ms),
        comment: r.decision_comment,
        expires_at: r.expires_at.map(from_ms),
        revoked_by: r.ended_by,
        revoked_at: r.ended_at.map(from_ms),
        created_at: from_ms(r.created_at),
    }
}

pub fn member(r: MemberRecord) -> Member {
    member_with_token(r, None)
}

/// A membership; `token` (an invitation's, of which only the hash is stored) only in the
/// answer to the invitation.
pub fn member_with_token(r: MemberRecord, token: Option<String>) -> Member {
    let invitation = match (&r.invite_token, r.invite_expires_at) {
        (Some(_), Some(exp)) => Some(Invitation {
            token,
            expires_at: from_ms(exp),
        }),
        _ => None,
    };
    Member {
        role: r.role,
        status: r.status,
        user_id: r.user_id,
        org_id: r.org_id,
        email: r.email,
        name: r.name,
        attributes: r.attributes.0,
        mfa_enabled: r.mfa_enabled_at.is_some(),
        invitation,
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
        version: r.version,
    }
}

pub fn user(r: &UserRecord) -> User {
    User {
        user_id: r.id.clone(),
        email: r.email.clone(),
        name: r.name.clone(),
        mfa_enabled: r.mfa_enabled_at.is_some(),
        created_at: from_ms(r.created_at),
    }
}

/// 200 with an `ETag`.
pub fn with_etag<T: Serialize>(version: i64, body: T) -> Response {
    let mut resp = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// 201 with `ETag` and `Location`.
pub fn created<T: Serialize>(version: i64, location: String, body: T) -> Response {
    let mut resp = with_etag(version, body);
    *resp.status_mut() = StatusCode::CREATED;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
