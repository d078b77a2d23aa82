"""A tenant's own web server, started the way a tenant starts one: a blueprint whose `command`
runs a small Python HTTP server on `$PORT`. It depends only on that public behaviour of `command`
blueprints (not on how the local provider runs or reaches the process), so it keeps working
whatever sandbox the provider puts the command in.

The server answers from pages given on its command line, one argument each (a blueprint's
`command` holds up to 64 arguments of 4 KiB): `[path, {"status", "headers", "body", "sleep_ms"}]`
(`sleep_ms`: the page answers after that long).
It resolves the request path the way `http.server` and most file servers do (percent-decode,
then `posixpath.normpath`), so a dot-segment that reaches it really does climb out of
`/webhooks/<slug>`. `GET /_seen` answers the request targets (and Cookie headers) it has
received (but for `/health` and `/_seen`), so a test can assert on what the instance got.
"""

from __future__ import annotations

import json

from ..helpers import run_jobs

SERVER = r"""
import json, os, posixpath, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

spec = dict(json.loads(arg) for arg in sys.argv[1:])
seen = []

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = urlsplit(self.path).path
        if path == "/_seen":
            return self.reply(200, [["Content-Type", "application/json"]], json.dumps(seen))
        if path == "/health":
            return self.reply(200, [["Content-Type", "text/plain"]], "ok")
        seen.append({"method": self.command, "target": self.path, "cookie": self.headers.get("Cookie")})
        name = posixpath.normpath(unquote(path)) if path not in ("", "/") else "/"
        page = spec.get(name)
        if page is None:
            return self.reply(404, [["Content-Type", "text/plain"]], "no page " + name)
        if page.get("sleep_ms"):
            time.sleep(page["sleep_ms"] / 1000)
        self.reply(page.get("status", 200), page.get("headers", []), page.get("body", ""))

    def reply(self, status, headers, body):
        data = body.encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = answer

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def start_site(api, instance_id: str, pages: dict[str, dict], *, blueprint: str | None = None) -> dict:
    """Create (through the tenant's API) and start an instance serving `pages`; returns its record."""
    import pytest

    name = blueprint or f"site-{instance_id}"
    created = api.post("blueprints", {"name": name, "command": ["python3", "-c", SERVER, *(json.dumps([path, page]) for path, page in pages.items())], "health_path": "/health"})
    if created.status_code == 422 and "sandbox" in created.content.decode():
        pytest.skip(f"the local provider runs no tenant commands here: {created.content.decode()[:200]}")
    assert created.status_code == 201, created.content
    response = api.post("instances", {"instance_id": instance_id, "blueprint_name": name})
    assert response.status_code == 201, response.content
    run_jobs()
    record = api.get(f"instances/{instance_id}").json()
    assert record["state"] == "running", api.get(f"instances/{instance_id}/logs").json()
    return record


def seen(api, instance_id: str) -> list[dict]:
    """The requests the instance's server has received (through the tunnel, with the tenant's token)."""
    from django.test import Client

    response = Client().get(f"/tunnel/{instance_id}/_seen", HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert response.status_code == 200, response.status_code
    return json.loads(b"".join(response.streaming_content))
