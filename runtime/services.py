"""The agent runtime's operations: chat through the instance's agent, the debug consent, reading
conversations behind it, the model policy, and collecting the agents' usage counters.

Nothing here holds a row lock across the network: a chat or a conversation read talks to the
agent with no transaction open; the usage collector reads every agent first, then applies what it
read, one row at a time under its lock."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from types import SimpleNamespace

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gateway import traffic, wake
from instances.agent_client import AgentError, AgentTimeout, AgentUnreachable, agent_client_for
from instances.choices import InstanceState
from instances.models import Instance
from instances.services import instance_config_apply, instance_config_update
from orchestrio.errors import DomainError, Forbidden, InvalidState, NotFound, TooManyRequests, UpstreamError, UpstreamTimeout, ValidationFailed
from orchestrio.services import activity_record
from orchestrio.tenancy import Actor

from .choices import MAX_TOKENS_PER_DAY, POLICY_CONFIG_KEY
from .models import AgentUsage, InstanceRuntime
from .selectors import catalogue, consent_get, model_policy_get

logger = logging.getLogger(__name__)
COUNTERS = ("requests", "tokens_in", "tokens_out")


class ModelNotAllowed(ValidationFailed):
    """The agent refused the chat's model: 422 with the policy's allowed list."""

    def __init__(self, detail: str, allowed: list[str]) -> None:
        super().__init__([{"loc": ["body", "model"], "msg": detail, "type": "model_not_allowed"}])
        self.allowed = allowed

    def body(self) -> dict:
        return {**super().body(), "allowed_models": self.allowed}


# What the agent's answers must hold (it runs on the tenant's machine: its answers are input).
EXCHANGE = {"conversation_id": str, "model": str, "skill": str, "reply": str, "tokens_in": int, "tokens_out": int, "at": str}
SUMMARY = {"id": str, "messages": int, "preview": str}
MESSAGE = {"role": str, "content": str, "at": str, "tokens": int}


def _well_formed(value, shape: dict) -> bool:
    return isinstance(value, dict) and all(isinstance(value.get(key), kind) and not isinstance(value.get(key), bool) for key, kind in shape.items())


def _require_running(instance: Instance, what: str) -> None:
    if instance.state != InstanceState.RUNNING:
        raise InvalidState(f"{what} needs the instance running; {instance.instance_id} is {instance.state}")


def _chat_ready(instance: Instance, principal_key: str) -> Instance:
    """A chat is traffic to the instance (the idle sweep counts it), and one to an asleep
    instance wakes it, as a proxied request does (gateway.wake: the same wake and wait, 504 after
    INSTANCE_WAKE_WAIT_SECONDS); its address is read again after a wake."""
    if instance.state in wake.ASLEEP_OR_ON_THE_WAY:
        wake.wake_for_request(instance, SimpleNamespace(ratelimit_key=f"chat:{principal_key}"))
        instance = Instance.objects.select_related("blueprint").get(pk=instance.pk)
    _require_running(instance, "chat")
    traffic.note_start(instance.pk)
    return instance


def _agent_failure(exc: Exception, what: str) -> DomainError:
    """The agent's answer as the API's error: its refusals as they are (422, 429 with Retry-After),
    anything else from the instance as the gateway maps it (no answer in time: 504, else 502)."""
    if isinstance(exc, AgentTimeout):
        return UpstreamTimeout(f"the instance did not answer the {what} in time")
    if isinstance(exc, AgentError):
        if exc.status_code == 422 and isinstance(exc.body.get("allowed_models"), list):
            return ModelNotAllowed(exc.detail, [str(m) for m in exc.body["allowed_models"]])
        if exc.status_code == 422:
            return ValidationFailed(exc.detail)
        if exc.status_code == 429:
            retry = exc.headers.get("Retry-After", "")
            return TooManyRequests(exc.detail, retry_after=int(retry) if retry.isdigit() else 60)
        if exc.status_code == 504:
            return UpstreamTimeout(f"the instance did not answer the {what} in time: {exc.detail}")
        if exc.status_code == 404:
            return NotFound(exc.detail)
    return UpstreamError(f"the instance did not answer the {what}: {exc}")


def _chat_body(*, message: str, conversation_id: str | None, user: str | None, model: str | None) -> dict:
    return {key: value for key, value in {"message": message, "conversation_id": conversation_id, "user": user, "model": model}.items() if value is not None}


def chat_send(*, instance: Instance, message: str, conversation_id: str | None = None, user: str | None = None, model: str | None = None, principal_key: str = "") -> dict:
    """One exchange with the instance's agent runtime: its reply, the conversation and token counts."""
    instance = _chat_ready(instance, principal_key)
    body = _chat_body(message=message, conversation_id=conversation_id, user=user, model=model)
    try:
        exchange = agent_client_for(instance).chat(body, timeout=settings.CHAT_TIMEOUT_SECONDS)
    except (AgentError, AgentTimeout, AgentUnreachable) as exc:
        raise _agent_failure(exc, "chat") from exc
    if not _well_formed(exchange, EXCHANGE):
        raise UpstreamError("the instance answered the chat in an unexpected shape")
    return exchange


