# Drives Enclave's MCP server with the reference MCP Python SDK, as an agent host would, and
# prints what each call returned as one JSON document (the Rust test asserts on it).
#
#   python mcp_client.py http  URL KEY MODE          # streamable HTTP, the key in a header
#   python mcp_client.py stdio BINARY URL KEY MODE   # `enclave mcp` launched as a process
#
# MODE is the SDK's: `legacy` (the initialize handshake) or `auto` (discovery; stateless).
# The tool calls to make come on stdin: {"label": ["tool", {arguments}], …}.
import asyncio
import json
import sys

import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

CLIENT = types.Implementation(name="enclave-test", version="1.0")


def dump(result):
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


async def session(client, calls):
    out = {}
    out["tools"] = dump(await client.list_tools())
    out["calls"] = {}
    for name, (tool, arguments) in calls.items():
        try:
            out["calls"][name] = dump(await client.call_tool(tool, arguments))
        except MCPError as e:
            out["calls"][name] = {"protocol_error": {"code": e.error.code, "message": e.error.message}}
    out["resources"] = dump(await client.list_resources())
    out["templates"] = dump(await client.list_resource_templates())
    reads = {}
    for r in out["resources"].get("resources", [])[:2]:
        reads[r["uri"]] = dump(await client.read_resource(r["uri"]))
    try:
        reads["missing"] = dump(await client.read_resource(out["templates"]["resourceTemplates"][0]["uriTemplate"]
                                                          .replace("{environment}", "env_nope").replace("{table}", "x")))
    except MCPError as e:
        reads["missing"] = {"protocol_error": {"code": e.error.code, "message": e.error.message}}
    out["reads"] = reads
    return out


async def main():
    transport, rest = sys.argv[1], sys.argv[2:]
    calls = json.loads(sys.stdin.read())
    if transport == "http":
        url, key, mode = rest
        http = httpx2.AsyncClient(headers={"Authorization": f"ApiKey {key}", "X-Agent-Id": "support-bot"},
                                  timeout=60)
        server = streamable_http_client(url, http_client=http)
    else:
        binary, url, key, mode = rest
        server = StdioServerParameters(command=binary, args=["mcp", "--agent-id", "support-bot"],
                                       env={"ENCLAVE_URL": url, "ENCLAVE_API_KEY": key})
    async with Client(server, mode=mode, client_info=CLIENT, cache=None) as client:
        out = await session(client, calls)
    print(json.dumps(out))


asyncio.run(main())
