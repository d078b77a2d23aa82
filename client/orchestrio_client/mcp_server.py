"""`ork mcp`: an MCP server exposing Orchestrio's API as tools for AI agents.

Each tool is one API operation, named by its operationId, with the input schema of that
operation (generated from the OpenAPI schema: `INPUT_SCHEMAS`), and each call goes through the
SDK with the user's own token: the server can do exactly what the token can, nothing more (no
back door into the database). Tools that stop, destroy or roll back are marked destructive and
refuse to run without `"confirm": true`. Transports: stdio (what MCP clients launch), or
streamable HTTP behind `--http` on 127.0.0.1, where every request must carry the same token as
`Authorization: Bearer …` (another local user cannot borrow it).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass
from typing import Any

from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from . import errors
from ._base import Page
from ._generated import INPUT_SCHEMAS
from ._version import __version__
from .client import Client


@dataclass(frozen=True)
class ToolSpec:
    kind: str  # "read", "write" or "destructive"
    extra: tuple[tuple[str, dict], ...] = ()  # MCP-only arguments
    drop: tuple[str, ...] = ()  # API arguments not offered (a stream a tool result cannot carry)


WAIT_SECONDS = ("wait_seconds", {"type": "integer", "minimum": 0, "maximum": 300, "description": "Poll up to this many seconds until the task has finished (0: answer now)."})
CONFIRM = {"type": "boolean", "const": True, "description": "Must be true: this tool stops, destroys or rolls back something."}

# The operations offered as tools (the rest of the API stays with the SDK and `ork`).
TOOLS: dict[str, ToolSpec] = {
    "tenant_retrieve": ToolSpec("read"),
    "usage_current_retrieve": ToolSpec("read"),
    "blueprints_list": ToolSpec("read"),
    "instances_list": ToolSpec("read"),
    "instances_retrieve": ToolSpec("read"),
    "instances_runtime_retrieve": ToolSpec("read"),
    "instances_logs_list": ToolSpec("read"),
    "instances_operations_list": ToolSpec("read"),
    "instances_app_logs_retrieve": ToolSpec("read", drop=("follow", "format", "timeout")),
    "instances_wait_retrieve": ToolSpec("read"),
    "instances_chat_create": ToolSpec("write", drop=("format",)),  # the JSON answer (a tool result is not a stream)
    "instances_create": ToolSpec("write"),
    "instances_start_create": ToolSpec("write"),
    "instances_resume_create": ToolSpec("write"),
    # Sleeping is undone by the next request to the instance: not destructive.
    "instances_sleep_create": ToolSpec("write"),
    "instances_wake_create": ToolSpec("write"),
    "instances_stop_create": ToolSpec("destructive"),
    "instances_restart_create": ToolSpec("destructive"),
    "instances_suspend_create": ToolSpec("destructive"),
    "instances_destroy": ToolSpec("destructive"),
    "instances_tasks_create": ToolSpec("write"),
    "instances_tasks_list": ToolSpec("read"),
    "tasks_retrieve": ToolSpec("read", extra=(WAIT_SECONDS,)),
    "tasks_cancel_create": ToolSpec("destructive"),
    "requests_create": ToolSpec("write"),
    "requests_retrieve": ToolSpec("read"),
    "requests_return": ToolSpec("destructive"),
    "requests_return_instances": ToolSpec("destructive"),
    "deployments_list": ToolSpec("read"),
    "deployments_retrieve": ToolSpec("read"),
    "deployments_revisions_list": ToolSpec("read"),
    "deployments_create": ToolSpec("write"),
    "deployments_partial_update": ToolSpec("write"),
    "deployments_rollback_create": ToolSpec("destructive"),
    "deployments_destroy": ToolSpec("destructive"),
    # Add-ons: reads, backups and restore. Not their creation, nor a reveal: those answer the
    # connection URL, a secret that has no place in an agent's context (`ork` and the console do it).
    "instances_addons_list": ToolSpec("read"),
    "addons_retrieve": ToolSpec("read"),
    "addons_backups_list": ToolSpec("read"),
    "addons_backup_info_retrieve": ToolSpec("read"),
    "addons_backups_create": ToolSpec("write"),
    "addons_restore_create": ToolSpec("destructive"),  # it replaces the add-on's data
    # Functions: read, invoke with a sample request, deploy the draft.
    "functions_list": ToolSpec("read"),
    "functions_retrieve": ToolSpec("read"),
    "functions_logs_retrieve": ToolSpec("read"),
    "functions_invoke_create": ToolSpec("write"),
    "functions_deploy_create": ToolSpec("write"),
}


def input_schema(name: str) -> dict[str, Any]:
    spec = TOOLS[name]
    schema = json.loads(json.dumps(INPUT_SCHEMAS[name]))  # a copy
    for key in spec.drop:
        schema["properties"].pop(key, None)
    for key, extra in spec.extra:
        schema["properties"][key] = extra
    if spec.kind == "destructive":
        if "confirm" in schema["properties"]:  # deployments_destroy: the API's own ?confirm=<name>
            schema["properties"]["confirm_name"] = schema["properties"].pop("confirm")
        schema["properties"]["confirm"] = CONFIRM
        schema["required"] = [*schema["required"], "confirm"]
    return schema


def tool_list() -> list[types.Tool]:
    tools = []
    for name, spec in TOOLS.items():
        doc = (getattr(Client, name).__doc__ or name).strip()
        lines = [line.strip() for line in doc.splitlines() if line.strip()]
        description = " — ".join(lines[:2])
        if spec.kind == "destructive":
            description += ". Destructive: requires confirm=true; ask the user first."
        tools.append(types.Tool(
            name=name,
            title=lines[1] if len(lines) > 1 else name,
            description=description,
            input_schema=input_schema(name),
            annotations=types.ToolAnnotations(
                read_only_hint=spec.kind == "read",
                destructive_hint=spec.kind == "destructive",
                idempotent_hint=spec.kind == "read",
                open_world_hint=False,
            ),
        ))
    return tools


class ToolError(Exception):
    pass


def call(client: Client, name: str, arguments: dict[str, Any]) -> Any:
    """Run one tool synchronously (in a worker thread): the SDK call, or a refusal."""
    if name not in TOOLS:
        raise ToolError(f"no tool {name!r}")
    schema = input_schema(name)
    args = dict(arguments)
    unknown = sorted(set(args) - set(schema["properties"]))
    if unknown:
        raise ToolError(f"unknown argument(s): {', '.join(unknown)}; {name} takes {', '.join(schema['properties'])}")
    missing = [key for key in schema["required"] if key not in args]
    if missing:
        raise ToolError(f"missing argument(s): {', '.join(missing)}")
    if TOOLS[name].kind == "destructive":
        if args.pop("confirm", None) is not True:
            raise ToolError(f"{name} is destructive: call it again with confirm=true once the user agreed")
        if "confirm_name" in args:
            args["confirm"] = args.pop("confirm_name")
    if name == "instances_wait_retrieve":
        return client.wait(args["instance_id"], args.get("state") or "running", timeout=float(args.get("timeout") or 60))
    if name == "tasks_retrieve":
        wait = int(args.pop("wait_seconds", 0) or 0)
        if wait:
            try:
                return client.wait_task(args["task_id"], timeout=wait, interval=0.5)
            except errors.ApiError:
                raise
            except errors.OrchestrioError:
                pass  # still running after wait_seconds: answer with where it is
    result = getattr(client, name)(**args)
    if isinstance(result, Page):
        return {"count": result.count, "next": result.next, "previous": result.previous, "results": result.results}
    return result if result is not None else {"done": True}


def build_server(client: Client) -> Server:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list())

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            result = await asyncio.to_thread(call, client, params.name, params.arguments or {})
        except errors.ApiError as exc:
            body = exc.body if isinstance(exc.body, dict) else {"detail": exc.detail}
            return types.CallToolResult(
                content=[types.TextContent(text=f"HTTP {exc.status}: {exc.message}")],
                structured_content={"status": exc.status, **body},
                is_error=True,
            )
        except (ToolError, errors.OrchestrioError, TypeError) as exc:
            return types.CallToolResult(content=[types.TextContent(text=str(exc))], is_error=True)
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(result, default=str))],
            structured_content=result if isinstance(result, dict) else {"result": result},
        )

    return Server(
        "orchestrio",
        version=__version__,
        instructions=(
            "Tools over the Orchestrio control plane's REST API, acting with the user's API token. "
            "Instances: create, wait for a state, start/stop/destroy; tasks: run a script on an "
            "instance, then tasks_retrieve with wait_seconds for its result; deployments and "
            "rollback; usage. Destructive tools need confirm=true: ask the user before."
        ),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def _serve_stdio(server: Server) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


class _RequireToken:
    """ASGI: every HTTP request must carry the server's own API token."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": b'{"detail": "send the same API token as Authorization: Bearer"}'})
                return
        await self.app(scope, receive, send)


def serve(client: Client, *, http: bool = False, host: str = "127.0.0.1", port: int = 8765) -> None:
    server = build_server(client)
    if not http:
        asyncio.run(_serve_stdio(server))
        return
    import uvicorn

    app = server.streamable_http_app(host=host)
    uvicorn.run(_RequireToken(app, client.token or ""), host=host, port=port, log_level="warning")


__all__ = ["TOOLS", "build_server", "call", "serve", "tool_list"]
