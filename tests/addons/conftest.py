from __future__ import annotations

import pytest

from ..instances.conftest import make_instance, running  # noqa: F401 - fixtures


@pytest.fixture(autouse=True)
def _no_leftover_addon_servers():
    """Every add-on server a test started is gone when it ends (its directory removed)."""
    yield
    import shutil
    from pathlib import Path

    from django.conf import settings

    from addons import engines
    from instances.providers.local import process_record

    base = Path(settings.ADDONS_LOCAL_DIR)
    for directory in base.glob("addon_*") if base.exists() else []:
        meta = process_record(directory)
        target = engines.Target(addon_id=directory.name, addon_pk=0, engine="postgres" if (directory / "data" / "PG_VERSION").exists() else "redis", port=meta.get("port") or 0, username="", database="", password="", admin_password="")
        engines.stop(target, grace=5)
        shutil.rmtree(directory, ignore_errors=True)
    # Their sockets' directories (in their instances' sockets directory) and the backups' store.
    shutil.rmtree(base / "sockets", ignore_errors=True)
    shutil.rmtree(base / "work", ignore_errors=True)
    shutil.rmtree(settings.ADDONS_BACKUP_DIR, ignore_errors=True)
