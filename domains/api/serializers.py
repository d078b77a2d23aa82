from __future__ import annotations

from rest_framework import serializers

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
    dns_records = DnsRecordSerializer(many=True)
    error = serializers.CharField(allow_null=True)
    resolved = serializers.DictField(help_text="What the last check found in DNS.")
    last_checked_at = serializers.DateTimeField(allow_null=True)
    next_check_at = serializers.DateTimeField(allow_null=True)
    activated_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()

    def to_representation(self, domain):
        return super().to_representation(
            {
                "domain": domain.domain, "status": domain.status, "dns_records": dns_records(domain), "error": domain.error or None,
                "resolved": domain.resolved or {}, "last_checked_at": domain.last_checked_at, "next_check_at": domain.next_check_at,
                "activated_at": domain.activated_at, "updated_at": domain.updated_at,
            }
        )  # fmt: skip
