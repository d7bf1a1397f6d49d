//! An environment's API keys: the list, a new key (its secret shown once, with a Copy
//! button), rotate and revoke.

use axum::extract::Path;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::layout::{self, alert, csrf, joined, text, Tab, Viewer};
use super::respond::{not_found, page, see_other};
use super::session;
use super::signed::{Posted, Signed};
use enclave_core::id::{EnvId, KeyId};

/// A key's secret, shown once after it was made.
struct NewSecret {
    key: String,
    what: &'static str,
}

pub(super) async fn show(signed: Signed, Path(env_id): Path<String>) -> Response {
    // A key made or rotated by the form just posted: shown on this one page, then forgotten.
    let secret = session::cookie(&signed.headers, session::FLASH).and_then(|flash| {
        let (what, key) = flash.split_once(':')?;
        let what = match what {
            "rotated" => "The rotated key",
            _ => "The new key",
        };
        Some(NewSecret {
            key: key.to_string(),
            what,
        })
    });
    let here = format!("/environments/{env_id}");
    let forget = secret
        .is_some()
        .then(|| session::flash(&here, "", Some(0), signed.https()));
    let mut resp = render(signed, &env_id, secret, None).await;
    if let Some(forget) = forget {
        resp.headers_mut().append(header::SET_COOKIE, forget);
    }
    resp
}

async fn render(
    signed: Signed,
    env_id: &str,
    secret: Option<NewSecret>,
    error: Option<String>,
) -> Response {
    let (signed, env) = match signed.environment(env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let keys = signed
        .get(&format!("/v1/environments/{env_id}/api-keys?limit=200"))
        .await;
    // A person whose role may not manage keys (as the API answers, grants included) sees why,
    // and no form.
    let keys = keys.into_result();
    let markup = keys_page(
        &signed.viewer(),
        &env,
        keys,
        secret.as_ref(),
        error.as_deref(),
    );
    signed.respond(page(StatusCode::OK, markup))
}

/// After a key was made: back to the keys (a reload then posts nothing again), which show
/// the secret once.
fn show_once(signed: Signed, env_id: &EnvId, what: &str, key: &str) -> Response {
    let here = format!("/environments/{env_id}");
    let flash = session::flash(&here, &format!("{what}:{key}"), Some(60), signed.https());
    signed.respond(see_other(&format!("/environments/{env_id}/keys"), &[flash]))
}

pub(super) async fn create(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let Some(env_id) = EnvId::parse(&env_id) else {
        return not_found();
    };
    let mut request = json!({"name": form.first("name"), "role": form.first("role"),
        "scopes": form.all("scopes")});
    if let Some(days) = form.number("expires_in_days") {
        request["expires_in_days"] = days;
    }
    let path = format!("/v1/environments/{env_id}/api-keys");
    let made = signed.send(Method::POST, &path, Some(&request)).await;
    match made.body["key"].as_str() {
        Some(key) if made.ok() => show_once(signed, &env_id, "new", key),
        _ => render(signed, env_id.as_str(), None, Some(made.error())).await,
    }
}

/// `rotate` or `revoke` one key of the environment.
pub(super) async fn action(
    Path((env_id, key_id, action)): Path<(String, String, String)>,
    posted: Posted,
) -> Response {
    let signed = posted.signed;
    let (Some(env_id), Some(key_id)) = (EnvId::parse(&env_id), KeyId::parse(&key_id)) else {
        return not_found();
    };
    let path = format!("/v1/environments/{env_id}/api-keys/{key_id}");
    let done = match action.as_str() {
        "rotate" => {
            let rotate = format!("{path}/rotate");
            signed.send(Method::POST, &rotate, Some(&json!({}))).await
        }
        "revoke" => signed.send(Method::DELETE, &path, None).await,
        _ => return not_found(),
    };
    match (done.ok(), done.body["key"].as_str()) {
        (true, Some(key)) => show_once(signed, &env_id, "rotated", key),
        (true, None) => signed.respond(see_other(&format!("/environments/{env_id}/keys"), &[])),
        (false, _) => render(signed, env_id.as_str(), None, Some(done.error())).await,
    }
}

fn keys_page(
    viewer: &Viewer,
    env: &Value,
    keys: Result<Value, String>,
    secret: Option<&NewSecret>,
    error: Option<&str>,
) -> Markup {
    let env_id = text(env, "env_id");
    layout::environment(
        viewer,
        env,
        Tab::Keys,
        html! {
            (alert(error))
            @if let Some(s) = secret {
                section.secret aria-labelledby="secret-title" {
                    h2 #secret-title { (s.what) " — copy it now: it is not shown again" }
                    label for="new-key" { "API key" }
                    input #new-key type="text" readonly value=(s.key);
                    button type="button" data-copy="new-key" { "Copy" }
                }
            }
            @match keys {
                Err(refused) => { p.muted { "API keys: " (refused) } }
                Ok(keys) => {
                    h2 { "API keys" }
                    table {
                        thead { tr { th { "Name" } th { "Prefix" } th { "Role" } th { "Scopes" } th { "Status" } th { "Expires" } th { "Actions" } } }
                        tbody {
                            @for key in keys["data"].as_array().into_iter().flatten() {
                                @let key_id = text(key, "key_id");
                                tr {
                                    td { (text(key, "name")) }
                                    td { code { (text(key, "prefix")) "…" } }
                                    td { (text(key, "role")) }
                                    td { (joined(&key["scopes"])) }
                                    td { (text(key, "status")) }
                                    td { (key["expires_at"].as_str().unwrap_or("never")) }
                                    td {
                                        @if text(key, "status") != "revoked" {
                                            @for (act, label) in [("rotate", "Rotate"), ("revoke", "Revoke")] {
                                                form.inline method="post" action={ "/environments/" (env_id) "/keys/" (key_id) "/" (act) } {
                                                    (csrf(viewer))
                                                    button.danger[act == "revoke"] type="submit" aria-label={ (label) " " (text(key, "name")) } { (label) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    h2 { "New API key" }
                    form.wide method="post" action={ "/environments/" (env_id) "/keys" } {
                        (csrf(viewer))
                        label for="key-name" { "Name" }
                        input #key-name type="text" name="name" required;
                        label for="key-role" { "Role" }
                        select #key-role name="role" {
                            @for role in ["analyst", "developer", "auditor", "service_account", "admin"] {
                                option value=(role) { (role) }
                            }
                        }
                        fieldset {
                            legend { "Scopes" }
                            @for scope in SCOPES {
                                label.check {
                                    input type="checkbox" name="scopes" value=(scope);
                                    " " (scope)
                                }
                            }
                        }
                        label for="key-expiry" { "Expires after (days; empty: never)" }
                        input #key-expiry type="number" name="expires_in_days" min="1";
                        button type="submit" { "Create key" }
                    }
                }
            }
        },
    )
}

/// The scope bundles, then every scope, as `POST …/api-keys` takes them.
const SCOPES: [&str; 21] = [
    "read_only",
    "developer",
    "admin",
    "agent",
    "query:read",
    "query:write",
    "tables:list",
    "tables:describe",
    "tables:create",
    "tables:alter",
    "schemas:read",
    "secrets:read",
    "secrets:write",
    "policies:read",
    "policies:manage",
    "keys:manage",
    "audit:read",
    "environments:read",
    "environments:manage",
    "webhooks:manage",
    "billing:read",
];
