"""Issue 14, finding 4, for proxied requests: a tenant whose instance answers slowly (or streams
for ever) cannot take every thread of the web server through the tunnel or the gateway. Each web
process serves at most its tenant share of one tenant's proxied requests at once (half of what
long-lived requests may hold, by default), and all of them together never take the threads it
keeps for everyone else; beyond that, 429 with Retry-After.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from orchestrio import longpoll

from ..factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory
from ..processes import child_env, real_redis_url, server_process  # noqa: F401 - fixture

SLOW = r"""
import http.server, os, time
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(4)
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"done")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def _owner_token(tenant_id: str):
    user = UserFactory(username=f"owner@{tenant_id}.example")
    tenant = TenantFactory(id=tenant_id)
    MembershipFactory(user=user, tenant=tenant, role="owner")
    return ApiTokenFactory(tenant=tenant, created_by=user, role="owner").plaintext


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.django_db(transaction=True)
def test_a_slow_instance_cannot_take_every_thread_through_the_tunnel(real_redis_url):  # noqa: F811
    slow_token, other_token = _owner_token("slow-corp"), _owner_token("other-corp")
    # 8 threads, 2 kept for everyone: long-lived requests may hold 6, one tenant's proxied ones 3.
    env = child_env(real_redis_url, LONG_POLL_RESERVED_THREADS="2")
    with server_process(env, worker=True, threads=8) as base, ThreadPoolExecutor(max_workers=8) as pool:

        def api(token, method, path, body=None):
            return httpx.request(method, f"{base}/api/v1/{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)

        assert api(slow_token, "POST", "blueprints", {"name": "slow", "command": ["python3", "-c", SLOW]}).status_code == 201
        assert api(slow_token, "POST", "instances", {"instance_id": "slow-app", "blueprint_name": "slow"}).status_code == 201
        assert api(other_token, "POST", "instances", {"instance_id": "other-app"}).status_code == 201
        for token, instance_id in ((slow_token, "slow-app"), (other_token, "other-app")):
            waited = api(token, "GET", f"instances/{instance_id}/wait?state=running&timeout=60")
            assert waited.status_code == 200, waited.text

        def tunnel(token, instance_id, path):
            return httpx.get(f"{base}/tunnel/{instance_id}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=60)

        slow = [pool.submit(tunnel, slow_token, "slow-app", "/slow") for _ in range(5)]
        deadline = time.monotonic() + 20
        while sum(f.done() for f in slow) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = [f.result() for f in slow if f.done()]
        assert [r.status_code for r in refused] == [429, 429], [(r.status_code, r.text[:200]) for r in refused]
        for response in refused:
            assert int(response.headers["Retry-After"]) >= 1 and "in progress on this server" in json.loads(response.text)["detail"]
        # While three threads wait on the slow instance: another tenant, /health and the slow
        # tenant's own API calls are all served.
        others = [pool.submit(tunnel, other_token, "other-app", "/") for _ in range(2)]
        others += [pool.submit(httpx.get, f"{base}/health", timeout=30), pool.submit(api, slow_token, "GET", "instances")]
        assert [f.result().status_code for f in others] == [200] * 4
        held = [f.result() for f in slow if f.result().status_code != 429]
        assert [(r.status_code, r.text) for r in held] == [(200, "done")] * 3
        # Their slots were given back when their answers were sent.
        assert tunnel(slow_token, "slow-app", "/fast").status_code == 200
        api(slow_token, "DELETE", "instances/slow-app")
        api(other_token, "DELETE", "instances/other-app")
        for token, instance_id in ((slow_token, "slow-app"), (other_token, "other-app")):
            api(token, "GET", f"instances/{instance_id}/wait?state=destroyed&timeout=30")


def test_the_proxy_slot_counts_per_tenant_and_releases_once(settings):
    settings.LONG_POLL_RESERVED_THREADS = 4
    longpoll.set_server_threads(10)  # long-lived capacity 6: a tenant's share is 3
    try:
        releases = [longpoll.proxy_slot(tenant_id="a") for _ in range(3)]
        with pytest.raises(longpoll.TooManyRequests):
            longpoll.proxy_slot(tenant_id="a")
        others = [longpoll.proxy_slot(tenant_id="b") for _ in range(3)]
        with pytest.raises(longpoll.TooManyRequests, match="this server is holding as many long polls and streams"):
            longpoll.proxy_slot(tenant_id="c")  # the process's capacity is used up
        releases[0]()
        releases[0]()  # a second call gives nothing back twice
        releases.append(longpoll.proxy_slot(tenant_id="a"))
        with pytest.raises(longpoll.TooManyRequests):
            longpoll.proxy_slot(tenant_id="a")
        for release in releases[1:] + others:
            release()
        assert longpoll._held_here == 0 and longpoll._held_by_tenant == {}
    finally:
        longpoll.set_server_threads(None)
