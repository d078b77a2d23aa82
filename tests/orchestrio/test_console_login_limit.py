"""The console's login and signup are guarded against brute force, on the API's limiter (counters in
Redis, orchestrio/api/ratelimit.py)."""

from __future__ import annotations

import pytest
from django.test import Client

from ..factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tight(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "login": "3/m"}


def test_login_attempts_per_ip_are_limited(tight):
    user = UserFactory(username="brute@example.com")
    user.set_password("the-right-password")
    user.save()
    client = Client()
    statuses = [client.post("/login", {"username": f"guess{n}@example.com", "password": "wrong"}).status_code for n in range(3)]
    assert statuses == [200, 200, 200]  # the form again, with its error
    limited = client.post("/login", {"username": "brute@example.com", "password": "the-right-password"})
    assert limited.status_code == 429 and 1 <= int(limited["Retry-After"]) <= 60  # until the window ends
    assert b"Too many attempts" in limited.content
    assert "_auth_user_id" not in client.session  # even the right password waits
    # Another address is not affected.
    other = Client(REMOTE_ADDR="198.51.100.7")
    assert other.post("/login", {"username": "brute@example.com", "password": "the-right-password"}).status_code == 302


def test_login_attempts_per_username_are_limited_across_addresses(tight):
    UserFactory(username="target@example.com")
    for n in range(3):
        Client(REMOTE_ADDR=f"198.51.100.{n + 10}").post("/login", {"username": "target@example.com", "password": "wrong"})
    response = Client(REMOTE_ADDR="198.51.100.99").post("/login", {"username": "Target@example.com", "password": "wrong"})
    assert response.status_code == 429


def test_signup_is_limited_per_ip(tight):
    client = Client()
    for n in range(3):
        client.post("/signup", {"email": "x"})
    response = client.post("/signup", {"email": "x"})
    assert response.status_code == 429 and b"Too many attempts" in response.content


def test_a_redis_outage_does_not_lock_anyone_out(tight, monkeypatch):
    import fakeredis

    from orchestrio.api import ratelimit

    server = fakeredis.FakeServer()
    server.connected = False  # every command fails with ConnectionError
    monkeypatch.setattr(ratelimit, "get_redis", lambda: fakeredis.FakeStrictRedis(server=server))
    user = UserFactory(username="calm@example.com")
    user.set_password("pw-pw-pw-pw")
    user.save()
    client = Client()
    for _ in range(5):  # past the limit of 3, had the counters answered
        assert client.post("/login", {"username": "calm@example.com", "password": "wrong"}).status_code == 200
    assert client.post("/login", {"username": "calm@example.com", "password": "pw-pw-pw-pw"}).status_code == 302


def test_the_console_counters_use_the_api_key_scheme(tight, monkeypatch):
    # One limiter: the console's counters go through ratelimit.count like the API's.
    from orchestrio.api import ratelimit

    seen = []
    real = ratelimit.count
    monkeypatch.setattr(ratelimit, "count", lambda counters: seen.extend(counters) or real(counters))
    Client(REMOTE_ADDR="198.51.100.5").post("/login", {"username": "Who@example.com", "password": "wrong"})
    assert [(c.group, c.key) for c in seen] == [("console-auth", "ip:198.51.100.5"), ("console-login", "username:who@example.com")]
