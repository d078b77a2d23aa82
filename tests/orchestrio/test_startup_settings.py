"""Start-up settings: production refuses to start without what requests need, naming each missing
setting; `make run`'s local settings file (var/local.env) makes every `manage.py` command work in
development with nothing exported, and is read by manage.py only (never by the WSGI entry)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "prod-" + "k3y" * 20 + "-0123456789abcdef",
    "ENCRYPTION_KEYS": "dGVzdC1vbmx5LWZlcm5ldC1rZXktMDEyMzQ1Njc4OWE=",
    "ALLOWED_HOSTS": "orchestrio.example.com",
    "PUBLIC_URL": "https://orchestrio.example.com",
}
REQUIRED = ("SECRET_KEY", "ENCRYPTION_KEYS", "ALLOWED_HOSTS", "PUBLIC_URL")


def _run(args: list[str], var_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """A child with only what is given: no SECRET_KEY or DEBUG inherited from the suite."""
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "ORCHESTRIO_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
    }
    return subprocess.run([sys.executable, *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=180)


def test_production_without_any_setting_names_every_missing_one(tmp_path):
    result = _run(["manage.py", "check"], tmp_path, DEBUG="0")
    assert result.returncode != 0
    for name in REQUIRED:
        assert f"{name} must be set when DEBUG is off" in result.stderr, result.stderr[-2000:]
    assert "make run" in result.stderr  # the way to a development setup


@pytest.mark.parametrize("name", REQUIRED)
def test_each_missing_production_setting_stops_the_process_by_name(tmp_path, name):
    env = {key: value for key, value in PRODUCTION.items() if key != name}
    result = _run(["manage.py", "check"], tmp_path, **env)
    assert result.returncode != 0
    assert f"{name} must be set when DEBUG is off" in result.stderr, result.stderr[-2000:]
    for other in set(REQUIRED) - {name}:
        assert f"{other} must be set" not in result.stderr


def test_complete_production_settings_start(tmp_path):
    result = _run(["manage.py", "check"], tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_malformed_encryption_key_stops_the_process_without_echoing_it(tmp_path):
    bad = "not-a-fernet-key-but-a-secret-all-the-same"
    result = _run(["manage.py", "check"], tmp_path, **{**PRODUCTION, "ENCRYPTION_KEYS": f"{PRODUCTION['ENCRYPTION_KEYS']},{bad}"})
    assert result.returncode != 0
    assert "ENCRYPTION_KEYS: key 2 of 2 is not a Fernet key" in result.stderr
    assert bad not in result.stderr
    # In development too: the first secret stored would otherwise be a 500.
    result = _run(["manage.py", "check"], tmp_path, DEBUG="1", ENCRYPTION_KEYS=bad)
    assert result.returncode != 0 and "ENCRYPTION_KEYS: key 1 of 1 is not a Fernet key" in result.stderr


def test_the_local_settings_file_is_written_once_private_and_complete(tmp_path):
    first = _run(["-m", "orchestrio.localsettings"], tmp_path)
    assert first.returncode == 0 and "Wrote" in first.stdout, first.stderr
    file = tmp_path / "local.env"
    content = file.read_text()
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in content.splitlines() if line and not line.startswith("#"))
    assert values["DEBUG"] == "1" and len(values["SECRET_KEY"]) >= 50
    from cryptography.fernet import Fernet

    Fernet(values["ENCRYPTION_KEYS"])  # a real key
    again = _run(["-m", "orchestrio.localsettings"], tmp_path)
    assert again.returncode == 0 and again.stdout == ""
    assert file.read_text() == content  # never rewritten: its key encrypts the database's secrets
    other = tmp_path / "other"
    other.mkdir()
    _run(["-m", "orchestrio.localsettings"], other)
    assert (other / "local.env").read_text() != content  # generated, not a constant


def test_an_existing_development_database_keeps_the_key_it_was_encrypted_with(tmp_path):
    """A var/ from before var/local.env: its secrets were encrypted with the key DEBUG derives
    from its fixed SECRET_KEY, so the file generates neither (they would no longer decrypt)."""
    (tmp_path / "orchestrio.sqlite3").write_bytes(b"")
    assert _run(["-m", "orchestrio.localsettings"], tmp_path).returncode == 0
    values = [line.split("=", 1)[0] for line in (tmp_path / "local.env").read_text().splitlines() if line and not line.startswith("#")]
    assert values == ["DEBUG"]


@pytest.mark.slow
def test_manage_py_commands_work_after_make_run_with_nothing_exported(tmp_path):
    """The README's operator commands, as written, with only the file `make run` writes."""
    assert _run(["manage.py", "check"], tmp_path).returncode != 0  # before: production, refused
    assert _run(["-m", "orchestrio.localsettings"], tmp_path).returncode == 0
    migrate = _run(["manage.py", "migrate", "--noinput"], tmp_path)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    created = _run(["manage.py", "createtenant", "acme-corp", "--owner", "ops@acme.example", "--plan", "pro", "--token"], tmp_path)
    assert created.returncode == 0, created.stderr[-2000:]
    assert created.stdout.strip().splitlines()[-1].startswith("ork_live_")
    superuser = _run(
        ["manage.py", "createsuperuser", "--noinput", "--username", "root@example.com", "--email", "root@example.com"],
        tmp_path, DJANGO_SUPERUSER_PASSWORD="a-long-support-password-1",
    )  # fmt: skip
    assert superuser.returncode == 0, superuser.stderr[-2000:]
    # A secret is stored and read back with the file's key (ENCRYPTION_KEYS), not a derived one.
    stored = _run(["manage.py", "shell", "-c", "from orchestrio import crypto; print(crypto.encrypt('s3cret'))"], tmp_path)
    assert stored.returncode == 0, stored.stderr[-2000:]
    from cryptography.fernet import Fernet

    key = next(line.split("=", 1)[1] for line in (tmp_path / "local.env").read_text().splitlines() if line.startswith("ENCRYPTION_KEYS="))
    assert Fernet(key).decrypt(stored.stdout.strip().splitlines()[-1].encode()) == b"s3cret"


def test_the_environment_wins_over_the_local_settings_file(tmp_path):
    _run(["-m", "orchestrio.localsettings"], tmp_path)
    show = ["manage.py", "shell", "-c", "from django.conf import settings; print(settings.DEBUG, settings.SECRET_KEY)"]
    from_file = _run(show, tmp_path)
    assert from_file.returncode == 0, from_file.stderr[-2000:]
    assert from_file.stdout.splitlines()[-1].split()[0] == "True"
    overridden = _run(show, tmp_path, SECRET_KEY="from-the-environment-" + "x" * 40)
    assert overridden.stdout.splitlines()[-1].split() == ["True", "from-the-environment-" + "x" * 40]


def test_the_wsgi_entry_never_reads_the_local_settings_file(tmp_path):
    """gunicorn (production) imports orchestrio.wsgi: a stray var/local.env must not make it a
    development server with a key nobody configured."""
    _run(["-m", "orchestrio.localsettings"], tmp_path)
    result = _run(["-c", "import orchestrio.wsgi"], tmp_path, DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr
