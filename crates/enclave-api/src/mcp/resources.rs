//! The MCP resources: each table the caller may read, as `enclave://{env_id}/tables/{name}`,
//! whose contents are its schema as `describe_table` gives it (JSON). A key lists its own
//! environment's tables; a person lists those of the environment named by the
//! `X-Enclave-Environment` header, and reads any of theirs by its URI.

use enclave_core::{Error, Result};
use rmcp::model::{
    ListResourcesResult, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
};
use rmcp::ErrorData as McpError;

use super::call::Call;
use super::tools::{visible_table, visible_tables};
use crate::state::AppState;

const SCHEME: &str = "enclave://";
const MIME: &str = "application/json";

pub(super) fn template() -> ResourceTemplate {
    ResourceTemplate::new(
        format!("{SCHEME}{{environment}}/tables/{{table}}"),
        "table",
    )
    .with_title("A table's schema")
    .with_description(
        "The columns of a table you may read in an environment (its id, env_…), with the masks \
         and row filters that apply to you",
    )
    .with_mime_type(MIME)
}

fn uri(env_id: &str, table: &str) -> String {
    format!("{SCHEME}{env_id}/tables/{table}")
}

/// `enclave://{env_id}/tables/{name}` as its two parts.
fn parse(uri: &str) -> Result<(&str, &str)> {
    let bad = || {
        Error::validation(
            "uri",
            "resource_uri",
            "a table resource is enclave://{environment id}/tables/{table}",
        )
    };
    let rest = uri.strip_prefix(SCHEME).ok_or_else(bad)?;
    let (env_id, table) = rest.split_once("/tables/").ok_or_else(bad)?;
    if env_id.is_empty() || table.is_empty() || table.contains('/') {
        return Err(bad());
    }
    Ok((env_id, table))
}

fn protocol_error(e: Error) -> McpError {
    let data = serde_json::json!({"code": e.code.as_str(), "details": e.details});
    match e.code {
        enclave_core::ErrorCode::NotFound => McpError::resource_not_found(e.message, Some(data)),
        enclave_core::ErrorCode::ValidationError => McpError::invalid_params(e.message, Some(data)),
        _ => McpError::invalid_request(e.message, Some(data)),
    }
}

pub(super) async fn list(
    state: &AppState,
    call: &Call,
    cursor: Option<String>,
) -> std::result::Result<ListResourcesResult, McpError> {
    let listed = async {
        let env_id = match call.names_environment() {
            true => match call.header("x-enclave-environment") {
                Some(env) => Some(env),
                // Nothing to list without an environment; the template still reads any.
                None => return Ok(ListResourcesResult::default()),
            },
            false => None,
        };
        let mut session = call.session(state, env_id.as_deref()).await?;
        let env_id = session.identity.env_id.to_string();
        let (tables, next) = visible_tables(state, &mut session, cursor.as_deref()).await?;
        let resources: Vec<Resource> = tables
            .iter()
            .map(|t| {
                Resource::new(uri(&env_id, &t.info.name), t.info.name.clone())
                    .with_description(format!(
                        "The schema of the {} `{}` ({} columns)",
                        t.info.kind,
                        t.info.name,
                        t.info.columns.len()
                    ))
                    .with_mime_type(MIME)
            })
            .collect();
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = next;
        Ok::<_, Error>(result)
    };
    listed.await.map_err(protocol_error)
}

pub(super) async fn read(
    state: &AppState,
    call: &Call,
    uri: &str,
) -> std::result::Result<ReadResourceResult, McpError> {
    let read = async {
        let (env_id, table) = parse(uri)?;
        let mut session = call.session(state, Some(env_id)).await?;
        let table = visible_table(state, &mut session, table).await?;
        let text = serde_json::to_string_pretty(&table.json()).map_err(|_| Error::internal())?;
        Ok::<_, Error>(ReadResourceResult::new(vec![ResourceContents::text(
            text, uri,
        )
        .with_mime_type(MIME)]))
    };
    read.await.map_err(protocol_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_uris_round_trip_and_malformed_ones_name_the_rule() {
        let u = uri("env_01abc", "customers");
        assert_eq!(u, "enclave://env_01abc/tables/customers");
        assert_eq!(parse(&u).unwrap(), ("env_01abc", "customers"));
        for bad in [
            "customers",
            "enclave://env_01abc/customers",
            "enclave:///tables/customers",
            "enclave://env_01abc/tables/",
            "enclave://env_01abc/tables/a/b",
            "file:///etc/passwd",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.details["rule"], "resource_uri", "{bad}");
        }
    }
}
