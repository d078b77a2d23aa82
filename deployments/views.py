"""Console pages for deployments."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from orchestrio.forms import errors_to_form, json_field_value, name_value_lines
from orchestrio.errors import DomainError
from orchestrio.views import console_view, domain_error_message

from instances.models import InstancePlan, Region
from instances.selectors import blueprint_visible, instance_counts

from . import services as service
from .choices import DeploymentEnvironment
from .models import Deployment
from .selectors import live_deployments


def _json_object(raw: str, what: str) -> dict:
    return json_field_value(raw, what=f"the {what}")


class DeploymentForm(forms.Form):
    name = forms.CharField(max_length=50, help_text="3–50 lowercase letters, digits and '-'. Unique in your tenant.")
    environment = forms.ChoiceField(choices=DeploymentEnvironment.choices)
    blueprint_name = forms.ChoiceField(label="Blueprint")
    plan_id = forms.ChoiceField(label="Plan")
    region = forms.ChoiceField()
    config = forms.CharField(required=False, initial="{}", widget=forms.Textarea(attrs={"rows": 5, "class": "mono", "data-editor": "object"}), label="Config")
    secrets = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3, "class": "mono", "autocomplete": "off"}), label="Secrets", help_text="NAME=value, one per line. Encrypted at rest; never shown again.")

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["blueprint_name"].choices = [(b.name, b.name) for b in blueprint_visible(tenant=tenant)]
        self.fields["blueprint_name"].initial = "OpenClaw"
        self.fields["plan_id"].choices = [(p.pk, p.name) for p in InstancePlan.objects.filter(available=True)]
        self.fields["region"].choices = [(r.pk, f"{r.name} ({r.pk})") for r in Region.objects.all() if r.available]
        self.fields["region"].initial = settings.DEFAULT_REGION

    def clean_config(self):
        return _json_object(self.cleaned_data["config"], "config")

    def clean_secrets(self):
        return name_value_lines(self.cleaned_data["secrets"], allow_removal=False)


class UpdateForm(forms.Form):
    config = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 8, "class": "mono", "data-editor": "object"}), label="Config (the whole config)")
    secrets = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3, "class": "mono", "autocomplete": "off"}), label="Change secrets", help_text="NAME=value sets one; NAME= removes it; others stay as they are.")

    def clean_config(self):
        return _json_object(self.cleaned_data["config"], "config")

    def clean_secrets(self):
        return name_value_lines(self.cleaned_data["secrets"], allow_removal=True)


def _deployment(request, deployment_id: str, **_) -> Deployment:
    deployment = live_deployments().filter(tenant=request.principal.tenant, pk=deployment_id).select_related("instance", "blueprint").first()
    if deployment is None:
        raise Http404("no such deployment")
    return deployment


@console_view
def deployment_list(request):
    return render(request, "deployments/list.html", {"page": _deployment_page(request)})


def _deployment_page(request):
    return Paginator(live_deployments().filter(tenant=request.principal.tenant).select_related("instance"), 50).get_page(request.GET.get("page"))


@require_GET
@console_view
def deployment_list_live(request):
    """The list's table alone, for static/console/live.js: the same template the page includes."""
    return render(request, "deployments/_list_table.html", {"page": _deployment_page(request)})


@require_http_methods(["GET", "POST"])
@console_view
def deployment_create(request):
    form = DeploymentForm(request.POST or None, tenant=request.principal.tenant)
    if request.method == "POST" and form.is_valid():
        try:
            deployment = service.deployment_create(principal=request.principal, **form.cleaned_data)
        except DomainError as exc:
            errors_to_form(form, exc)
        else:
            messages.success(request, f"Deploying {deployment.name}.")
            return redirect("deployments:detail", deployment_id=deployment.pk)
    return render(request, "deployments/create.html", {"form": form, "instance_quota": _instance_quota(request.principal.tenant)})


def _instance_quota(tenant) -> dict:
    """What the form says before the user deploys: the deployment's new instance counts against
    the plan's instances (README, "deployments"); `allowed` None is no limit."""
    allowed = tenant.plan.limits["instances"]
    used = instance_counts(tenant=tenant)["instances"]
    return {"used": used, "allowed": allowed, "plan": tenant.plan.name, "full": allowed is not None and used >= allowed}


