"""The API's records as TypedDicts and its enums as Literals, generated from the OpenAPI
schema's components (`from orchestrio_client.types import Instance, Task`)."""

from ._generated import *  # noqa: F401,F403
