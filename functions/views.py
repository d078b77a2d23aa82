"""Console pages for functions: the list (with a form to create one, a code editor, and deploy),
a function's page (its URL, the draft in the editor, deploy, invoke with a sample request and
see the answer, versions with rollback, logs), the API key shown once, and deletion."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from orchestrio.errors import DomainError
from orchestrio.forms import errors_to_form, name_value_lines
from orchestrio.views import console_view, domain_error_message

from . import backends, selectors, services
from .choices import AuthMode, RequestMethod, Runtime
from .invoke import invoke, request_envelope
from .models import Function
from .rules import decrypt_env, host_url, public_url

SAMPLE_PYTHON = '''def handler(request):
    print("hello from", request["path"])
    return {"status": 200, "headers": {"content-type": "text/plain"}, "body": "Hello, world!\\n"}
'''
CODE_ATTRS = {"rows": 14, "class": "mono code-input", "data-code-editor": "", "spellcheck": "false", "autocomplete": "off", "wrap": "off"}


class CreateForm(forms.Form):
    slug = forms.CharField(max_length=63, help_text="Its URL: /fn/<slug>. 3–63 lowercase letters, digits and '-', unique on this installation.")
    runtime = forms.ChoiceField()
    code = forms.CharField(widget=forms.Textarea(attrs=CODE_ATTRS), initial=SAMPLE_PYTHON, strip=False, label="Handler")
    auth_mode = forms.ChoiceField(choices=AuthMode.choices, label="Access", help_text="With an API key, callers send X-Api-Key: <key> (or Authorization: Bearer <key>).")
    idle_timeout_seconds = forms.IntegerField(min_value=10, max_value=86400, initial=300, label="Idle timeout (s)", help_text="Without invocations this long it scales to zero; the next call starts it again.")
    env = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3, "class": "mono", "autocomplete": "off"}), label="Env vars", help_text="NAME=value, one per line. Encrypted at rest.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        offered = backends.get().available_runtimes()
        self.fields["runtime"].choices = [(value, label) for value, label in Runtime.choices if value in offered]

    def clean_env(self):
        return name_value_lines(self.cleaned_data["env"], allow_removal=False)


class DraftForm(forms.Form):
    code = forms.CharField(widget=forms.Textarea(attrs=CODE_ATTRS), strip=False, label="Handler (draft)")
    auth_mode = forms.ChoiceField(choices=AuthMode.choices, label="Access")
    idle_timeout_seconds = forms.IntegerField(min_value=10, max_value=86400, label="Idle timeout (s)")
    env = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "class": "mono", "autocomplete": "off"}), label="Change env vars", help_text="NAME=value sets one; NAME= removes it; others stay as they are.")

    def clean_env(self):
        return name_value_lines(self.cleaned_data["env"], allow_removal=True)


class InvokeForm(forms.Form):
    method = forms.ChoiceField(choices=RequestMethod.choices, initial="GET")
    path = forms.RegexField(r"^/[^\x00-\x1f]*$", max_length=2048, initial="/", error_messages={"invalid": "A path starting with /."})
    headers = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "class": "mono", "autocomplete": "off"}), help_text="name: value, one per line.")
    body = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}))

    def clean_headers(self):
        headers = {}
        for number, line in enumerate((self.cleaned_data["headers"] or "").splitlines(), 1):
            if line.strip():
                name, sep, value = line.partition(":")
                if not sep or not name.strip():
                    raise forms.ValidationError(f"line {number}: write name: value")
                headers[name.strip().lower()] = value.strip()
        return headers


def _function(request, function_id: str, **_) -> Function:
    found = selectors.function_list(tenant=request.principal.tenant).filter(function_id=function_id).first()
    if found is None:
        raise Http404("no such function")
    return found


def _rows(tenant) -> list[dict]:
    functions = list(selectors.function_list(tenant=tenant))
    running = backends.get().running(functions)
    return [{"function": f, "url": public_url(f), "running": f.pk in running} for f in functions]


def _key_page(request, function: Function, key: str):
    response = render(request, "functions/key.html", {"function": function, "api_key": key, "url": public_url(function)})
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
@console_view
def function_list(request):
    tenant = request.principal.tenant
    form = CreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        try:
            function, key = services.function_create(principal=request.principal, runtime_name=data.pop("runtime"), **data)
        except DomainError as exc:
            errors_to_form(form, exc)
        else:
            _deploy_with_message(request, function, rollback_to=None)
            if key:
                return _key_page(request, function, key)
            return redirect("functions:detail", function_id=function.function_id)
    context = {"form": form, "rows": _rows(tenant), "unavailable": backends.get().unavailable_reason(), "limit": tenant.plan.limits["functions"], "max_code_bytes": settings.FUNCTIONS_MAX_CODE_BYTES}
    return render(request, "functions/list.html", context)


def _deploy_with_message(request, function: Function, *, rollback_to: int | None) -> None:
    try:
        version = services.function_deploy(function=function, actor=request.principal.actor, rollback_to=rollback_to)
    except DomainError as exc:
        domain_error_message(request, exc)
        return
    if version.status == "built":
        messages.success(request, f"Version {version.number} is live ({version.start_ms} ms to start).")
    elif version.status == "building":
        messages.info(request, f"Version {version.number} is being deployed on the function instance; this page shows when it is live.")
    else:
        messages.error(request, f"Version {version.number} failed to deploy; {'the previous version keeps serving' if function.current_version_id else 'nothing is deployed'}. See its error below.")


def _context(request, function: Function, **extra) -> dict:
    versions = list(function.versions.order_by("-number")[:50])
    on = backends.get()
    return {
        "function": function, "url": public_url(function), "host_url": host_url(function), "versions": versions,
        "env_names": sorted(decrypt_env(function.env_encrypted)),
        "running": function.pk in on.running([function]), "host": on.host_of(function),
        "logs": on.read_log(function, tail=200), "unavailable": on.unavailable_reason(), "flush_seconds": settings.FUNCTIONS_METRICS_FLUSH_SECONDS, **extra,
    }  # fmt: skip


@require_http_methods(["GET", "POST"])
@console_view
def function_detail(request, function_id: str):
    function = _function(request, function_id)
    initial = {"code": function.code, "auth_mode": function.auth_mode, "idle_timeout_seconds": function.idle_timeout_seconds}
    form = DraftForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = {key: value for key, value in form.cleaned_data.items() if key != "env"}
        if form.cleaned_data["env"]:
            data["env"] = form.cleaned_data["env"]
        try:
            function, key = services.function_update(function=function, actor=request.principal.actor, data=data)
        except DomainError as exc:
            errors_to_form(form, exc)
        else:
            if key:
                return _key_page(request, function, key)
            messages.success(request, "Draft saved: deploy it to make it live.")
            return redirect("functions:detail", function_id=function.function_id)
    return render(request, "functions/detail.html", _context(request, function, form=form, invoke_form=InvokeForm()))


@require_GET
@console_view
def function_detail_live(request, function_id: str):
    """The page's live part (status, versions, logs), for static/console/live.js."""
    return render(request, "functions/_detail_live.html", _context(request, _function(request, function_id)))