def _diff(new: dict, old: dict) -> list[str]:
    changes = []
    for key in sorted(set(new) | set(old)):
        if key not in old:
            changes.append(f"+ {key}: {json.dumps(new[key])}")
        elif key not in new:
            changes.append(f"- {key}")
        elif new[key] != old[key]:
            changes.append(f"~ {key}: {json.dumps(old[key])} → {json.dumps(new[key])}")
    return changes


@require_http_methods(["GET", "POST"])
@console_view
def deployment_detail(request, deployment_id: str):
    deployment = _deployment(request, deployment_id)
    revisions = list(deployment.revisions.order_by("-number"))
    latest = revisions[0] if revisions else None
    form = UpdateForm(request.POST or None, initial={"config": json.dumps(latest.config if latest else {}, indent=2, sort_keys=True)})
    if request.method == "POST" and form.is_valid():
        current = latest.config if latest else {}
        patch = {key: None for key in current if key not in form.cleaned_data["config"]}
        patch.update(form.cleaned_data["config"])
        try:
            service.deployment_update(deployment=deployment, actor=request.principal.actor, config_patch=patch, secrets_patch=form.cleaned_data["secrets"] or None)
        except DomainError as exc:
            errors_to_form(form, exc)
        else:
            messages.success(request, "A new revision is being applied.")
            return redirect("deployments:detail", deployment_id=deployment.pk)
    return render(request, "deployments/detail.html", {**_live_context(deployment, revisions), "form": form, "webhook_url": service.webhook_url(deployment=deployment)})


def _live_context(deployment, revisions: list) -> dict:
    """What the detail page's live parts show (templates/deployments/_detail_live.html)."""
    rows = []
    for index, revision in enumerate(revisions):
        previous = revisions[index + 1] if index + 1 < len(revisions) else None
        rows.append({"revision": revision, "diff": _diff(revision.config, previous.config if previous else {}), "secrets_changed": previous is not None and sorted(revision.secret_keys) != sorted(previous.secret_keys)})
    steps = list(revisions[0].steps.order_by("position")) if revisions else []
    logs = list(deployment.log_lines.order_by("-seq")[:100])[::-1]
    return {"deployment": deployment, "rows": rows, "steps": steps, "logs": logs}


@require_GET
@console_view
def deployment_detail_live(request, deployment_id: str):
    """The detail page's live parts (status, steps, revisions, log), for static/console/live.js;
    another tenant's deployment is 404 as on the page."""
    deployment = _deployment(request, deployment_id)
    return render(request, "deployments/_detail_live.html", _live_context(deployment, list(deployment.revisions.order_by("-number"))))


@require_POST
@console_view
def deployment_rollback(request, deployment_id: str):
    deployment = _deployment(request, deployment_id)
    try:
        number = int(request.POST.get("revision", ""))
    except ValueError:
        messages.error(request, "Choose a revision to roll back to.")
        return redirect("deployments:detail", deployment_id=deployment.pk)
    try:
        service.deployment_rollback(deployment=deployment, actor=request.principal.actor, revision_number=number)
        messages.success(request, f"Rolling back to revision {number}.")
    except DomainError as exc:
        domain_error_message(request, exc)
    return redirect("deployments:detail", deployment_id=deployment.pk)


@require_POST
@console_view(capabilities="destroy", objects=_deployment)
def deployment_delete(request, deployment_id: str):
    deployment = _deployment(request, deployment_id)
    confirm = request.POST.get("confirm", "").strip()
    if deployment.environment == DeploymentEnvironment.PRODUCTION and confirm != deployment.name:
        # The service refuses too (in the API's terms, ?confirm=); the console says it in the form's.
        messages.error(request, f"{deployment.name} is a production deployment: type the deployment's name to confirm the delete.")
        return redirect("deployments:detail", deployment_id=deployment.pk)
    try:
        service.deployment_delete(deployment=deployment, actor=request.principal.actor, confirm=confirm)
    except DomainError as exc:
        domain_error_message(request, exc)
        return redirect("deployments:detail", deployment_id=deployment.pk)
    messages.success(request, f"Deleted {deployment.name}; its instance is being destroyed.")
    return redirect("deployments:list")
