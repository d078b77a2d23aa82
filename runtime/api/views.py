from __future__ import annotations

import threading
from contextlib import ExitStack, contextmanager

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import action
from rest_framework.generics import ListAPIView
from rest_framework.response import Response

from instances.api.applogs import RENEW_SECONDS, EventStreamRenderer
from instances.api.views import InstanceScopedViewSet
from orchestrio.api.exceptions import QueryValidationError
from orchestrio.api.renderers import JSONRenderer
from orchestrio.api.schema import ERR_400, ERR_403, ERR_502, ERR_504, ErrorSerializer
from orchestrio.api.viewsets import TenantApiView, idempotent
from orchestrio.longpoll import long_poll_slot

from .. import selectors, services
from . import serializers as s

CHAT_EVENT_SCHEMA = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "enum": ["delta", "done", "error"]},
        "data": {"type": "string", "description": "One JSON object: delta {text}; done {the exchange, as the JSON answer}; error {detail}."},
    },
}
ERR_422_MODEL = OpenApiResponse(s.ModelNotAllowedSerializer, description="The body fails validation, or the model is outside the instance's policy (with `allowed_models`).")
ERR_429_CHAT = OpenApiResponse(ErrorSerializer, description="Rate limit, the instance's daily token budget is used up (Retry-After: the next 00:00 UTC), or too many open streams.")


@contextmanager
def _chat_slot(principal, kind: str):
    """A long-poll slot for as long as the chat runs, its lease renewed from a thread: the request's
    own thread is blocked on the instance (up to CHAT_TIMEOUT_SECONDS, longer than a lease)."""
    with long_poll_slot(principal, kind) as held:
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(RENEW_SECONDS):
                held.renew()

        threading.Thread(target=renew, name="chat-slot-renew", daemon=True).start()
        try:
            yield held
        finally:
            stop.set()


def _consent(instance) -> dict:
    row = selectors.consent_get(instance=instance)
    return {"instance_id": instance.instance_id, "debug_access": row.debug_access, "changed_at": row.debug_access_changed_at, "changed_by": row.debug_access_changed_by}


def _stream(chunks, on_close):
    """The agent's events as checked (services._checked_events); a failure after the first byte ends with an `error` event."""
    try:
        yield from chunks
    except Exception as exc:  # the status is sent: the one place left to say what happened
        yield f"event: error\ndata: {{\"detail\": \"the instance's stream broke off ({type(exc).__name__})\"}}\n\n".encode()
    finally:
        on_close()


