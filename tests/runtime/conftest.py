from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ..factories import ApiTokenFactory, MembershipFactory, UserFactory
from ..helpers import Api
from ..instances.conftest import live  # noqa: F401 - fixture


@pytest.fixture
def admin_api(tenant):
    user = UserFactory(username="admin@example.com")
    MembershipFactory(user=user, tenant=tenant, role="admin")
    return Api(ApiTokenFactory(tenant=tenant, created_by=user, role="admin").plaintext, tenant=tenant, user=user)


class _Broken(BaseHTTPRequestHandler):
    """An agent that fails: 500 on every call, or (`slow`) no answer for two seconds."""

    slow = False

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.slow:
            time.sleep(2)
        data = json.dumps({"detail": "the runtime crashed"}).encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def broken_agent():
    def start(*, slow: bool = False):
        handler = type("Handler", (_Broken,), {"slow": slow})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_port

    servers: list = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
