"""The add-ons' console: the instance's Add-ons tab (create, status, reveal, destroy, backups),
and the local store's signed backup download (no session: the signed URL is the credential)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from instances.selectors import live_instances
from orchestrio import roles
from orchestrio.errors import DomainError, Forbidden, NotFound
from orchestrio.forms import errors_to_form
from orchestrio.http import carries_secret
from orchestrio.views import console_view, domain_error_message

from . import services, storage
from .choices import AddOnPlan, BackupStatus, Engine
from .models import AddOnBackup
from .selectors import live_addons


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


# --- the instance's Add-ons tab (instances.pages) ----------------------------------------------


class AddOnForm(forms.Form):
    engine = forms.ChoiceField(choices=Engine.choices, help_text="PostgreSQL is DATABASE_URL in the instance, Redis REDIS_URL.")
    version = forms.CharField(max_length=16, required=False, help_text="Empty: the version this installation provides.")
    plan = forms.ChoiceField(choices=AddOnPlan.choices, initial=AddOnPlan.HOBBY, label="Size")


# The capability each action of `addon_action` needs (orchestrio/roles.py), as the API's routes.
ACTION_CAPABILITIES = {"backup": roles.OPERATE, "auto-backup": roles.OPERATE, "restore": roles.DESTROY, "delete-backup": roles.DESTROY, "download": roles.TOKENS}


def _instance(request, instance_id, **_):
    instance = live_instances(tenant=request.principal.tenant).filter(instance_id=instance_id).first()
    if instance is None:
        raise Http404(f"no instance {instance_id}")
    return instance


def _addon(request, instance_id, addon_id, **_):
    addon = live_addons().filter(tenant=request.principal.tenant, instance__instance_id=instance_id, addon_id=addon_id).first()
    if addon is None:
        raise Http404(f"no add-on {addon_id}")
    return addon


def _cards(instance) -> list[dict]:
    """Each live add-on of the instance with its backups and backup plan (a few queries each:
    an instance has a handful of add-ons)."""
    cards = []
    for addon in live_addons().filter(instance=instance):
        backups = list(AddOnBackup.objects.filter(addon=addon).exclude(status=BackupStatus.DELETED).order_by("-created_at", "-id")[:20])
        cards.append({"addon": addon, "backups": backups, "info": services.addon_backup_info(addon=addon)})
    return cards


@require_http_methods(["GET", "POST"])
@console_view(objects=_instance)
def instance_addons(request, instance_id: str):
    instance = _instance(request, instance_id)
    form = AddOnForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            addon, _ = services.addon_create(instance=instance, actor=request.principal.actor, engine=form.cleaned_data["engine"], version=form.cleaned_data["version"] or None, plan=form.cleaned_data["plan"])
        except DomainError as exc:
            errors_to_form(form, exc)
        else:
            messages.success(request, f"Creating {addon.get_engine_display()} add-on {addon.addon_id}: it is ready in a few seconds. Reveal its URL from its card.")
            return redirect("instances:addons", instance_id=instance_id)
    return render(request, "addons/instance_addons.html", {"instance": instance, "form": form, "cards": _cards(instance)})


@require_GET
@console_view
def instance_addons_live(request, instance_id: str):
    """The add-ons' cards alone, for static/console/live.js (the template the tab includes)."""
    instance = _instance(request, instance_id)
    return render(request, "addons/_addons_live.html", {"instance": instance, "cards": _cards(instance)})


@require_http_methods(["GET", "POST"])
@console_view(capabilities=roles.TOKENS, objects=_addon)
def addon_reveal(request, instance_id: str, addon_id: str):
    """The connection URL, after a confirmation (owners and admins; audited): GET asks, POST shows."""
    addon = _addon(request, instance_id, addon_id)
    url = None
    if request.method == "POST":
        try:
            url = services.addon_reveal(addon=addon, actor=request.principal.actor)
        except DomainError as exc:
            domain_error_message(request, exc)
            return redirect("instances:addons", instance_id=instance_id)
    response = render(request, "addons/reveal.html", {"instance": addon.instance, "addon": addon, "url": url})
    return carries_secret(response) if url else response


@require_http_methods(["GET", "POST"])
@console_view(capabilities=roles.DESTROY, objects=_addon)
def addon_destroy(request, instance_id: str, addon_id: str):
    addon = _addon(request, instance_id, addon_id)
    if request.method == "POST":
        if request.POST.get("confirm") != addon.addon_id:
            messages.error(request, f"Type {addon.addon_id} to confirm: destroying it deletes its data.")
            return render(request, "addons/destroy.html", {"instance": addon.instance, "addon": addon}, status=400)
        try:
            services.addon_destroy(addon=addon, actor=request.principal.actor, confirm=addon.addon_id)
        except DomainError as exc:
            domain_error_message(request, exc)
        else:
            messages.success(request, f"Destroying {addon.addon_id} and its data.")
        return redirect("instances:addons", instance_id=instance_id)
    return render(request, "addons/destroy.html", {"instance": addon.instance, "addon": addon})


@require_POST
@console_view(objects=_addon)
def addon_action(request, instance_id: str, addon_id: str, action: str):
    addon = _addon(request, instance_id, addon_id)
    if action not in ACTION_CAPABILITIES:
        raise Http404("no such action")
    roles.require(request.principal, ACTION_CAPABILITIES[action])
    actor, backup_id = request.principal.actor, request.POST.get("backup_id", "")
    try:
        if action == "backup":
            backup = services.backup_create(addon=addon, actor=actor)
            messages.success(request, f"Backing up {addon.addon_id} ({backup.backup_id}): it appears below when it is done.")
        elif action == "auto-backup":
            enabled = request.POST.get("enabled") == "on"
            services.addon_auto_backup_set(addon=addon, actor=actor, enabled=enabled)
            messages.success(request, "Daily automatic backups are on." if enabled else "Daily automatic backups are off.")
        elif action == "restore":
            services.backup_restore(addon=addon, actor=actor, backup_id=backup_id)
            messages.success(request, f"Restoring {addon.addon_id} from {backup_id}.")
        elif action == "delete-backup":
            services.backup_delete(addon=addon, actor=actor, backup_id=backup_id)
            messages.success(request, f"Backup {backup_id} deleted.")
        else:
            url, _ = services.backup_download_url(
                addon=addon, actor=actor, backup_id=backup_id, signed_url=lambda token: request.build_absolute_uri(reverse("addons:backup-download", args=[token]))
            )  # fmt: skip
            return redirect(url)
    except DomainError as exc:
        domain_error_message(request, exc)
    return redirect("instances:addons", instance_id=instance_id)
