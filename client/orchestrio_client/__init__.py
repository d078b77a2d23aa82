"""Orchestrio's Python SDK: `Client` over the REST API (every operation of /api/schema), typed
records (`orchestrio_client.types`), the error table as exceptions (`orchestrio_client.errors`).
The `ork` command line is `orchestrio_client.cli`, the MCP server `orchestrio_client.mcp_server`."""

from ._base import UNSET, Page
from ._generated import OPERATIONS
from ._version import __version__
from .client import Client
from .errors import (
    ApiError,
    AuthenticationError,
    BadGateway,
    BadRequest,
    Conflict,
    GatewayTimeout,
    NotFound,
    OrchestrioError,
    PayloadTooLarge,
    PermissionDenied,
    PlanLimitError,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    ValidationError,
    WaitTimeout,
)

__all__ = [
    "OPERATIONS", "UNSET", "ApiError", "AuthenticationError", "BadGateway", "BadRequest", "Client",
    "Conflict", "GatewayTimeout", "NotFound", "OrchestrioError", "Page", "PayloadTooLarge",
    "PermissionDenied", "PlanLimitError", "RateLimited", "ServerError", "ServiceUnavailable",
    "TransportError", "ValidationError", "WaitTimeout", "__version__",
]
