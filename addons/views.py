"""The add-ons' pages outside the API: the local store's signed backup download."""

from __future__ import annotations

from django.http import FileResponse, HttpResponse
from django.views.decorators.http import require_GET

from orchestrio.errors import Forbidden, NotFound

from . import services, storage


@require_GET
def backup_download(request, token: str):
    """A backup of the local store, for whoever holds the signed URL until it expires (checked on
    every use: signature, age, the backup still its tenant's and available). No session needed."""
    try:
        backup = services.backup_for_download(token=token)
        handle = storage.LocalStore().open(backup.location)
    except Forbidden as exc:
        return HttpResponse(exc.detail, status=403, content_type="text/plain; charset=utf-8")
    except (NotFound, storage.StoreError):
        return HttpResponse("no such download", status=404, content_type="text/plain; charset=utf-8")
    response = FileResponse(handle, as_attachment=True, filename=services.backup_filename(backup=backup), content_type="application/octet-stream")
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
