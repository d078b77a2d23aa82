"""`ork --help` and each command's help name the REST call it makes (issue 17), from the same
generated operations the SDK calls; the few local commands say they make none."""

from __future__ import annotations

import click
from click.testing import CliRunner

from orchestrio_client import OPERATIONS
from orchestrio_client.cli import EXIT_CODES, cli

LOCAL = {"logout", "profiles", "completion", "mcp"}


def _leaves(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaves(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_names_its_rest_call():
    seen = set()
    for path, command in _leaves(cli):
        if path[-1] in LOCAL:
            assert "no REST call" in command.help or path == ("mcp",), path
            continue
        operations = getattr(command.callback, "__rest__", ())
        assert operations, f"ork {' '.join(path)} names no REST call"
        for op in operations:
            method, url = OPERATIONS[op]
            assert f"{method} {url}" in command.help
            seen.add(op)
        shown = CliRunner().invoke(cli, [*path, "--help"]).output
        assert f"{OPERATIONS[operations[0]][0]} {OPERATIONS[operations[0]][1]}" in " ".join(shown.split())
    # The command groups are all there.
    groups = {path[0] for path, _ in _leaves(cli)}
    assert {"instances", "tasks", "blueprints", "gateway", "domains", "deploy", "deployments", "usage", "tokens", "activity", "login", "logout"} <= groups
    assert {"instances_create", "instances_wait_retrieve", "instances_tasks_create", "deployments_rollback_create"} <= seen


def test_root_help_lists_the_exit_codes():
    shown = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
    for kind in ("auth", "not_found", "conflict", "limit", "validation", "server"):
        assert f"{EXIT_CODES[kind]} " in shown
    assert "REST call" in shown


def test_the_http_transport_takes_only_the_token():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from orchestrio_client.mcp_server import _RequireToken

    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    async def run(headers):
        sent = []

        async def send(message):
            sent.append(message)

        await _RequireToken(app, "ork_live_secret")({"type": "http", "path": "/mcp", "headers": headers}, None, send)
        return sent

    def sync(headers):  # in a thread of its own: the browser tests leave an event loop in this one
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run(headers)).result()

    refused = sync([(b"authorization", b"Bearer ork_live_other")])
    assert refused[0]["status"] == 401 and reached == []
    assert sync([])[0]["status"] == 401
    assert sync([(b"authorization", b"Bearer ork_live_secret")]) == [] and reached == ["/mcp"]
