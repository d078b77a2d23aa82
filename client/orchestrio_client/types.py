"""The API's records as TypedDicts (generated from the OpenAPI schema's components)."""

from ._generated import *  # noqa: F401,F403
from ._generated import GeneratedOperations as _GeneratedOperations, OPERATIONS as _OPERATIONS  # noqa: F401
