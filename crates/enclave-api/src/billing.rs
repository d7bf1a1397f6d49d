//! The organization's quotas as the control plane applies them (environments, keys, members):
//! read from its record each time, so a change applies at once on every node.

use enclave_core::billing::Quotas;
use enclave_core::id::OrgId;
use enclave_core::{Error, Result};

use crate::state::AppState;

pub async fn org_quotas(state: &AppState, org_id: &OrgId) -> Result<Quotas> {
    let org = state
        .store
        .org(org_id)
        .await?
        .ok_or_else(|| Error::not_found("organization"))?;
    Ok(state.config.quotas(&org))
}
