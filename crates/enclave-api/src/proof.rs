//! Proving who one is again, for signing in and for changing one's own account: the password
//! and the second factor, each checked behind the sign-in throttle.

use enclave_core::id::UserId;
use enclave_core::{Error, Result};
use enclave_store::Origin;

use crate::auth::mfa;
use crate::auth::throttle::Subject;
use crate::auth::tokens::hash_token;
use crate::state::AppState;

/// Where a request came from, as a throttle subject.
pub fn source(source_ip: Option<&str>) -> Option<Subject> {
    source_ip
        .and_then(|ip| ip.parse().ok())
        .map(Subject::Source)
}

/// The user's current password, or 401. Wrong guesses count against the account (its
/// e-mail, as at sign-in) and the source.
pub async fn password(
    state: &AppState,
    user_id: &UserId,
    password: String,
    source_ip: Option<&str>,
) -> Result<()> {
    let user = state
        .store
        .user_by_id(user_id)
        .await?
        .ok_or_else(|| Error::unauthorized("unknown user"))?;
    let account = Subject::Account(user.email.clone());
    let mut subjects = vec![account.clone()];
    subjects.extend(source(source_ip));
    state.throttle.check(&subjects)?;
    if !state.passwords.verify(password, user.password_hash).await? {
        state.throttle.failed(&subjects);
        return Err(Error::unauthorized("the password is not right")
            .with_details(serde_json::json!({"field": "password", "rule": "incorrect"})));
    }
    state.throttle.succeeded(&account);
    Ok(())
}

/// A code of the user's second factor: a TOTP code (each step accepted once), or — when
/// `recovery` allows — one of their unused recovery codes, which is then spent. 401 for a
/// wrong code; failures slow down (see the throttle).
pub async fn second_factor(
    state: &AppState,
    user_id: &UserId,
    code: &str,
    recovery: bool,
    origin: &Origin,
) -> Result<()> {
    let subjects = code_subjects(state, user_id, origin.source_ip.as_deref())?;
    let accepted = if mfa::is_totp_code(code) {
        totp(state, user_id, code).await?
    } else if recovery {
        let hash = hash_token(&mfa::normalize_recovery_code(code));
        state
            .store
            .use_recovery_code(user_id, &hash, origin)
            .await?
    } else {
        false
    };
    settle(state, &subjects, accepted)
}

/// The first code of an enrolment, from the secret `sealed` not yet turned on: the step it is
/// valid for, or 401 — throttled like any second-factor code.
pub fn enrolment_code(
    state: &AppState,
    user_id: &UserId,
    sealed: &str,
    code: &str,
    source_ip: Option<&str>,
) -> Result<i64> {
    let subjects = code_subjects(state, user_id, source_ip)?;
    let secret = state.keyring.open_text(user_id, sealed)?;
    let step = mfa::check(&secret, code, enclave_core::clock::unix_seconds());
    settle(state, &subjects, step.is_some())?;
    step.ok_or_else(Error::internal)
}

/// Who a code attempt counts against, once the throttle lets it through.
fn code_subjects(
    state: &AppState,
    user_id: &UserId,
    source_ip: Option<&str>,
) -> Result<Vec<Subject>> {
    let mut subjects = vec![Subject::SecondFactor(user_id.to_string())];
    subjects.extend(source(source_ip));
    state.throttle.check(&subjects)?;
    Ok(subjects)
}

/// Counts the attempt's outcome: a failure against every subject (401), a success clears the
/// user's count.
fn settle(state: &AppState, subjects: &[Subject], accepted: bool) -> Result<()> {
    if !accepted {
        state.throttle.failed(subjects);
        return Err(
            Error::unauthorized("the code is not right, or was used already")
                .with_details(serde_json::json!({"field": "code", "rule": "incorrect"})),
        );
    }
    state.throttle.succeeded(&subjects[0]);
    Ok(())
}

async fn totp(state: &AppState, user_id: &UserId, code: &str) -> Result<bool> {
    let Some(m) = state.store.mfa_state(user_id).await? else {
        return Ok(false);
    };
    let Some(sealed) = m.mfa_secret else {
        return Ok(false);
    };
    let secret = state.keyring.open_text(user_id, &sealed)?;
    let Some(step) = mfa::check(&secret, code, enclave_core::clock::unix_seconds()) else {
        return Ok(false);
    };
    state.store.accept_totp_step(user_id, step).await
}
