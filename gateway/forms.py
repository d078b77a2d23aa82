from __future__ import annotations

from django import forms

from orchestrio.forms import json_field_value

from .choices import GatewayProvider


def _json_field(label: str, initial: str, help_text: str, editor: str) -> forms.CharField:
    # The textarea is the field; static/console/editors.js draws rows over it (`data-editor`).
    attrs = {"rows": 3, "class": "mono", "spellcheck": "false", "data-editor": editor}
    return forms.CharField(label=label, required=False, initial=initial, help_text=help_text, widget=forms.Textarea(attrs=attrs))


class PolicyForm(forms.Form):
    provider = forms.ChoiceField(choices=GatewayProvider.choices)
    slug = forms.CharField(required=False, max_length=63, help_text="Empty: the catch-all policy of the tunnel. Else /gateway/<instance>/<slug>.")
    audience = forms.CharField(required=False, max_length=255, help_text="OIDC: the aud your tokens carry.")
    issuer = forms.CharField(required=False, max_length=512, help_text="OIDC: override the provider's issuer (required for generic oidc).")
    allow = _json_field(
        "Allow rules", "[]", 'A caller passes when every condition of one rule matches its token\'s claims (as JSON: an OR-list of AND-rules, e.g. [{"repository": "acme/app"}]). No rules: anyone who authenticates.', "rules"
    )
    config = _json_field("Provider config", "{}", "azure-oidc: tenant; circleci-oidc: org_id; bitbucket-oidc: workspace; terraform-oidc: hostname.", "object")
    enabled = forms.BooleanField(required=False, initial=True)

    def _json(self, name, kind):
        return json_field_value(self.cleaned_data[name], kind=kind, what=name)

    def clean_allow(self):
        return self._json("allow", list)

    def clean_config(self):
        return self._json("config", dict)

    def clean_slug(self):
        return self.cleaned_data["slug"] or None
