from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orchestrio.api.fields import BlankAsNullCharField
from orchestrio.api.strict import BodySerializer

from ..services import dns_records


class CustomDomainRequestSerializer(BodySerializer):
    domain = serializers.CharField(max_length=300)


class DnsRecordSerializer(serializers.Serializer):
    type = serializers.CharField()
    name = serializers.CharField()
    value = serializers.CharField()
    purpose = serializers.CharField()


class CustomDomainSerializer(serializers.Serializer):
    domain = serializers.CharField()
    status = serializers.CharField()
    dns_records = serializers.SerializerMethodField()
    error = BlankAsNullCharField()
    resolved = serializers.DictField(help_text="What the last check found in DNS.")
    last_checked_at = serializers.DateTimeField(allow_null=True)
    next_check_at = serializers.DateTimeField(allow_null=True)
    activated_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()

    @extend_schema_field(DnsRecordSerializer(many=True))
    def get_dns_records(self, domain):
        return DnsRecordSerializer(dns_records(domain=domain), many=True).data
