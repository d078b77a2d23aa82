from __future__ import annotations

import json

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import MinLengthValidator, RegexValidator

from . import jsoninput
from .errors import DomainError, PlanLimitReached, ValidationFailed
from .models import SLUG_MESSAGE, SLUG_PATTERN
from .choices import Role
from .services import INVITATION_MAX_DAYS, TOKEN_EXPIRY_CHOICES


def errors_to_form(form, exc: DomainError) -> None:
    """A service's refusal shown on the console form that asked: a validation error on its field
    (or the form), any other on the form."""
    if isinstance(exc, PlanLimitReached):
        form.plan_limit = exc.extra.get("limit", True)  # templates/console/_form.html adds the upgrade link
    if isinstance(exc, ValidationFailed):
        for error in exc.errors:
            loc = error["loc"][1] if len(error["loc"]) > 1 else None
            form.add_error(loc if loc in form.fields else None, error["msg"])
    else:
        form.add_error(None, exc.detail if isinstance(exc.detail, str) else str(exc))


def json_field_value(raw: str, *, kind: type = dict, what: str = "the value"):
    """A console textarea's JSON: the API parser's rules (orchestrio.jsoninput — valid Unicode, no
    NUL, finite numbers, bounded nesting), and a JSON object (`kind=dict`) or list."""
    try:
        value = jsoninput.loads(raw or ("[]" if kind is list else "{}"), loc=())
    except ValidationFailed as exc:
        first = exc.errors[0]
        if first["type"] == "json_invalid":
            try:
                json.loads(raw)
            except ValueError as parse:  # JSONDecodeError: its reason and where, in the person's terms
                reason = getattr(parse, "msg", str(parse))
                where = f" at line {parse.lineno}, column {parse.colno}" if hasattr(parse, "lineno") else ""
                raise forms.ValidationError(f"this is not valid JSON: {reason[:1].lower()}{reason[1:]}{where}") from None
        where = " → ".join(str(part) for part in first["loc"])
        raise forms.ValidationError(f"this is not valid JSON: {first['msg']}" + (f" (at {where})" if where else "")) from None
    if not isinstance(value, kind):
        raise forms.ValidationError(f"{what} must be a JSON {'list' if kind is list else 'object'}")
    return value


def name_value_lines(raw: str, *, allow_removal: bool) -> dict:
    """`NAME=value` lines (a deployment's secrets, a function's env vars) as a dict; with
    `allow_removal`, `NAME=` stands for removing NAME (None)."""
    values = {}
    for number, line in enumerate((raw or "").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise forms.ValidationError(f"line {number}: write NAME=value" + (" (NAME= removes it)" if allow_removal else ""))
        values[key.strip()] = value if value or not allow_removal else None
    return values


class LoginForm(AuthenticationForm):
    # The field keeps Django's name (`username`: the auth backend's argument); what a person reads says email.
    username = forms.CharField(label="Email", max_length=254, widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an account. Check both and try again.",
    }


class SignupForm(forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), strip=False)
    organization = forms.CharField(label="Organization name", max_length=200)
    tenant_id = forms.CharField(
        label="Tenant id",
        max_length=63,
        validators=[RegexValidator(SLUG_PATTERN, SLUG_MESSAGE), MinLengthValidator(3, SLUG_MESSAGE)],
        help_text="Lowercase letters, digits and hyphens; used in URLs and cannot be changed.",
    )

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if get_user_model().objects.filter(username__iexact=email).exists():
            raise forms.ValidationError("an account with this email exists; log in instead")
        return email

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            user = get_user_model()(username=cleaned.get("email", ""), email=cleaned.get("email", ""))
            try:
                password_validation.validate_password(password, user)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


EXPIRY_CHOICES = [("", "Never")] + [(str(days), f"{days} days") for days in TOKEN_EXPIRY_CHOICES]


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    mode = forms.ChoiceField(choices=[("live", "Live (ork_live_)"), ("test", "Test (ork_test_)")], initial="live")
    expires_in_days = forms.TypedChoiceField(
        label="Expires", choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False, initial="90"
    )
    instance_id = forms.CharField(
        label="Scope to instance",
        required=False,
        max_length=63,
        validators=[RegexValidator(SLUG_PATTERN, SLUG_MESSAGE)],
        help_text="Optional: the token may then only touch this instance.",
    )

    def clean_instance_id(self):
        return self.cleaned_data["instance_id"] or None


class InvitationForm(forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)
    expires_in_days = forms.IntegerField(
        label="Link valid for (days)", min_value=1, max_value=INVITATION_MAX_DAYS, initial=7
    )

    def __init__(self, *args, can_grant_owner: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not can_grant_owner:
            self.fields["role"].choices = [(value, label) for value, label in Role.choices if value != Role.OWNER]


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class InvitationSignupForm(forms.Form):
    """Sign up with the invited email (fixed by the invitation), to accept it."""

    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), strip=False)

    def __init__(self, *args, email: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean_password(self):
        password = self.cleaned_data["password"]
        password_validation.validate_password(password, get_user_model()(username=self.email, email=self.email))
        return password
