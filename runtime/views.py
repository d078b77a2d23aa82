"""Console pages: an instance's Chat tab (chat with the reply streaming, the debug consent and its
audit trail, the model policy)."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from instances.selectors import live_instances
from orchestrio import roles
from orchestrio.errors import DomainError
from orchestrio.views import console_view, domain_error_message

from . import selectors, services
from .choices import CONVERSATION_ID_PATTERN, MAX_TOKENS_PER_DAY

CONVERSATION_ID = re.compile(CONVERSATION_ID_PATTERN)

USAGE_DAYS = 14

# The capability each action of `instance_chat_action` needs (orchestrio/roles.py).
ACTION_CAPABILITIES = {"consent": "debug", "policy": "operate"}


class ModelPolicyForm(forms.Form):
    allowed_models = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, help_text="The models chats on this instance may use.")
    default_model = forms.ChoiceField(required=False, help_text="Used when a chat names none (the first allowed when empty).")
    max_tokens_per_day = forms.IntegerField(required=False, min_value=1, max_value=MAX_TOKENS_PER_DAY, help_text="Tokens in and out per UTC day; empty: no budget.")

    def __init__(self, *args, models=(), **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(m.id, f"{m.name} ({m.id}: ${m.price_in_per_1k}/${m.price_out_per_1k} per 1k in/out)") for m in models]
        self.fields["allowed_models"].choices = choices
        self.fields["default_model"].choices = [("", "—"), *[(m.id, m.id) for m in models]]


def _instance(request, instance_id, **_):
    instance = live_instances(tenant=request.principal.tenant).filter(instance_id=instance_id).first()
    if instance is None:
        raise Http404(f"no instance {instance_id}")
    return instance


@require_GET
@console_view(objects=_instance)
def instance_chat(request, instance_id: str):
    instance = _instance(request, instance_id)
    policy = selectors.model_policy_get(instance=instance)
    form = ModelPolicyForm(models=selectors.catalogue(), initial={k: policy[k] for k in ("allowed_models", "default_model", "max_tokens_per_day")})
    today = timezone.now().astimezone(dt_timezone.utc).date()
    daily = selectors.agent_usage_daily(first=today - timedelta(days=USAGE_DAYS - 1), last=today, instance=instance)
    chart = {
        "t": [int(datetime.combine(day, time.min, tzinfo=dt_timezone.utc).timestamp()) for day in daily],
        "tokens": [d["tokens_in"] + d["tokens_out"] for d in daily.values()],
        "cost_usd": [float(d["cost_usd"]) for d in daily.values()],
    }  # the series static/console/charts.js draws, as on the Billing page
    consent = selectors.consent_get(instance=instance)
    conversations, conversation, problem = None, None, None
    if consent.debug_access and roles.allows(request.principal.role, "debug") and instance.state == "running":
        # The tenant's owners and admins read them here while consent is on (docs/agent.md).
        wanted = request.GET.get("conversation") or None
        try:
            if wanted is not None and CONVERSATION_ID.fullmatch(wanted):
                conversation = services.conversations_read(instance=instance, conversation_id=wanted)
            conversations = services.conversations_read(instance=instance, limit=20)["results"]
        except DomainError as exc:
            problem = exc.detail
    context = {
        "instance": instance, "policy": policy, "form": form, "consent": consent,
        "conversations": conversations, "conversation": conversation, "conversation_problem": problem,
        "trail": selectors.consent_trail(instance=instance), "models": policy["allowed_models"] or ["default"],
        "daily": [{"date": day, **values} for day, values in daily.items()], "chart": chart,
    }  # fmt: skip
    return render(request, "runtime/chat.html", context)


@require_POST
@console_view(objects=_instance)
def instance_chat_action(request, instance_id: str, action: str):
    instance = _instance(request, instance_id)
    if action not in ACTION_CAPABILITIES:
        raise Http404("no such action")
    roles.require(request.principal, ACTION_CAPABILITIES[action])
    try:
        if action == "consent":
            granted = request.POST.get("debug_access") == "on"
            services.consent_update(instance=instance, debug_access=granted, actor=request.principal.actor)
            messages.success(request, "Debug consent granted: support staff may read this instance's conversations." if granted else "Debug consent revoked.")
        else:
            form = ModelPolicyForm(request.POST, models=selectors.catalogue())
            if not form.is_valid():
                messages.error(request, "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()))
                return redirect("instances:chat", instance_id=instance_id)
            data = form.cleaned_data
            result = services.model_policy_set(
                instance=instance, allowed_models=list(data["allowed_models"]), default_model=data["default_model"] or None,
                max_tokens_per_day=data["max_tokens_per_day"], actor=request.principal.actor,
            )  # fmt: skip
            messages.success(request, "Model policy saved" + (" and pushed to the instance." if result["applied"] else "; it reaches the instance when it next runs."))
    except DomainError as exc:
        domain_error_message(request, exc)
    return redirect("instances:chat", instance_id=instance_id)
