"""Serializer fields the API's output serializers share."""

from __future__ import annotations

from rest_framework import serializers


class BlankAsNullCharField(serializers.CharField):
    """A text column that is "" when unset, shown as null."""

    def __init__(self, **kwargs) -> None:
        super().__init__(allow_null=True, **kwargs)

    def to_representation(self, value):
        return value or None
