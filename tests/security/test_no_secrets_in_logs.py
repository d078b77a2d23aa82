"""No secret in any log of the whole test run (see tests/logscan.py). Runs after every other test."""

from __future__ import annotations

import logging

import pytest

from .. import logscan


def test_the_scan_finds_a_planted_secret():
    token = "ork_live_" + "A1b2C3d4E5" * 3 + "zz" + "Q9w8E7"
    texts = [("planted", f"GET /api/v1/instances Authorization: Bearer {token}"), ("clean", "ork_live_AbCd prefix only")]
    assert [hit.split(":")[0] for hit in logscan.leaks(texts, {"deployment-secret-value"})] == ["planted"]
    assert logscan.leaks([("value", "DB_PASSWORD=deployment-secret-value")], {"deployment-secret-value"})


def test_the_scan_sees_the_run_and_its_encryptions():
    logging.getLogger("orchestrio.test").warning("the log scan is listening")
    assert any("the log scan is listening" in record for record in logscan.records)


@pytest.mark.after_all
def test_no_secret_reached_a_log():
    from django.conf import settings
    from pathlib import Path

    remaining = [log for directory in sorted(Path(settings.LOCAL_PROVIDER_DIR).glob("*")) for log in logscan.instance_logs(directory)]
    texts = [(f"record {n}", text) for n, text in enumerate(logscan.records)] + logscan.child_logs + remaining
    hits = logscan.leaks(texts, logscan.encrypted)
    assert not hits, "secrets in the logs:\n" + "\n".join(hits[:20])