@extend_schema(tags=["instances"])
class InstanceRuntimeViewSet(InstanceScopedViewSet):
    """`instances/{instance_id}/chat|consent|conversations|model-policy`: the agent runtime."""

    serializer_class = s.ConsentSerializer
    allows_scoped_tokens = {"chat", "consent", "conversations", "conversation", "model_policy"}
    capabilities = {"chat": "operate", "consent": {"PATCH": "debug"}, "conversations": "debug", "conversation": "debug"}

    def finalize_response(self, request, response, *args, **kwargs):
        """An error is JSON (API.md's body), also for a caller that asked for the event stream."""
        if isinstance(response, Response) and response.status_code >= 400 and getattr(request, "accepted_renderer", None) is not None:
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        summary="Chat with the instance's agent runtime; `Accept: text/event-stream` streams the reply",
        request=s.ChatRequestSerializer,
        responses={
            (200, "application/json"): s.ChatReplySerializer,
            (200, "text/event-stream"): OpenApiResponse(CHAT_EVENT_SCHEMA, description="`event: delta` (a piece of the reply) …, then `event: done` with the exchange (docs/agent.md)"),
            400: ERR_400, 422: ERR_422_MODEL, 429: ERR_429_CHAT, 502: ERR_502, 504: ERR_504,
        },
    )  # fmt: skip
    @action(detail=True, methods=["post"], url_path="chat", renderer_classes=[JSONRenderer, EventStreamRenderer])
    @idempotent
    def chat(self, request, instance_id=None):
        instance = self.get_object()  # another tenant's instance is 404 before anything about the body
        body = s.ChatRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        # A chat holds a thread until the instance answers (up to CHAT_TIMEOUT_SECONDS): it counts
        # against the long-poll caps, as streams and waits do (docs/security.md).
        if "text/event-stream" not in request.headers.get("Accept", ""):
            with _chat_slot(self.principal, "chat"):
                exchange = services.chat_send(instance=instance, principal_key=self.principal.key, **body.validated_data)
            return Response(s.ChatReplySerializer(exchange).data)
        slot = ExitStack()
        slot.enter_context(_chat_slot(self.principal, "chat stream"))
        try:
            chunks = slot.enter_context(services.chat_stream(instance=instance, principal_key=self.principal.key, **body.validated_data))
        except BaseException:
            slot.close()
            raise
        response = StreamingHttpResponse(_stream(chunks, slot.close), content_type="text/event-stream")
        response["Cache-Control"] = "no-store"
        response["X-Accel-Buffering"] = "no"
        # Words from the instance: never a document of the console's origin (docs/security.md).
        response["Content-Security-Policy"] = "sandbox"
        response["X-Content-Type-Options"] = "nosniff"
        return response

    @extend_schema(methods=["GET"], summary="The instance's debug consent", responses={200: s.ConsentSerializer})
    @extend_schema(methods=["PATCH"], summary="Grant or revoke debug consent (owner or admin; audited)", request=s.ConsentUpdateSerializer, responses={200: s.ConsentSerializer, 403: ERR_403})
    @action(detail=True, methods=["get", "patch"], url_path="consent")
    def consent(self, request, instance_id=None):
        instance = self.get_object()
        if request.method == "PATCH":
            body = s.ConsentUpdateSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            services.consent_update(instance=instance, debug_access=body.validated_data["debug_access"], actor=self.principal.actor)
        return Response(s.ConsentSerializer(_consent(instance)).data)

    @extend_schema(
        operation_id="instances_conversations_list",
        summary="The instance's conversations, newest first, read through its agent while debug consent is on",
        parameters=[s.ConversationQuerySerializer],
        responses={200: s.ConversationListSerializer, 400: ERR_400, 403: ERR_403, 502: ERR_502, 504: ERR_504},
    )
    @action(detail=True, methods=["get"], url_path="conversations")
    def conversations(self, request, instance_id=None):
        instance = self.get_object()
        query = s.ConversationQuerySerializer(data=request.query_params)
        if not query.is_valid():
            raise QueryValidationError(query.errors)
        body = services.conversations_read(instance=instance, limit=query.validated_data["limit"])
        return Response(s.ConversationListSerializer({**body, "instance_id": instance.instance_id}).data)

    @extend_schema(
        operation_id="instances_conversation_retrieve",
        summary="One conversation, read through the agent while debug consent is on",
        responses={200: s.ConversationSerializer, 400: ERR_400, 403: ERR_403, 502: ERR_502, 504: ERR_504},
    )
    @action(detail=True, methods=["get"], url_path=r"conversations/(?P<cid>[A-Za-z0-9:_-]{1,128})")
    def conversation(self, request, instance_id=None, cid=None):
        instance = self.get_object()
        body = services.conversations_read(instance=instance, conversation_id=cid)
        return Response(s.ConversationSerializer({**body, "instance_id": instance.instance_id}).data)

    @extend_schema(methods=["GET"], summary="The instance's model policy", responses={200: s.ModelPolicySerializer})
    @extend_schema(
        methods=["PUT"], summary="Replace the model policy (validated against the model catalogue) and push it to the running agent",
        request=s.ModelPolicyUpdateSerializer, responses={200: s.ModelPolicyResultSerializer},
    )  # fmt: skip
    @action(detail=True, methods=["get", "put"], url_path="model-policy")
    def model_policy(self, request, instance_id=None):
        instance = self.get_object()
        if request.method == "GET":
            return Response(s.ModelPolicySerializer(selectors.model_policy_get(instance=instance)).data)
        body = s.ModelPolicyUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result = services.model_policy_set(
            instance=instance, allowed_models=data["allowed_models"], default_model=data.get("default_model"),
            max_tokens_per_day=data.get("max_tokens_per_day"), actor=self.principal.actor,
        )  # fmt: skip
        return Response(s.ModelPolicyResultSerializer(result).data)


class LanguageModelListView(TenantApiView, ListAPIView):
    serializer_class = s.LanguageModelSerializer
    queryset = selectors.catalogue()
    filter_backends: list = []

    @extend_schema(operation_id="models_list", summary="The model catalogue: models a policy may allow, with prices per 1k tokens", tags=["catalogue"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
