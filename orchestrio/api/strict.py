"""JSON request bodies must carry the JSON types the OpenAPI document declares.

DRF coerces on the way in: a CharField takes 5 as "5", a BooleanField takes "yes" and 1, an
IntegerField takes "7" and 7.0, a ChoiceField of numbers takes "30". The contract is the schema, so
a value of the wrong JSON type is a 422 at its `loc`, like any other invalid value. Query strings
are text by nature and keep DRF's parsing (their serializers do not use this).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_error(field: serializers.Field, value: Any) -> Any:
    """The error detail for `value` in `field`, or None when its JSON type is right."""
    if value is None:
        return None  # allow_null decides
    if isinstance(field, serializers.ListField):
        if not isinstance(value, list):
            return None  # DRF's own message ("Expected a list of items…")
        items = {index: error for index, item in enumerate(value) if (error := _type_error(field.child, item))}
        return items or None
    if isinstance(field, serializers.DictField):
        if not isinstance(value, Mapping):
            return None  # DRF's own message
        values = {key: error for key, item in value.items() if (error := _type_error(field.child, item))}
        return values or None
    if isinstance(field, serializers.MultipleChoiceField):
        return None
    if isinstance(field, serializers.ChoiceField):
        if all(_is_number(choice) for choice in field.choices):
            return None if _is_number(value) else [ErrorDetail("must be a number", code="int_type")]
        return None if isinstance(value, str) else [ErrorDetail("must be a string", code="string_type")]
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else [ErrorDetail("must be true or false", code="bool_type")]
    if isinstance(field, serializers.IntegerField):
        # JSON Schema's integer is any number without a fraction (1.0 included).
        ok = _is_number(value) and float(value).is_integer()
        return None if ok else [ErrorDetail("must be an integer", code="int_type")]
    if isinstance(field, serializers.FloatField):
        return None if _is_number(value) else [ErrorDetail("must be a number", code="float_type")]
    if isinstance(field, serializers.CharField):
        return None if isinstance(value, str) else [ErrorDetail("must be a string", code="string_type")]
    return None


# For body serializers: wrong JSON types are reported with the other errors of the body. (No
# docstrings on these two classes: drf-spectacular would show them on every request schema.)
class StrictTypesMixin:
    def to_internal_value(self, data):
        type_errors = {}
        if isinstance(data, Mapping):
            for field in self._writable_fields:
                if field.field_name in data:
                    error = _type_error(field, data[field.field_name])
                    if error:
                        type_errors[field.field_name] = error
        try:
            value = super().to_internal_value(data)
        except ValidationError as exc:
            if type_errors and isinstance(exc.detail, Mapping):
                raise ValidationError({**exc.detail, **type_errors}) from None
            raise
        if type_errors:
            raise ValidationError(type_errors)
        return value


class BodySerializer(StrictTypesMixin, serializers.Serializer):  # the base of every request-body serializer
    pass
