//! The fields of an environment as forms show them (create, edit, clone) and their values
//! back as the API's JSON.

use maud::{html, Markup};
use serde_json::{json, Value};

use super::layout::text;
use super::signed::Form;

const TYPES: [(&str, &str); 4] = [
    ("dev", "development"),
    ("staging", "staging"),
    ("prod", "production"),
    ("custom", "custom"),
];

/// Slug, type, colour, description and parent; `env` fills them in for an edit, `envs` are
/// the possible parents.
pub(super) fn identity_fields(env: Option<&Value>, envs: &[Value]) -> Markup {
    let current = env.unwrap_or(&Value::Null);
    let own_id = text(current, "env_id");
    let parent = text(current, "parent_env_id");
    html! {
        label for="env-slug" { "Slug" }
        input #env-slug type="text" name="slug" value=(text(current, "slug")) pattern="[a-z0-9][a-z0-9_\\-]{0,63}"
            placeholder=[env.is_none().then_some("derived from the name")];
        label for="env-type" { "Type" }
        select #env-type name="type" {
            @if env.is_none() { option value="" { "from the slug" } }
            @for (value, label) in TYPES {
                option value=(value) selected[text(current, "type") == value] { (label) }
            }
        }
        label for="env-color" { "Colour (#RRGGBB)" }
        input #env-color type="text" name="color" value=(text(current, "color")) pattern="#[0-9a-fA-F]{6}"
            placeholder=[env.is_none().then_some("chosen by type")];
        label for="env-description" { "Description" }
        textarea #env-description name="description" maxlength="1024" rows="2" { (text(current, "description")) }
        label for="env-parent" { "Parent (its default promotion source)" }
        select #env-parent name="parent_env_id" {
            option value="" { "none" }
            @for e in envs.iter().filter(|e| text(e, "env_id") != own_id) {
                option value=(text(e, "env_id")) selected[text(e, "env_id") == parent] { (text(e, "name")) }
            }
        }
    }
}

/// The settings and the required secret keys.
pub(super) fn settings_fields(env: Option<&Value>) -> Markup {
    let s = env.map(|e| &e["settings"]).unwrap_or(&Value::Null);
    let timeout = s["query_timeout_ms"].as_i64().unwrap_or(30_000);
    let concurrency = s["max_concurrent_queries"].as_i64().unwrap_or(100);
    let cache = s["cache_enabled"].as_bool().unwrap_or(true);
    let required = env
        .map(|e| super::layout::joined(&e["required_keys"]))
        .unwrap_or_default();
    html! {
        fieldset {
            legend { "Settings" }
            label for="env-timeout" { "Query timeout (ms, 100–3 600 000)" }
            input #env-timeout type="number" name="query_timeout_ms" value=(timeout) min="100" max="3600000";
            label for="env-concurrency" { "Concurrent queries (1–10 000)" }
            input #env-concurrency type="number" name="max_concurrent_queries" value=(concurrency) min="1" max="10000";
            label.check {
                input type="checkbox" name="cache_enabled" value="true" checked[cache];
                " Result cache"
            }
        }
        label for="env-required" { "Required secret keys (comma-separated)" }
        input #env-required type="text" name="required_keys" value=(required);
    }
}

/// The settings of a posted form, as `settings` of the API.
pub(super) fn of_form(form: &Form) -> Value {
    let mut settings = json!({"cache_enabled": form.checked("cache_enabled")});
    for field in ["query_timeout_ms", "max_concurrent_queries"] {
        if let Some(n) = form.number(field) {
            settings[field] = n;
        }
    }
    settings
}

/// The required keys of a posted form (comma-separated).
pub(super) fn required_keys(form: &Form) -> Vec<&str> {
    form.first("required_keys")
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect()
}
