"""Console pages: an instance's custom domain."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from orchestrio import roles
from orchestrio.errors import DomainError
from orchestrio.views import console_view, domain_error_message

from instances.selectors import live_instances
from orchestrio.forms import errors_to_form

from . import services as domains


# The capability each action of `instance_domain_action` needs beyond `operate` (orchestrio/roles.py).
ACTION_CAPABILITIES = {"remove": "destroy"}


class DomainForm(forms.Form):
    domain = forms.CharField(max_length=300, help_text="A name you control, e.g. app.example.com.")


def _instance(request, instance_id, **_):
    instance = live_instances(tenant=request.principal.tenant).filter(instance_id=instance_id).select_related("tenant__plan").first()
    if instance is None:
        raise Http404(f"no instance {instance_id}")
    return instance


@require_http_methods(["GET", "POST"])
@console_view(capabilities={"POST": "expose"}, objects=_instance)
def instance_domain(request, instance_id: str):
    instance = _instance(request, instance_id)
    current = instance.custom_domains.filter(removed_at__isnull=True).first()
    form = DomainForm(request.POST or None)
    if request.method == "POST" and current is None and form.is_valid():
        try:
            domains.domain_attach(instance=instance, domain=form.cleaned_data["domain"], actor=request.principal.actor)
        except DomainError as exc:
            errors_to_form(form, exc)
        else:
            messages.success(request, "Domain attached: create the DNS records below.")
            return redirect("instances:domain", instance_id=instance_id)
    context = {"instance": instance, "domain": current, "form": form, "records": domains.dns_records(domain=current) if current else []}
    return render(request, "domains/domain.html", context)


@require_GET
@console_view
def instance_domain_live(request, instance_id: str):
    """The domain card alone (status, records, checks), for static/console/live.js; 404 once the
    domain is removed, as for another tenant's instance."""
    instance = _instance(request, instance_id)
    current = instance.custom_domains.filter(removed_at__isnull=True).first()
    if current is None:
        raise Http404("no custom domain")
    return render(request, "domains/_domain_live.html", {"instance": instance, "domain": current, "records": domains.dns_records(domain=current)})


@require_POST
@console_view
def instance_domain_action(request, instance_id: str, action: str):
    instance = _instance(request, instance_id)
    current = instance.custom_domains.filter(removed_at__isnull=True).first()
    if current is None:
        raise Http404("no custom domain")
    roles.require(request.principal, ACTION_CAPABILITIES.get(action, "operate"))
    try:
        if action == "check":
            checked = domains.domain_check(domain_pk=current.pk, actor=request.principal.actor)
            if checked.status == "active":
                messages.success(request, f"{checked.domain} is verified and active.")
            else:
                messages.warning(request, f"Not yet: {checked.error}")
        elif action == "remove":
            domains.domain_remove(domain=current, actor=request.principal.actor)
            messages.success(request, f"Removing {current.domain}.")
        else:
            raise Http404("no such action")
    except DomainError as exc:
        domain_error_message(request, exc)
    return redirect("instances:domain", instance_id=instance_id)
