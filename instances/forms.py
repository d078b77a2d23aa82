from __future__ import annotations

from django import forms
from django.conf import settings

from orchestrio.forms import json_field_value

from .models import InstancePlan, Region
from .selectors import blueprint_visible


IDLE_TIMEOUT_HELP = "Seconds without traffic before it sleeps (the next request wakes it). Empty: the blueprint's; 0: never."


class InstanceCreateForm(forms.Form):
    instance_id = forms.CharField(
        label="Instance id",
        max_length=63,
        help_text="Becomes the hostname: <instance id>." + (settings.BASE_DOMAIN or ""),
    )
    blueprint_name = forms.ChoiceField(label="Blueprint")
    plan_id = forms.ChoiceField(label="Plan")
    region = forms.ChoiceField(label="Region")
    labels = forms.CharField(
        label="Labels", required=False, widget=forms.Textarea(attrs={"rows": 2, "placeholder": "env=prod\nteam=core"}),
        help_text="One key=value per line.",
    )  # fmt: skip
    idle_timeout_seconds = forms.IntegerField(label="Idle timeout (seconds)", required=False, min_value=0, help_text=IDLE_TIMEOUT_HELP)

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["blueprint_name"].choices = [(b.name, b.name + (" (built-in)" if b.is_builtin else "")) for b in blueprint_visible(tenant=tenant)]
        self.fields["blueprint_name"].initial = "OpenClaw"
        self.fields["plan_id"].choices = [
            (p.pk, f"{p.name} — {p.instance_type}, {p.vcpus} vCPU, {p.memory_mib} MiB, ${p.price_per_hour}/h")
            for p in InstancePlan.objects.filter(available=True)
        ]
        self.fields["region"].choices = [(r.pk, f"{r.name} ({r.pk})") for r in Region.objects.all() if r.available]
        self.fields["region"].initial = settings.DEFAULT_REGION

    def clean_labels(self):
        labels = {}
        for number, line in enumerate(self.cleaned_data["labels"].splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise forms.ValidationError(f"line {number}: write key=value")
            labels[key.strip()] = value.strip()
        return labels


class IdleTimeoutForm(forms.Form):
    """An instance's idle timeout (the service checks its range)."""

    idle_timeout_seconds = forms.IntegerField(label="Idle timeout (seconds)", required=False, min_value=0, help_text=IDLE_TIMEOUT_HELP)


class ResizeForm(forms.Form):
    plan_id = forms.ChoiceField(label="New plan")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan_id"].choices = [(p.pk, f"{p.name} ({p.instance_type})") for p in InstancePlan.objects.filter(available=True)]


class ConfigForm(forms.Form):
    config = forms.CharField(widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "mono", "data-editor": "object"}), label="Config")
    apply = forms.BooleanField(required=False, label="Apply to the running instance now")

    def clean_config(self):
        return json_field_value(self.cleaned_data["config"], what="the config")


class MonitoringForm(forms.Form):
    """The Monitoring tab's GET parameters: the stats window and the app log's filters."""

    window = forms.ChoiceField(label="Window", choices=[("1h", "Last hour"), ("24h", "Last 24 hours"), ("30d", "Last 30 days")], required=False)
    q = forms.CharField(label="Search the log", max_length=200, required=False)
    stream = forms.ChoiceField(label="Stream", choices=[("", "stdout and stderr"), ("stdout", "stdout"), ("stderr", "stderr")], required=False)

    def clean_q(self) -> str:
        value = self.cleaned_data["q"]
        if "\x00" in value:
            raise forms.ValidationError("The search cannot contain a NUL character.")
        return value
