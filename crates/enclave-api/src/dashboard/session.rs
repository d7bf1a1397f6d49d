//! A browser's session: the access and refresh tokens of `POST /v1/auth/login` kept in
//! httpOnly, `SameSite=Strict` cookies (`Secure` behind HTTPS), and a CSRF token every form
//! carries (double submit: the form's field must equal the cookie's value).

use axum::http::{header, HeaderMap, HeaderValue};
use rand::RngCore;

pub(super) const SESSION: &str = "enclave_session";
pub(super) const REFRESH: &str = "enclave_refresh";
pub(super) const CSRF: &str = "enclave_csrf";
/// A secret (a key's, an invitation's, a webhook's) between the form that made it and the
/// page that shows it once.
pub(super) const FLASH: &str = "enclave_flash";

/// A refresh token outlives the access token: the browser keeps it this long at most.
const REFRESH_MAX_AGE: i64 = 30 * 24 * 3600;

/// The value of cookie `name` in the request.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// Whether the browser reached the server over HTTPS (the control plane speaks plain HTTP
/// behind a TLS-terminating proxy, which says so).
pub(super) fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for the whole dashboard; `max_age` 0 deletes the cookie, `None` keeps
/// it for the browser's session.
pub(super) fn set(name: &str, value: &str, max_age: Option<i64>, https: bool) -> HeaderValue {
    set_at(name, value, "/", max_age, https)
}

/// The flash cookie, sent back only to the pages under `path` it is meant for.
pub(super) fn flash(path: &str, value: &str, max_age: Option<i64>, https: bool) -> HeaderValue {
    set_at(FLASH, value, path, max_age, https)
}

fn set_at(name: &str, value: &str, path: &str, max_age: Option<i64>, https: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if https {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The cookies of a new session.
pub(super) fn signed_in(token: &str, refresh: &str, https: bool) -> [HeaderValue; 2] {
    [
        set(SESSION, token, None, https),
        set(REFRESH, refresh, Some(REFRESH_MAX_AGE), https),
    ]
}

/// The cookies that end a session.
pub(super) fn signed_out(https: bool) -> [HeaderValue; 2] {
    [
        set(SESSION, "", Some(0), https),
        set(REFRESH, "", Some(0), https),
    ]
}

pub(super) fn new_csrf() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether a form's CSRF field matches the browser's cookie (compared in constant time).
pub(super) fn csrf_holds(headers: &HeaderMap, field: &str) -> bool {
    let Some(expected) = cookie(headers, CSRF) else {
        return false;
    };
    let (a, b) = (expected.as_bytes(), field.as_bytes());
    a.len() == b.len() && !a.is_empty() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_and_the_csrf_field_must_match() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; enclave_csrf=abc123; enclave_session=tok"),
        );
        assert_eq!(cookie(&h, SESSION).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "missing"), None);
        assert!(csrf_holds(&h, "abc123"));
        assert!(!csrf_holds(&h, "abc124"));
        assert!(!csrf_holds(&h, ""));
        assert!(!csrf_holds(&HeaderMap::new(), ""));
        let c = set(SESSION, "t", None, true);
        assert_eq!(
            c.to_str().unwrap(),
            "enclave_session=t; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(new_csrf().len(), 64);
    }
}
