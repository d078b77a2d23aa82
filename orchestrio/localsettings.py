"""The development settings file: `var/local.env`, written by `make run`, read by `manage.py`.

`make run` writes it once (`python -m orchestrio.localsettings`): development mode, a generated
`SECRET_KEY` and a generated Fernet key in `ENCRYPTION_KEYS`, so that every `manage.py` command
(`createtenant`, `createsuperuser`, `serve` itself) works afterwards as the README writes it, with
nothing exported. It is never rewritten: the database's secrets are encrypted with that key.

`manage.py` loads it into the environment before Django reads its settings; a variable already in
the environment wins. The WSGI entry (`orchestrio/wsgi.py`, gunicorn in production) never reads
it, and a production host has no such file: there the settings come from the environment alone,
and a process with `DEBUG` off refuses to start without them (orchestrio/settings.py, "Start-up
checks"). The file is in `var/`, which git ignores.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

FILE_NAME = "local.env"
LEGACY_DATABASE = "orchestrio.sqlite3"  # the default DATABASE_URL's file (orchestrio/settings.py)


def path() -> Path:
    """`var/local.env`, under ORCHESTRIO_VAR_DIR when that is set (as orchestrio/settings.py's VAR_DIR)."""
    var_dir = os.environ.get("ORCHESTRIO_VAR_DIR") or Path(__file__).resolve().parent.parent / "var"
    return Path(var_dir) / FILE_NAME


def load() -> Path | None:
    """Fill the environment from the file, when there is one (the environment wins). Its path, or None."""
    file = path()
    if not file.is_file():
        return None
    from dotenv import load_dotenv

    load_dotenv(file, override=False)
    return file


def write() -> Path | None:
    """Write the file with new secrets unless it exists. Its path when written, else None."""
    from cryptography.fernet import Fernet

    file = path()
    file.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Development settings written by `make run` (orchestrio/localsettings.py); read by manage.py.",
        "# Never used in production, and never rewritten: ENCRYPTION_KEYS decrypts this database's secrets.",
        "DEBUG=1",
    ]
    if (file.parent / LEGACY_DATABASE).exists():
        # A development database from before this file: its secrets are encrypted with the key
        # DEBUG derives from its fixed SECRET_KEY, which it keeps (`make clean` starts afresh).
        lines.append("# No SECRET_KEY or ENCRYPTION_KEYS: var/ held a database already, encrypted with DEBUG's own key.")
    else:
        lines += [f"SECRET_KEY={secrets.token_urlsafe(50)}", f"ENCRYPTION_KEYS={Fernet.generate_key().decode('ascii')}"]
    try:
        # O_EXCL: never replace an existing file (its key encrypted what the database holds).
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return file


if __name__ == "__main__":
    written = write()
    if written is not None:
        sys.stdout.write(f"Wrote {written}: development mode with a generated SECRET_KEY and ENCRYPTION_KEYS.\n")
