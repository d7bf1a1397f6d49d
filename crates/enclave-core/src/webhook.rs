//! Webhooks (docs/webhooks.md): event names, endpoint validation and the SSRF rules,
//! signing secrets, the two signature schemes, and the retry schedule. Pure: the store queues,
//! the API's delivery worker sends, using the rules here.

use std::net::IpAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

use crate::error::{Error, Result};

/// Every event a webhook can subscribe to; `*` subscribes to all.
pub const EVENT_TYPES: &[&str] = &[
    "environment.created",
    "environment.updated",
    "environment.deleted",
    "environment.promoted",
    "key.created",
    "key.rotated",
    "key.expiring",
    "key.revoked",
    "user.invited",
    "user.removed",
    "user.role_changed",
    "policy.created",
    "policy.updated",
    "policy.deleted",
    "secret.changed",
    "jit.requested",
    "jit.approved",
    "jit.denied",
    "jit.revoked",
    "jit.expired",
    "billing.warning",
    "webhook.test",
];
pub const ALL_EVENTS: &str = "*";
pub const SECRET_PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 32;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// A 2xx within this long is a success.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a rotated-out secret keeps signing.
pub const OLD_SECRET_HOURS: i64 = 24;
/// Attempts per delivery (spec: about 8 over ~10 hours).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(30);
/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(6 * 3600);
/// Consecutive failed attempts after which an endpoint is disabled.
pub const DEFAULT_DISABLE_AFTER: u32 = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    Active,
    Disabled,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Active => "active",
            WebhookStatus::Disabled => "disabled",
        }
    }
    pub fn parse(s: &str) -> Option<WebhookStatus> {
        match s {
            "active" => Some(WebhookStatus::Active),
            "disabled" => Some(WebhookStatus::Disabled),
            _ => None,
        }
    }
}

/// Where one delivery stands: `pending` (attempts left), `succeeded`, or `failed` (no
/// attempts left; a redeliver queues it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// Validates a subscription list: 1–50 known event names or `*`; returns it sorted and
/// without duplicates.
pub fn events(field: &str, events: &[String]) -> Result<Vec<String>> {
    if events.is_empty() {
        return Err(Error::validation(
            field,
            "non_empty",
            "subscribe to at least one event (or \"*\")",
        ));
    }
    if events.len() > 50 {
        return Err(Error::validation(field, "max_items", "at most 50 events"));
    }
    for (i, e) in events.iter().enumerate() {
        if e != ALL_EVENTS && !EVENT_TYPES.contains(&e.as_str()) {
            return Err(Error::validation(
                &format!("{field}[{i}]"),
                "known_event",
                format!(
                    "unknown event {e:?}; known: {} or \"*\"",
                    EVENT_TYPES.join(", ")
                ),
            ));
        }
    }
    let mut out = events.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

pub fn description(field: &str, value: &str) -> Result<String> {
    if value.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(Error::validation(
            field,
            "max_length",
            format!("at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    Ok(value.to_string())
}

/// A target URL taken apart after the syntactic checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub host: String,
    pub port: u16,
    /// The host is an IP literal.
    pub ip: Option<IpAddr>,
}

/// Syntax and scheme: `https://` with a host (plain `http://` only when private targets are
/// allowed), no credentials in the URL. An IP literal must be public unless allowed; a host
/// name is checked again when resolved ([`address_allowed`]).
pub fn target(field: &str, raw: &str, allow_private: bool) -> Result<Target> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(Error::validation(
            field,
            "max_length",
            format!("at most {MAX_URL_LEN} characters"),
        ));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| Error::validation(field, "url", format!("not a valid URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => {
            return Err(Error::validation(
                field,
                "https",
                "webhook targets must use https://",
            ))
        }
        _ => {
            return Err(Error::validation(
                field,
                "https",
                "webhook targets must use https://",
            ))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::validation(
            field,
            "no_credentials",
            "credentials in the URL are not allowed",
        ));
    }
    let (host, ip) = match url.host() {
        Some(url::Host::Domain(d)) => (d.to_string(), None),
        Some(url::Host::Ipv4(a)) => (a.to_string(), Some(IpAddr::V4(a))),
        Some(url::Host::Ipv6(a)) => (a.to_string(), Some(IpAddr::V6(a))),
        None => return Err(Error::validation(field, "host", "the URL has no host")),
    };
    if let Some(ip) = ip {
        if !address_allowed(ip, allow_private) {
            return Err(private_target(field));
        }
    } else if !allow_private && (host == "localhost" || host.ends_with(".localhost")) {
        return Err(private_target(field));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    Ok(Target {
        url: url.to_string(),
        host,
        port,
        ip,
    })
}

pub fn private_target(field: &str) -> Error {
    Error::validation(
        field,
        "public_address",
        "the target resolves to a private, loopback or link-local address (allowed only when the server sets ENCLAVE_WEBHOOK_ALLOW_PRIVATE=true)",
    )
}

/// Ranges no webhook may reach unless private targets are allowed: loopback, RFC 1918,
/// carrier-grade NAT, link-local (cloud metadata), multicast, reserved and documentation
/// ranges, and their IPv6 counterparts.
const BLOCKED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Whether a resolved address may be connected to.
pub fn address_allowed(ip: IpAddr, allow_private: bool) -> bool {
    if allow_private {
        return true;
    }
    // An IPv4 address dressed as IPv6 (mapped, or NAT64) is judged as the IPv4 it carries.
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
                let s = v6.segments();
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ))
            }
            None => ip,
        },
        v4 => v4,
    };
    !BLOCKED.iter().any(|net| {
        net.parse::<IpNet>()
            .map(|n| n.contains(&ip))
            .unwrap_or(false)
    })
}

