"""`ork`'s configuration: profiles of (url, token) in a user file only its owner can read.

The file is `$XDG_CONFIG_HOME/orchestrio/config.json` (else `~/.config/orchestrio/config.json`),
mode 0600 in a 0700 directory, written atomically (a new file renamed over the old one, so a
token is never readable by others, not even for a moment, and a crash leaves the old file).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_PROFILE = "default"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "orchestrio" / "config.json"


def load() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"profiles": {}}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("profiles", {}), dict):
        raise ConfigError(f"{path} is not an ork configuration (delete it and run `ork login`)")
    data.setdefault("profiles", {})
    return data


def save(data: dict[str, Any]) -> Path:
    path = config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)  # created 0600
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def profile_name(explicit: str | None = None, data: dict[str, Any] | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get("ORK_PROFILE"):
        return os.environ["ORK_PROFILE"]
    return (data or {}).get("default_profile") or DEFAULT_PROFILE


def resolve(*, url: str | None, token: str | None, profile: str | None) -> tuple[str, str | None, str]:
    """(url, token, profile name): flags, then ORK_URL / ORK_TOKEN, then the profile."""
    data = load()
    name = profile_name(profile, data)
    stored = data["profiles"].get(name, {})
    if profile and not stored and not (url or token):
        raise ConfigError(f"no profile {profile!r} in {config_path()} (ork login --profile {profile})")
    resolved_url = url or os.environ.get("ORK_URL") or stored.get("url") or DEFAULT_URL
    resolved_token = token or os.environ.get("ORK_TOKEN") or stored.get("token")
    return resolved_url, resolved_token, name


class ConfigError(Exception):
    pass
