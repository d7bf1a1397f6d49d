//! The role a member acts with in one environment: their own, or — while a just-in-time grant
//! of theirs is live there — the granted one. Read through the cache on every request and
//! statement, so a grant ends at its deadline (compared with the clock) and at its revocation
//! (the store's invalidation, from any node) without waiting for anything else.

use enclave_core::clock::Clock;
use enclave_core::id::{EnvId, JitId, UserId};
use enclave_core::{Result, Role};

use crate::auth::cache::AuthCache;

/// `member_role`, or the role of the member's live grant in `env_id` with the grant's id.
pub async fn acting_role(
    cache: &AuthCache,
    clock: &Clock,
    user_id: &UserId,
    env_id: &EnvId,
    member_role: Role,
) -> Result<(Role, Option<JitId>)> {
    let Some(grant) = cache.jit_grant(user_id, env_id).await? else {
        return Ok((member_role, None));
    };
    if grant.expires_at.is_none_or(|end| clock.now_ms() >= end) {
        return Ok((member_role, None));
    }
    let role = enclave_core::jit::acting_role(member_role, grant.requested_role);
    Ok((role, (role != member_role).then_some(grant.id)))
}