/// A fresh signing secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks format).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", B64.encode(bytes))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The Standard Webhooks signature `v1,<base64 HMAC-SHA256(id.timestamp.body)>`, keyed with
/// the base64-decoded part of the secret.
pub fn standard_signature(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = B64
        .decode(encoded)
        .unwrap_or_else(|_| encoded.as_bytes().to_vec());
    let ts = timestamp.to_string();
    let mac = hmac(&key, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", B64.encode(mac))
}

/// `sha256=<hex HMAC-SHA256(body)>`, keyed with the whole secret string.
pub fn enclave_signature(secret: &str, body: &[u8]) -> String {
    let mac = hmac(secret.as_bytes(), &[body]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// How long to wait after failed attempt `attempt` (1-based): 30 s × 3^(attempt−1), at most
/// 6 h, times a random factor in [0.75, 1.25) so that many failing deliveries spread out.
/// With the defaults, 8 attempts span about 9 hours.
pub fn retry_delay(attempt: u32, base: Duration) -> Duration {
    let exp = base.saturating_mul(3u32.saturating_pow(attempt.saturating_sub(1)));
    let capped = exp.min(MAX_RETRY_DELAY.max(base));
    let factor = rand::thread_rng().gen_range(0.75..1.25);
    capped.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lists_are_checked_and_normalised() {
        let ok = events(
            "events",
            &["key.created".into(), "*".into(), "key.created".into()],
        )
        .unwrap();
        assert_eq!(ok, vec!["*".to_string(), "key.created".to_string()]);
        let e = events("events", &["key.created".into(), "nope".into()]).unwrap_err();
        assert_eq!(e.details["field"], "events[1]");
        assert_eq!(
            events("events", &[]).unwrap_err().details["rule"],
            "non_empty"
        );
    }

    #[test]
    fn targets_must_be_https_and_public() {
        assert!(target("url", "https://hooks.example.com/x?y=1", false).is_ok());
        let rule = |u: &str| target("url", u, false).unwrap_err().details["rule"].clone();
        assert_eq!(rule("http://hooks.example.com/"), "https");
        assert_eq!(rule("ftp://hooks.example.com/"), "https");
        assert_eq!(rule("https://u:p@hooks.example.com/"), "no_credentials");
        assert_eq!(rule("not a url"), "url");
        for private in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://192.168.1.1:8443/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00::1]/",
            "https://localhost/",
            "https://0.0.0.0/",
        ] {
            assert_eq!(rule(private), "public_address", "{private}");
        }
        let t = target("url", "http://127.0.0.1:9000/hook", true).unwrap();
        assert_eq!((t.port, t.ip.is_some()), (9000, true));
    }

    #[test]
    fn public_addresses_pass_and_embedded_ipv4_is_judged_as_ipv4() {
        assert!(address_allowed("93.184.216.34".parse().unwrap(), false));
        assert!(address_allowed(
            "2606:2800:220:1::1".parse().unwrap(),
            false
        ));
        assert!(!address_allowed("64:ff9b::a00:1".parse().unwrap(), false));
        assert!(!address_allowed("100.64.0.1".parse().unwrap(), false));
        assert!(address_allowed("10.0.0.1".parse().unwrap(), true));
    }

    #[test]
    fn signatures_match_the_standard_webhooks_reference() {
        // The test vector of the Standard Webhooks specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let s = enclave_signature(secret, body);
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
    }

    #[test]
    fn secrets_have_the_standard_format() {
        let s = generate_secret();
        let raw = B64.decode(s.strip_prefix("whsec_").unwrap()).unwrap();
        assert_eq!(raw.len(), 32);
        assert_ne!(s, generate_secret());
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter() {
        let base = DEFAULT_RETRY_BASE;
        let d1 = retry_delay(1, base);
        assert!(d1 >= Duration::from_millis(22_500) && d1 < Duration::from_millis(37_500));
        let d3 = retry_delay(3, base);
        assert!(d3 >= Duration::from_secs(202) && d3 < Duration::from_secs(338));
        assert!(retry_delay(30, base) < Duration::from_secs(6 * 3600 * 5 / 4));
        let total: Duration = (1..DEFAULT_MAX_ATTEMPTS)
            .map(|a| retry_delay(a, base))
            .sum();
        assert!(
            total > Duration::from_secs(6 * 3600) && total < Duration::from_secs(12 * 3600),
            "{total:?}"
        );
    }
}
