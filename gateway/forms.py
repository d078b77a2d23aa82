from __future__ import annotations

from django import forms

from orchestrio.forms import json_field_value

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
        return json_field_value(self.cleaned_data[name], kind=kind, what=name)

    def clean_allow(self):
        return self._json("allow", list)

    def clean_config(self):
        return self._json("config", dict)

    def clean_slug(self):
        return self.cleaned_data["slug"] or None
