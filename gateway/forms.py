from __future__ import annotations

import json

from django import forms

from .choices import GatewayProvider


def _json_field(label: str, initial: str, help_text: str) -> forms.CharField:
    return forms.CharField(label=label, required=False, initial=initial, help_text=help_text, widget=forms.Textarea(attrs={"rows": 3, "class": "mono", "spellcheck": "false"}))


class PolicyForm(forms.Form):
    provider = forms.ChoiceField(choices=GatewayProvider.choices)
    slug = forms.CharField(required=False, max_length=63, help_text="Empty: the catch-all policy of the tunnel. Else /gateway/<instance>/<slug>.")
    audience = forms.CharField(required=False, max_length=255, help_text="OIDC: the aud your tokens carry.")
    issuer = forms.CharField(required=False, max_length=512, help_text="OIDC: override the provider's issuer (required for generic oidc).")
    allow = _json_field("Allow rules (JSON)", "[]", 'OR-list of AND-rules, e.g. [{"repository": "acme/app"}]. Empty: anyone who authenticates.')
    config = _json_field("Provider config (JSON)", "{}", 'azure-oidc: {"tenant"}; circleci-oidc: {"org_id"}; bitbucket-oidc: {"workspace"}; terraform-oidc: {"hostname"}.')
    enabled = forms.BooleanField(required=False, initial=True)

    def _json(self, name, kind):
        raw = self.cleaned_data[name] or ("[]" if kind is list else "{}")
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from exc
        if not isinstance(value, kind):
            raise forms.ValidationError(f"must be a JSON {'list' if kind is list else 'object'}")
        return value

    def clean_allow(self):
        return self._json("allow", list)

    def clean_config(self):
        return self._json("config", dict)

    def clean_slug(self):
        return self.cleaned_data["slug"] or None
