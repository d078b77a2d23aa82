from __future__ import annotations

from rest_framework import serializers

from orchestrio.api.strict import BodySerializer

from ..choices import CHAT_MAX_CHARS, CONVERSATION_ID_PATTERN, CONVERSATIONS_LIMIT_MAX, MAX_TOKENS_PER_DAY
from ..models import MODEL_ID_PATTERN, LanguageModel


class ChatRequestSerializer(BodySerializer):
    message = serializers.CharField(min_length=1, max_length=CHAT_MAX_CHARS, trim_whitespace=False, help_text="1–8000 characters of valid Unicode.")
    conversation_id = serializers.RegexField(CONVERSATION_ID_PATTERN, required=False, help_text="Go on with this conversation (a new one when omitted).")
    user = serializers.CharField(max_length=256, required=False, help_text="The end user's id in your product: counted (hashed) in unique end users.")
    model = serializers.RegexField(MODEL_ID_PATTERN, max_length=100, required=False, help_text="A model of the instance's policy (its default when omitted).")


class ChatReplySerializer(serializers.Serializer):
    conversation_id = serializers.CharField()
    model = serializers.CharField()
    skill = serializers.CharField(help_text="What answered: a configured skill's name, `echo`, or `app` (the instance's own program).")
    reply = serializers.CharField()
    tokens_in = serializers.IntegerField(help_text="The message's tokens: one per 4 characters, rounded up (docs/agent.md).")
    tokens_out = serializers.IntegerField(help_text="The reply's tokens, counted the same way.")
    at = serializers.CharField()


class ModelNotAllowedSerializer(serializers.Serializer):
    detail = serializers.ListField(child=serializers.DictField())
    allowed_models = serializers.ListField(child=serializers.CharField(), required=False, help_text="When the model is outside the policy: the ones it allows.")


class ConsentSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    debug_access = serializers.BooleanField()
    changed_at = serializers.DateTimeField(allow_null=True)
    changed_by = serializers.CharField(help_text="Who last changed it (empty: never set).")


class ConsentUpdateSerializer(BodySerializer):
    debug_access = serializers.BooleanField(help_text="Whether the instance's conversations may be read through its agent.")


class ConversationQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=CONVERSATIONS_LIMIT_MAX, default=20)


class ConversationSummarySerializer(serializers.Serializer):
    id = serializers.CharField()
    created_at = serializers.CharField(allow_null=True)
    updated_at = serializers.CharField(allow_null=True)
    messages = serializers.IntegerField()
    preview = serializers.CharField(allow_blank=True)


class ConversationListSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    count = serializers.IntegerField(help_text="The instance's conversations in all (at most the agent keeps: 200).")
    results = ConversationSummarySerializer(many=True)


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["user", "assistant"])
    content = serializers.CharField(allow_blank=True)
    at = serializers.CharField()
    tokens = serializers.IntegerField()
    model = serializers.CharField(required=False)
    skill = serializers.CharField(required=False)
    user = serializers.CharField(required=False, allow_null=True, help_text="The end user's hash, never the id you sent.")


class ConversationSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    id = serializers.CharField()
    created_at = serializers.CharField(allow_null=True)
    updated_at = serializers.CharField(allow_null=True)
    messages = MessageSerializer(many=True)


class ModelPolicySerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    allowed_models = serializers.ListField(child=serializers.CharField())
    default_model = serializers.CharField(allow_null=True)
    max_tokens_per_day = serializers.IntegerField(allow_null=True)


class ModelPolicyResultSerializer(ModelPolicySerializer):
    applied = serializers.BooleanField(help_text="Pushed to the running instance's agent now.")
    apply_error = serializers.CharField(allow_null=True, help_text="Why the push failed (the policy is stored; the next apply or start pushes it).")


class ModelPolicyUpdateSerializer(BodySerializer):
    allowed_models = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1, max_length=50)
    default_model = serializers.CharField(max_length=100, required=False, allow_null=True, help_text="One of allowed_models (the first when omitted).")
    max_tokens_per_day = serializers.IntegerField(min_value=1, max_value=MAX_TOKENS_PER_DAY, required=False, allow_null=True, help_text="Tokens in and out per UTC day; null: no budget.")


class LanguageModelSerializer(serializers.ModelSerializer):
    price_in_per_1k = serializers.DecimalField(max_digits=12, decimal_places=6, coerce_to_string=True)
    price_out_per_1k = serializers.DecimalField(max_digits=12, decimal_places=6, coerce_to_string=True)

    class Meta:
        model = LanguageModel
        fields = ["id", "name", "price_in_per_1k", "price_out_per_1k"]
        read_only_fields = fields