@contextmanager
def chat_stream(*, instance: Instance, message: str, conversation_id: str | None = None, user: str | None = None, model: str | None = None, principal_key: str = ""):
    """The agent's server-sent events for one exchange (`delta` … `done`), as they come: yields an
    iterator of bytes. A refusal or a failure before the first byte raises the mapped error."""
    instance = _chat_ready(instance, principal_key)
    body = _chat_body(message=message, conversation_id=conversation_id, user=user, model=model)
    try:
        with agent_client_for(instance).stream("POST", "/chat", json=body, headers={"Accept": "text/event-stream"}, timeout=settings.CHAT_TIMEOUT_SECONDS) as response:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                raise UpstreamError("the instance answered the chat without an event stream")
            yield _checked_events(response.iter_lines())
    except (AgentError, AgentTimeout, AgentUnreachable) as exc:
        raise _agent_failure(exc, "chat") from exc


def _sse(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _checked_events(lines):
    """The agent's events, each parsed and written anew: only `delta {text}` and a well-formed
    `done` pass; anything else ends the stream with an `error` event (nothing of the instance's
    bytes reaches the caller unchecked)."""
    name, data = "message", ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif line == "" and data:
            try:
                value = json.loads(data)
            except ValueError:
                value = None
            if name == "delta" and isinstance(value, dict) and isinstance(value.get("text"), str):
                yield _sse("delta", {"text": value["text"]})
            elif name == "done" and _well_formed(value, EXCHANGE):
                yield _sse("done", {key: value[key] for key in EXCHANGE})
                return
            else:
                yield _sse("error", {"detail": "the instance's chat stream held something other than its events"})
                return
            name, data = "message", ""
    yield _sse("error", {"detail": "the instance's chat stream ended before its reply was done"})


@transaction.atomic
def consent_update(*, instance: Instance, debug_access: bool, actor: Actor) -> InstanceRuntime:
    """Turn the instance's debug consent on or off; each change is audited (who and when)."""
    row, _ = InstanceRuntime.objects.select_for_update().get_or_create(instance=instance)
    if row.debug_access == debug_access:
        return row
    row.debug_access, row.debug_access_changed_at, row.debug_access_changed_by = debug_access, timezone.now(), actor.label
    row.save(update_fields=["debug_access", "debug_access_changed_at", "debug_access_changed_by"])
    activity_record(
        actor=actor, action="instance.consent.grant" if debug_access else "instance.consent.revoke", tenant=instance.tenant_id,
        object_type="instance", object_id=instance.instance_id, data={"debug_access": debug_access},
    )  # fmt: skip
    return row


def _conversation_gate(instance: Instance) -> None:
    if not consent_get(instance=instance).debug_access:
        raise Forbidden(
            f"debug consent is off for {instance.instance_id}: its conversations are readable only while the tenant grants it "
            f"(PATCH /api/v1/instances/{instance.instance_id}/consent {{\"debug_access\": true}}, by its owner or an admin)"
        )
    _require_running(instance, "reading conversations")


def conversations_read(*, instance: Instance, conversation_id: str | None = None, limit: int = 20, staff: Actor | None = None) -> dict:
    """The instance's conversations (or one of them), read through its agent, only while debug
    consent is on. A support staff read (`staff`) is audited: the tenant sees it in its activity."""
    _conversation_gate(instance)
    client = agent_client_for(instance)
    try:
        body = client.conversation(conversation_id) if conversation_id is not None else client.conversations(limit=limit)
    except (AgentError, AgentTimeout, AgentUnreachable) as exc:
        raise _agent_failure(exc, "conversation read") from exc
    items, shape = (body.get("messages"), MESSAGE) if conversation_id is not None and isinstance(body, dict) else (body.get("results") if isinstance(body, dict) else None, SUMMARY)
    if not isinstance(items, list) or not all(_well_formed(item, shape) for item in items) or (conversation_id is not None and not isinstance(body.get("id"), str)):
        raise UpstreamError("the instance answered its conversations in an unexpected shape")
    if conversation_id is not None and any(m["role"] not in ("user", "assistant") for m in items):
        raise UpstreamError("the instance answered its conversations in an unexpected shape")
    if conversation_id is not None:
        body = {"id": body["id"], "created_at": body.get("created_at"), "updated_at": body.get("updated_at"), "messages": items}
    else:
        body = {"count": body["count"] if isinstance(body.get("count"), int) else len(items), "results": items}
    if staff is not None:
        activity_record(
            actor=staff, action="instance.conversations.staff_read", tenant=instance.tenant_id, object_type="instance",
            object_id=instance.instance_id, data={"conversation_id": conversation_id} if conversation_id else {"list": True},
        )  # fmt: skip
    return body


def _policy_errors(*, allowed_models, default_model, max_tokens_per_day) -> list[dict]:
    known = set(catalogue().values_list("id", flat=True))
    errors = []
    if not allowed_models:
        errors.append({"loc": ["body", "allowed_models"], "msg": "name at least one model of the catalogue", "type": "value_error"})
    if len(set(allowed_models)) != len(allowed_models):
        errors.append({"loc": ["body", "allowed_models"], "msg": "each model once", "type": "value_error"})
    for index, model in enumerate(allowed_models):
        if model not in known:
            errors.append({"loc": ["body", "allowed_models", index], "msg": f"{model!r} is not in the model catalogue (GET /api/v1/models)", "type": "value_error"})
    if default_model is not None and default_model not in allowed_models:
        errors.append({"loc": ["body", "default_model"], "msg": "the default model must be one of allowed_models", "type": "value_error"})
    if max_tokens_per_day is not None and not 1 <= max_tokens_per_day <= MAX_TOKENS_PER_DAY:
        errors.append({"loc": ["body", "max_tokens_per_day"], "msg": f"from 1 to {MAX_TOKENS_PER_DAY}, or null for no budget", "type": "value_error"})
    return errors


def model_policy_set(*, instance: Instance, allowed_models: list[str], default_model: str | None, max_tokens_per_day: int | None, actor: Actor) -> dict:
    """Validate the policy against the catalogue, store it in the instance's config (where the
    agent reads it) and push the config to the running instance."""
    errors = _policy_errors(allowed_models=allowed_models, default_model=default_model, max_tokens_per_day=max_tokens_per_day)
    if errors:
        raise ValidationFailed(errors)
    policy = {"allowed_models": allowed_models, "default_model": default_model or allowed_models[0], "max_tokens_per_day": max_tokens_per_day}
    with transaction.atomic():
        # A merge patch of the whole policy: `None` (no budget) removes that key.
        instance = instance_config_update(instance=instance, patch={POLICY_CONFIG_KEY: {**policy}}, actor=actor, managed=True)
        activity_record(actor=actor, action="instance.model_policy.update", tenant=instance.tenant_id, object_type="instance", object_id=instance.instance_id, data=policy)
    result = {**model_policy_get(instance=instance), "applied": False, "apply_error": None}
    if instance.state == InstanceState.RUNNING:
        try:
            instance_config_apply(instance=instance, actor=actor)
            result["applied"] = True
        except DomainError as exc:
            result["apply_error"] = exc.detail  # stored; the next apply or start pushes it
    return result


# --- usage -------------------------------------------------------------------------------------


def usage_apply(*, instance: Instance, report: dict) -> int:
    """Add what the agent's cumulative counters grew by since the last read (rows locked one at a
    time; a read older than one already applied adds nothing). Returns the requests added."""
    epoch, added = str(report.get("epoch") or ""), 0
    days = report.get("days") if isinstance(report.get("days"), dict) else {}
    # One read of what was seen: only rows whose counters grew are locked and written (an agent
    # reports every day it keeps, and all but today's are usually unchanged).
    known = {(row.day, row.model): row for row in AgentUsage.objects.filter(instance=instance).only("day", "model", "epoch", "seen")}
    for day_text, counts in days.items():
        try:
            day = date.fromisoformat(day_text)
        except (TypeError, ValueError):
            continue
        if not isinstance(counts, dict):
            continue
        parts = {"": {"end_users": counts.get("user_count", 0)}}
        for model, per_model in (counts.get("models") or {}).items():
            if isinstance(model, str) and isinstance(per_model, dict) and len(model) <= 100:
                parts[model] = {name: per_model.get(name, 0) for name in COUNTERS}
        for model, values in parts.items():
            values = {name: value for name, value in values.items() if isinstance(value, int) and value >= 0}
            seen = known.get((day, model))
            if seen is not None and seen.epoch == epoch and all(value <= int(seen.seen.get(name, 0)) for name, value in values.items()):
                continue
            added += _usage_row_apply(instance=instance, day=day, model=model, epoch=epoch, values=values).get("requests", 0)
    return added


@transaction.atomic
def _usage_row_apply(*, instance: Instance, day: date, model: str, epoch: str, values: dict) -> dict:
    row, _ = AgentUsage.objects.select_for_update().get_or_create(instance=instance, day=day, model=model, defaults={"tenant_id": instance.tenant_id, "epoch": epoch})
    seen = row.seen if row.epoch == epoch else {}  # a new epoch: the agent's counters began anew
    deltas = {name: max(value - int(seen.get(name, 0)), 0) for name, value in values.items()}
    if not any(deltas.values()) and row.epoch == epoch:
        return deltas
    for name, delta in deltas.items():
        setattr(row, name, getattr(row, name) + delta)
    row.seen = {**seen, **{name: max(value, int(seen.get(name, 0))) for name, value in values.items()}}
    row.epoch = epoch
    row.save(update_fields=[*deltas, "seen", "epoch", "updated_at"])
    return deltas


def usage_collect(*, instances=None) -> dict:
    """Read every running instance's agent usage (concurrently, bounded, short timeouts) and apply
    it: the periodic metering job (runtime.jobs.collect_agent_usage)."""
    if instances is None:
        instances = list(Instance.objects.filter(state=InstanceState.RUNNING, destroyed_at__isnull=True).select_related("blueprint"))

    def ask(instance):
        try:
            return instance, agent_client_for(instance, timeout=settings.AGENT_USAGE_TIMEOUT_SECONDS).usage(timeout=settings.AGENT_USAGE_TIMEOUT_SECONDS)
        except (AgentError, AgentTimeout, AgentUnreachable) as exc:
            return instance, str(exc)

    summary = {"instances": 0, "requests": 0, "unreachable": 0}
    if not instances:
        return summary
    with ThreadPoolExecutor(max_workers=max(1, min(settings.AGENT_USAGE_CONCURRENCY, len(instances)))) as pool:
        answers = list(pool.map(ask, instances))
    for instance, report in answers:
        if not isinstance(report, dict):
            summary["unreachable"] += 1
            logger.info("agent usage of %s not read: %s", instance.instance_id, report)
            continue
        summary["instances"] += 1
        summary["requests"] += usage_apply(instance=instance, report=report)
    return summary
