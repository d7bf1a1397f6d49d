//! The SSRF guard. A target's host is resolved, every address checked, and the connection
//! made only to the checked addresses: the HTTP client resolves through [`GuardedResolver`],
//! so a DNS answer that changes between the check and the connection (rebinding) cannot
//! smuggle in a private address.

use std::net::SocketAddr;
use std::sync::Arc;

use enclave_core::webhook::{self, address_allowed, private_target, Target};
use enclave_core::{Error, Result};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Checks a target URL when it is configured: syntax and scheme, then — for a host name —
/// that it resolves, and only to allowed addresses.
pub async fn check_target(field: &str, raw: &str, allow_private: bool) -> Result<Target> {
    let target = webhook::target(field, raw, allow_private)?;
    if target.ip.is_none() {
        resolve_allowed(&target.host, target.port, allow_private)
            .await
            .map_err(|e| match e {
                Refusal::Private => private_target(field),
                Refusal::Unresolvable(msg) => Error::validation(
                    field,
                    "resolvable",
                    format!("the host {} does not resolve: {msg}", target.host),
                ),
            })?;
    }
    Ok(target)
}

#[derive(Debug)]
pub enum Refusal {
    Private,
    Unresolvable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Private => f.write_str(
                "the target resolves to a private, loopback or link-local address (refused)",
            ),
            Refusal::Unresolvable(m) => write!(f, "the target does not resolve: {m}"),
        }
    }
}

impl std::error::Error for Refusal {}

/// Every address of `host`, or a refusal when there is none or any is not allowed (one bad
/// address among good ones is refused too: the client could pick it).
pub async fn resolve_allowed(
    host: &str,
    port: u16,
    allow_private: bool,
) -> std::result::Result<Vec<SocketAddr>, Refusal> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Refusal::Unresolvable(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(Refusal::Unresolvable("no addresses".into()));
    }
    if addrs
        .iter()
        .any(|a| !address_allowed(a.ip(), allow_private))
    {
        return Err(Refusal::Private);
    }
    Ok(addrs)
}

/// The HTTP client's resolver: [`resolve_allowed`] for every connection it makes.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs = resolve_allowed(name.as_str(), 0, allow_private).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The client deliveries are sent with: guarded resolution, no redirects (a redirect could
/// lead anywhere), the 10 s limit of the spec.
pub fn client(allow_private: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(webhook::DELIVERY_TIMEOUT)
        .connect_timeout(webhook::DELIVERY_TIMEOUT)
        .user_agent(concat!("Enclave-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_are_resolved_then_checked() {
        // `localhost` resolves (from /etc/hosts) to loopback: refused unless allowed.
        assert!(matches!(
            resolve_allowed("localhost", 443, false).await,
            Err(Refusal::Private)
        ));
        assert!(resolve_allowed("localhost", 443, true).await.is_ok());
        assert!(matches!(
            resolve_allowed("no-such-host.invalid", 443, false).await,
            Err(Refusal::Unresolvable(_))
        ));
        let e = check_target("url", "https://localhost.localdomain/x", false)
            .await
            .unwrap_err();
        assert!(e.details["rule"] == "public_address" || e.details["rule"] == "resolvable");
    }
}
