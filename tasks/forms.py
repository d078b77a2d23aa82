from __future__ import annotations

from django import forms

from orchestrio.forms import json_field_value


class TaskDispatchForm(forms.Form):
    operation_code = forms.CharField(max_length=64, initial="backup", help_text="A name for this kind of task, e.g. backup_db.")
    script_path = forms.CharField(
        max_length=1024, initial="/opt/orchestrio/scripts/backup.sh",
        widget=forms.TextInput(attrs={"list": "sample-scripts", "class": "mono"}),
        help_text="An absolute path on the instance.",
    )  # fmt: skip
    script_args = forms.CharField(
        label="Arguments (JSON object)", required=False, initial="{}",
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono", "spellcheck": "false"}),
        help_text="Given to the script as JSON on stdin and as --key value arguments.",
    )  # fmt: skip
    timeout_seconds = forms.IntegerField(min_value=1, max_value=3600, initial=600)
    idempotency_key = forms.CharField(max_length=255, required=False, help_text="Optional: the same key never runs twice on this instance.")

    def clean_script_args(self):
        return json_field_value(self.cleaned_data["script_args"], what="the arguments")

    def clean_idempotency_key(self):
        return self.cleaned_data["idempotency_key"] or None
