from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from instances.api.parents import INSTANCE
from orchestrio import roles
from orchestrio.api.exceptions import QueryValidationError
from orchestrio.api.schema import ERR_400, ERR_402, ERR_404, ERR_409, ERR_422, ERR_503
from orchestrio.api.viewsets import TenantScopedViewSet, idempotent
from orchestrio.http import carries_secret

from .. import services
from ..models import AddOn, AddOnBackup
from . import serializers as s


class _AddOnBase(TenantScopedViewSet):
    queryset = AddOn.objects.filter(deleted_at__isnull=True).select_related("instance")
    instance_scope_field = "instance__instance_id"
    serializer_class = s.AddOnSerializer
    allows_scoped_tokens = True
    not_found_label = "add-on"


@extend_schema(tags=["addons"])
class InstanceAddOnViewSet(mixins.ListModelMixin, _AddOnBase):
    """/api/v1/instances/{instance_id}/addons"""

    parent = INSTANCE
    rate_classes = {"create": "write"}

    @extend_schema(summary="The instance's add-ons (PostgreSQL, Redis)")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Add a PostgreSQL or Redis add-on to the instance (its connection URL is shown once)",
        request=s.AddOnCreateSerializer,
        responses={201: s.AddOnCreatedSerializer, 400: ERR_400, 402: ERR_402, 409: ERR_409, 422: ERR_422, 503: ERR_503},
    )
    @idempotent
    def create(self, request, instance_id=None):
        body = s.AddOnCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        addon, url = services.addon_create(instance=self.parent_object, actor=self.principal.actor, **body.validated_data)
        addon.connection_url = url if roles.allows(self.principal.role, roles.TOKENS) else None
        response = Response(s.AddOnCreatedSerializer(addon).data, status=status.HTTP_201_CREATED)
        return carries_secret(response) if addon.connection_url else response


