//! `enclave mcp`: the MCP server for agent hosts that launch a process. It reads MCP messages
//! on standard input (one JSON-RPC message a line), relays each one to the server's `/mcp`
//! endpoint with the command's credential, and writes the answers on standard output. The
//! tools, their policies and their audit are the server's own; this end keeps only the
//! protocol session's id and version.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::client::{Client, Connection, Scope};

#[derive(Args, Debug)]
pub struct McpCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// The agent's id in the query audit (and the capability grant it acts under).
    #[arg(long, env = "ENCLAVE_AGENT_ID")]
    pub agent_id: Option<String>,
}

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// What the relay learns from the server as the conversation goes.
#[derive(Default)]
struct Protocol {
    session: Option<String>,
    version: Option<String>,
}

struct Relay {
    client: Client,
    agent_id: Option<String>,
    protocol: Mutex<Protocol>,
    out: mpsc::UnboundedSender<String>,
}

pub async fn run(cmd: McpCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Environment).await?;
    let (out, mut lines_out) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = lines_out.recv().await {
            stdout.write_all(line.as_bytes()).await?;
            stdout.write_all(b"\n").await?;
            stdout.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let relay = Arc::new(Relay {
        client,
        agent_id: cmd.agent_id,
        protocol: Mutex::new(Protocol::default()),
        out,
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut running = JoinSet::new();
    while let Some(line) = lines
        .next_line()
        .await
        .context("cannot read standard input")?
    {
        if line.trim().is_empty() {
            continue;
        }
        let relay = relay.clone();
        let message = serde_json::from_str::<Value>(&line);
        // The handshake and notifications are relayed before the next message is read (what
        // follows the handshake needs its session; a notification must not overtake the
        // request after it); requests run side by side, as a host may pipeline them.
        if message.as_ref().is_ok_and(is_request) {
            running.spawn(async move { relay.forward(line, message).await });
        } else {
            relay.forward(line, message).await;
        }
    }
    while running.join_next().await.is_some() {}
    relay.end_session().await;
    drop(relay);
    writer.await.context("the output writer stopped")??;
    Ok(())
}

/// A request other than the handshake: it has an id and a method.
fn is_request(m: &Value) -> bool {
    m.get("id").is_some_and(|id| !id.is_null())
        && m["method"].is_string()
        && m["method"] != "initialize"
}

impl Relay {
    fn request(&self, method: Method) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, "/mcp");
        if let Some(agent) = &self.agent_id {
            req = req.header("x-agent-id", agent);
        }
        let protocol = self.protocol.lock().expect("not poisoned");
        if let Some(session) = &protocol.session {
            req = req.header(SESSION_HEADER, session);
        }
        if let Some(version) = &protocol.version {
            req = req.header(VERSION_HEADER, version);
        }
        req
    }

    fn send(&self, message: Value) {
        // The writer ends only after every relay is done: a send cannot fail before that.
        let _ = self.out.send(message.to_string());
    }

    /// A JSON-RPC error answering request `id` (nothing for a notification).
    fn fail(&self, id: &Option<Value>, code: i64, message: String) {
        if let Some(id) = id {
            self.send(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
            );
        }
    }

    /// Relays one line (`message`: the line read as JSON).
    async fn forward(&self, line: String, message: serde_json::Result<Value>) {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                let error = format!("not a JSON-RPC message: {e}");
                self.fail(&Some(Value::Null), -32700, error);
                return;
            }
        };
        let id = message
            .get("method")
            .and(message.get("id"))
            .cloned()
            .filter(|id| !id.is_null());
        let mut req = self
            .request(Method::POST)
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json");
        // A stateless client names its protocol version in each message.
        if let Some(version) = message["params"]["_meta"][META_VERSION].as_str() {
            req = req.header(VERSION_HEADER, version);
        }
        let resp = match req.body(line).send().await {
            Ok(r) => r,
            Err(e) => {
                let error = format!("cannot reach {}: {e}", self.client.base());
                self.fail(&id, -32603, error);
                return;
            }
        };
        if let Some(session) = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            self.protocol.lock().expect("not poisoned").session = Some(session.to_string());
        }
        let status = resp.status();
        let events = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let body = match resp.text().await {
            Ok(b) => b,
            Err(e) => {
                self.fail(&id, -32603, format!("the answer broke off: {e}"));
                return;
            }
        };
        if !status.is_success() {
            let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let reason = parsed["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| body.trim().chars().take(500).collect());
            self.fail(&id, -32000, format!("HTTP {}: {reason}", status.as_u16()));
            return;
        }
        let payloads = match events {
            true => event_data(&body),
            false if body.trim().is_empty() => vec![],
            false => vec![body],
        };
        for payload in payloads {
            let Ok(answer) = serde_json::from_str::<Value>(&payload) else {
                continue;
            };
            if let Some(version) = answer["result"]["protocolVersion"].as_str() {
                self.protocol.lock().expect("not poisoned").version = Some(version.to_string());
            }
            self.send(answer);
        }
    }

    /// Standard input closed: the server may drop the session now.
    async fn end_session(&self) {
        if self
            .protocol
            .lock()
            .expect("not poisoned")
            .session
            .is_some()
        {
            let _ = self.request(Method::DELETE).send().await;
        }
    }
}

/// The data of each server-sent event of a body (multi-line data joined), events without
/// data left out.
fn event_data(body: &str) -> Vec<String> {
    let body = body.replace("\r\n", "\n");
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .filter(|d| !d.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_yield_their_data() {
        let body =
            "id: 0\nretry: 3000\ndata:\n\nid: 1\ndata: {\"a\":1}\n\r\ndata: {\"b\":\ndata: 2}\n\n";
        assert_eq!(event_data(body), vec!["{\"a\":1}", "{\"b\":\n2}"]);
        assert!(event_data("").is_empty());
        assert!(event_data(": keep-alive\n\n").is_empty());
    }
}
