"""Where add-on backups are kept: S3 (boto3; any S3 API — AWS, MinIO, a moto server) when
ADDONS_BACKUP_S3_BUCKET is set, else a local directory (`make run`: var/backups/).

A store takes a finished file and gives it back by key. It never sees a model: the services name
the key (`<tenant>/<addon_id>/<backup_id>.<ext>`) and record the store's name (`local`, `s3`) with
the backup, so that a backup is read back from the store that holds it even after the
configuration changes. Downloads: S3 hands out presigned URLs; the local store has none (the
services sign a control-plane URL instead: addons.services.backup_download_url).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings


class StoreError(Exception):
    """The store could not do what was asked (the message says what; never a credential)."""


class LocalStore:
    name = "local"

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or settings.ADDONS_BACKUP_DIR)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError(f"invalid backup key {key!r}")
        return path

    def put(self, key: str, source: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # the control plane's only: backups hold tenants' data
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        shutil.copyfile(source, partial)
        os.chmod(partial, 0o600)
        os.replace(partial, path)

    def fetch(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError as exc:
            raise StoreError("the backup is not in the local store any more") from exc

    def open(self, key: str):
        """The file, for the signed download (streamed by the view)."""
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise StoreError("the backup is not in the local store any more") from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


class S3Store:
    name = "s3"

    def __init__(self) -> None:
        if not settings.ADDONS_BACKUP_S3_BUCKET:
            raise StoreError("no ADDONS_BACKUP_S3_BUCKET configured: S3 backups cannot be read")
        self.bucket = settings.ADDONS_BACKUP_S3_BUCKET
        self.prefix = settings.ADDONS_BACKUP_S3_PREFIX

    def _client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=settings.ADDONS_BACKUP_S3_ENDPOINT_URL or None, region_name=settings.ADDONS_BACKUP_S3_REGION or None,
            config=Config(retries={"mode": settings.AWS_RETRY_MODE, "max_attempts": settings.AWS_MAX_ATTEMPTS}, signature_version="s3v4"),
        )  # fmt: skip

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _call(self, what: str, func, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return func(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise StoreError(f"S3 {what} failed ({code})") from exc
        except BotoCoreError as exc:
            raise StoreError(f"S3 {what} failed ({type(exc).__name__})") from exc

    def put(self, key: str, source: Path) -> None:
        self._call("upload", self._client().upload_file, str(source), self.bucket, self._key(key))

    def fetch(self, key: str, dest: Path) -> None:
        self._call("download", self._client().download_file, self.bucket, self._key(key), str(dest))

    def delete(self, key: str) -> None:
        self._call("delete", self._client().delete_object, Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client().head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError:
            return False
        return True

    def presigned_url(self, key: str, *, filename: str, seconds: int) -> str:
        params = {"Bucket": self.bucket, "Key": self._key(key), "ResponseContentDisposition": f'attachment; filename="{filename}"'}
        return self._call("presign", self._client().generate_presigned_url, "get_object", Params=params, ExpiresIn=seconds)


def current_store():
    """The store new backups go to."""
    return S3Store() if settings.ADDONS_BACKUP_S3_BUCKET else LocalStore()


def store_named(name: str):
    """The store that holds a backup recorded with this store name."""
    if name == S3Store.name:
        return S3Store()
    if name == LocalStore.name:
        return LocalStore()
    raise StoreError(f"backups in {name!r} are not kept in a store of the control plane")
