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


def test_the_scan_of_parallel_workers_sees_every_worker():
    """With pytest-xdist the controller scans what every worker kept (tests/conftest.py): a value
    one worker encrypted is found in another's logs, and a worker that sent nothing fails it."""
    gw0 = {"records": ["orchestrio INFO nothing here"], "child_logs": [["manage.py serve", "DB_PASSWORD=value-from-gw1"]], "encrypted": []}
    gw1 = {"records": ["fine"], "child_logs": [], "encrypted": ["value-from-gw1"]}
    (hit,) = logscan.scan_workers({"gw0": gw0, "gw1": gw1})
    assert hit.startswith("gw0 manage.py serve: …DB_PASSWORD=value-from-gw1"), hit
    assert logscan.scan_workers({"gw1": gw1}) == []
    assert logscan.scan_workers({"gw1": gw1, "gw2": None}) == ["gw2: ended without sending its logs: the scan of the run is incomplete"]
    gw1["records"].append("Authorization: Bearer ork_live_" + "A1b2C3d4E5" * 3 + "zzQ9w8E7")
    assert [hit.split(":")[0] for hit in logscan.scan_workers({"gw1": gw1})] == ["gw1 record 1"]


@pytest.mark.after_all
def test_no_secret_reached_a_log():
    """Under pytest-xdist the controller runs this check itself, over every worker's logs, after they
    are all done (tests/conftest.py, LogScanController); here it is the run's last test."""
    hits = logscan.leaks(logscan.texts() + logscan.remaining_instance_logs(), logscan.encrypted)
    assert not hits, "secrets in the logs:\n" + "\n".join(hits[:20])
