"""`ork mcp` over stdio, driven by the official MCP SDK's client (issue 17): the tools are listed
with the API's input schemas, and calls reach the live server with the user's token."""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"


def test_tools_over_stdio(live_server, ork_token, worker):
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "orchestrio_client", "mcp"],
        env={"PYTHONPATH": str(CLIENT_DIR), "ORK_URL": live_server.url, "ORK_TOKEN": ork_token, "XDG_CONFIG_HOME": "/nonexistent"},
        cwd=str(CLIENT_DIR),
    )

    async def session():
        async with Client(params, read_timeout_seconds=60) as mcp:
            tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
            create = tools["instances_create"]
            assert create.input_schema["required"] == ["instance_id"]
            assert create.input_schema["properties"]["plan_id"]["default"] == "openclaw-basic"  # the API's schema
            assert tools["instances_destroy"].annotations.destructive_hint is True
            assert "confirm" in tools["instances_destroy"].input_schema["required"]
            assert tools["instances_list"].annotations.read_only_hint is True
            assert tools["addons_restore_create"].annotations.destructive_hint is True and tools["addons_backups_list"].annotations.read_only_hint is True
            assert "instances_addons_create" not in tools and "addons_reveal_create" not in tools  # they answer a connection URL
            assert tools["functions_invoke_create"].annotations.read_only_hint is not True

            created = await mcp.call_tool("instances_create", {"instance_id": "mcp-box", "labels": {"by": "agent"}})
            assert not created.is_error, created.content
            assert created.structured_content["state"] == "pending"

            running = await mcp.call_tool("instances_wait_retrieve", {"instance_id": "mcp-box", "state": "running", "timeout": 60})
            assert running.structured_content["state"] == "running", running.content

            listed = await mcp.call_tool("instances_list", {"label": ["by:agent"]})
            assert [i["instance_id"] for i in listed.structured_content["results"]] == ["mcp-box"]

            task = await mcp.call_tool("instances_tasks_create", {"instance_id": "mcp-box", "operation_code": "echo", "script_path": "/opt/orchestrio/scripts/echo-args.sh", "script_args": {"from": "mcp"}})
            result = await mcp.call_tool("tasks_retrieve", {"task_id": task.structured_content["task_id"], "wait_seconds": 30})
            assert result.structured_content["status"] == "succeeded" and "mcp" in result.structured_content["stdout"]

            missing = await mcp.call_tool("instances_retrieve", {"instance_id": "no-such-box"})
            assert missing.is_error and missing.structured_content["status"] == 404

            refused = await mcp.call_tool("instances_destroy", {"instance_id": "mcp-box"})
            assert refused.is_error and "confirm" in refused.content[0].text
            destroyed = await mcp.call_tool("instances_destroy", {"instance_id": "mcp-box", "confirm": True})
            assert not destroyed.is_error and destroyed.structured_content["state"] == "destroying"

    # A thread of its own: Playwright's sync API (the browser tests) leaves an event loop set
    # in this one, where asyncio.run refuses to start another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, session()).result()