@extend_schema(tags=["addons"])
class AddOnViewSet(mixins.RetrieveModelMixin, _AddOnBase):
    """/api/v1/addons/{addon_id}"""

    lookup_field = "addon_id"
    lookup_value_regex = "[^/]+"
    rate_classes = {
        "destroy": "write", "rotate_credentials": "write", "reveal": "write", "auto_backup": "write", "backups": "write",
        "backup_delete": "write", "backup_download": "write", "restore": "write",
    }  # fmt: skip
    # A backup holds all of the add-on's data: downloading one is a credential's matter, restoring
    # one (replacing the data) and deleting one a destroyer's.
    capabilities = {
        "destroy": roles.DESTROY, "rotate_credentials": roles.TOKENS, "reveal": roles.TOKENS,
        "backup_delete": roles.DESTROY, "backup_download": roles.TOKENS, "restore": roles.DESTROY,
    }  # fmt: skip

    @extend_schema(summary="An add-on: engine, status, where it listens (never its password)")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Destroy the add-on and its data (?confirm=<addon id>; on AWS ?final_snapshot=false skips the final snapshot)",
        parameters=[s.AddOnDeleteQuerySerializer],
        responses={202: s.AddOnSerializer, 400: ERR_400, 409: ERR_409, 422: ERR_422},
    )
    def destroy(self, request, addon_id=None):
        query = s.AddOnDeleteQuerySerializer(data=request.query_params)
        if not query.is_valid():
            raise QueryValidationError(query.errors)  # 422 at ["query", name]
        addon = services.addon_destroy(addon=self.get_object(), actor=self.principal.actor, confirm=query.validated_data.get("confirm"), final_snapshot=query.validated_data["final_snapshot"])
        return Response(s.AddOnSerializer(addon).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="A new password for the add-on (the old one stops working)", request=None, responses={202: s.AddOnSerializer, 400: ERR_400, 409: ERR_409})
    @action(detail=True, methods=["post"], url_path="rotate-credentials")
    def rotate_credentials(self, request, addon_id=None):
        addon = services.addon_rotate_credentials(addon=self.get_object(), actor=self.principal.actor)
        return Response(s.AddOnSerializer(addon).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Show the add-on's connection URL (owners and admins; audited)", request=None, responses={200: s.AddOnRevealSerializer, 400: ERR_400})
    @action(detail=True, methods=["post"], url_path="reveal")
    def reveal(self, request, addon_id=None):
        addon = self.get_object()
        url = services.addon_reveal(addon=addon, actor=self.principal.actor)
        return carries_secret(Response({"addon_id": addon.addon_id, "connection_url": url}))

    # --- backups ---------------------------------------------------------------------------

    @extend_schema(summary="Turn the add-on's daily automatic backups on or off", request=s.AutoBackupSerializer, responses={200: s.BackupInfoSerializer, 400: ERR_400, 402: ERR_402, 422: ERR_422})
    @action(detail=True, methods=["post"], url_path="auto-backup")
    def auto_backup(self, request, addon_id=None):
        body = s.AutoBackupSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        addon = services.addon_auto_backup_set(addon=self.get_object(), actor=self.principal.actor, enabled=body.validated_data["enabled"])
        return Response(s.BackupInfoSerializer(services.addon_backup_info(addon=addon)).data)

    @extend_schema(summary="The add-on's backup plan: retention, daily quota, next and last backup", responses={200: s.BackupInfoSerializer})
    @action(detail=True, methods=["get"], url_path="backup-info")
    def backup_info(self, request, addon_id=None):
        return Response(s.BackupInfoSerializer(services.addon_backup_info(addon=self.get_object())).data)

    @extend_schema(methods=["GET"], summary="The add-on's backups, newest first", responses={200: s.BackupSerializer(many=True)})
    @extend_schema(methods=["POST"], summary="Back the add-on up now (counted against the plan's daily quota)", request=None, responses={202: s.BackupSerializer, 400: ERR_400, 402: ERR_402, 409: ERR_409})
    @action(detail=True, methods=["get", "post"], url_path="backups")
    @idempotent
    def backups(self, request, addon_id=None):
        addon = self.get_object()
        if request.method == "POST":
            backup = services.backup_create(addon=addon, actor=self.principal.actor)
            return Response(s.BackupSerializer(backup).data, status=status.HTTP_202_ACCEPTED)
        listed = AddOnBackup.objects.filter(addon=addon).exclude(status="deleted").select_related("addon").order_by("-created_at", "-id")
        page = self.paginate_queryset(listed)
        return self.get_paginated_response(s.BackupSerializer(page, many=True).data)

    @extend_schema(summary="Delete a backup (from its store too)", request=None, responses={204: None, 404: ERR_404, 409: ERR_409})
    @action(detail=True, methods=["delete"], url_path=r"backups/(?P<backup_id>[^/]+)")
    def backup_delete(self, request, addon_id=None, backup_id=None):
        services.backup_delete(addon=self.get_object(), actor=self.principal.actor, backup_id=backup_id)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="A URL that downloads the backup for a few minutes (owners and admins; audited)", responses={200: s.BackupDownloadSerializer, 400: ERR_400, 404: ERR_404})
    @action(detail=True, methods=["get"], url_path=r"backups/(?P<backup_id>[^/]+)/download")
    def backup_download(self, request, addon_id=None, backup_id=None):
        url, expires_at = services.backup_download_url(
            addon=self.get_object(), actor=self.principal.actor, backup_id=backup_id,
            signed_url=lambda token: request.build_absolute_uri(reverse("addons:backup-download", args=[token])),
        )  # fmt: skip
        return carries_secret(Response(s.BackupDownloadSerializer({"backup_id": backup_id, "url": url, "expires_at": expires_at}).data))

    @extend_schema(summary="Restore the add-on's data from one of its backups (replaces what is there)", request=s.RestoreSerializer, responses={202: s.AddOnSerializer, 400: ERR_400, 404: ERR_404, 409: ERR_409, 422: ERR_422})
    @action(detail=True, methods=["post"], url_path="restore")
    @idempotent
    def restore(self, request, addon_id=None):
        body = s.RestoreSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        addon = services.backup_restore(addon=self.get_object(), actor=self.principal.actor, backup_id=body.validated_data["backup_id"])
        return Response(s.AddOnSerializer(addon).data, status=status.HTTP_202_ACCEPTED)
