"""`manage.py check --deploy` is clean with production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "orchestrio.settings",
        "DEBUG": "0",
        "SECRET_KEY": "prod-" + "k3y" * 20 + "-0123456789abcdef",
        "ALLOWED_HOSTS": "orchestrio.example.com",
        "PUBLIC_URL": "https://orchestrio.example.com",
        # The documented production layout: the gateway and instances on a domain of their own.
        "GATEWAY_HOST": "gateway.example-hosted.net",
        "BASE_DOMAIN": "instances.example-hosted.net",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "ORCHESTRIO_VAR_DIR": str(tmp_path),
        "ENCRYPTION_KEYS": "dGVzdC1vbmx5LWZlcm5ldC1rZXktMDEyMzQ1Njc4OWE=",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    # ORCHESTRIO_VAR_DIR: a checkout's own var/local.env (make run's) must not supply the key here.
    env = {"PATH": os.environ.get("PATH", ""), "DEBUG": "0", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "ORCHESTRIO_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_the_removed_aws_retry_settings_stop_the_process_with_their_replacement(tmp_path):
    base = {"PATH": os.environ.get("PATH", ""), "DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "ORCHESTRIO_VAR_DIR": str(tmp_path)}
    for name, replacement in (("AWS_THROTTLE_RETRIES", "AWS_MAX_ATTEMPTS"), ("AWS_BACKOFF_BASE_SECONDS", "AWS_RETRY_MODE"), ("AWS_BACKOFF_CAP_SECONDS", "AWS_RETRY_MODE")):
        result = subprocess.run(
            [sys.executable, "manage.py", "check"], cwd=ROOT, env={**base, name: "5"}, capture_output=True, text=True, timeout=120
        )
        assert result.returncode != 0
        assert f"{name} is gone" in result.stderr and replacement in result.stderr, result.stderr[-500:]
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env={**base, "AWS_RETRY_MODE": "legacy"}, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "AWS_RETRY_MODE must be standard or adaptive" in result.stderr