@require_POST
@console_view
def function_deploy(request, function_id: str):
    function = _function(request, function_id)
    raw = request.POST.get("version", "").strip()
    if raw and not raw.isdigit():
        messages.error(request, "Choose a version to roll back to.")
        return redirect("functions:detail", function_id=function.function_id)
    _deploy_with_message(request, function, rollback_to=int(raw) if raw else None)
    return redirect("functions:detail", function_id=function.function_id)


@require_POST
@console_view
def function_invoke(request, function_id: str):
    function = _function(request, function_id)
    invoke_form = InvokeForm(request.POST)
    result = error = None
    if invoke_form.is_valid():
        data = invoke_form.cleaned_data
        path, _, query_string = data["path"].partition("?")
        from urllib.parse import parse_qsl  # noqa: PLC0415 - this view only

        query = dict(parse_qsl(query_string))
        envelope = request_envelope(method=data["method"], path=path, query=query, query_string=query_string, headers=data["headers"], body=data["body"].encode("utf-8"))
        try:
            result = invoke(function, envelope, plan=request.principal.tenant.plan)
        except DomainError as exc:
            error = f"{exc.status_code}: {exc}"
    function = _function(request, function_id)  # its counters and running state after the call
    initial = {"code": function.code, "auth_mode": function.auth_mode, "idle_timeout_seconds": function.idle_timeout_seconds}
    body = result.body.decode("utf-8", "replace") if result else ""
    context = _context(request, function, form=DraftForm(initial=initial), invoke_form=invoke_form, result=result, result_body=body, invoke_error=error)
    return render(request, "functions/detail.html", context)


@require_POST
@console_view(capabilities="tokens", objects=_function)
def function_rotate_key(request, function_id: str):
    function = _function(request, function_id)
    try:
        function, key = services.function_rotate_api_key(function=function, actor=request.principal.actor)
    except DomainError as exc:
        domain_error_message(request, exc)
        return redirect("functions:detail", function_id=function.function_id)
    return _key_page(request, function, key)


@require_POST
@console_view(capabilities="destroy", objects=_function)
def function_delete(request, function_id: str):
    function = _function(request, function_id)
    if request.POST.get("confirm", "").strip() != function.slug:
        messages.error(request, f"Type {function.slug} to delete it.")
        return redirect("functions:detail", function_id=function.function_id)
    services.function_delete(function=function, actor=request.principal.actor)
    messages.success(request, f"Function {function.slug} deleted.")
    return redirect("functions:list")
