from __future__ import annotations

from django import forms

from orchestrio.errors import ValidationFailed
from orchestrio.forms import errors_to_form, json_field_value

from .services import TIMEOUT_MESSAGE, TIMEOUT_RANGE, task_request_errors

RULE_FIELDS = ("operation_code", "script_path", "script_args", "timeout_seconds")


class TaskDispatchForm(forms.Form):
    """The console's task form. One submit shows every problem: the form's own checks (JSON,
    numbers) and the dispatch service's rules (operation code, path under the blueprint's task
    folders, argument names) for the fields that parsed."""

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
    timeout_seconds = forms.IntegerField(
        label="Timeout (seconds)", initial=600, min_value=TIMEOUT_RANGE[0], max_value=TIMEOUT_RANGE[1],
        error_messages={"invalid": "the timeout must be a whole number of seconds", "min_value": TIMEOUT_MESSAGE, "max_value": TIMEOUT_MESSAGE},
    )  # fmt: skip
    idempotency_key = forms.CharField(max_length=255, required=False, help_text="Optional: the same key never runs twice on this instance.")

    def __init__(self, *args, task_roots: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.task_roots = task_roots

    def clean_script_args(self):
        return json_field_value(self.cleaned_data["script_args"], what="the arguments")

    def clean_idempotency_key(self):
        return self.cleaned_data["idempotency_key"] or None

    def clean(self):
        cleaned = super().clean()
        fields = {name: cleaned[name] for name in RULE_FIELDS if name in cleaned and name not in self.errors}
        errors = task_request_errors(roots=self.task_roots, fields=fields)
        if errors:
            errors_to_form(self, ValidationFailed(errors))
        return cleaned
