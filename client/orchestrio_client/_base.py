"""The HTTP under every generated method: auth, retries, Idempotency-Key, errors, pages."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar
from urllib.parse import quote

import httpx

from . import errors
from ._version import __version__

T = TypeVar("T")
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RETRY_STATUSES = frozenset({429, 503})


class Unset:
    """The default of an optional body field: not sent (a PATCH changes only what it names)."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET = Unset()


def _q(value: str | int) -> str:
    """A path parameter, percent-encoded (an id never changes the path it is put in)."""
    return quote(str(value), safe="")


def _body(fields: Mapping[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    body = dict(extra or {})
    body.update({key: value for key, value in fields.items() if value is not UNSET and not (key == "idempotency_key" and value is None)})
    return body


class Page(Generic[T]):
    """One page of a list (`count`, `next`, `previous`, `results`); iterating it yields every
    item of every page, fetching the next ones (by `offset`) as it goes."""

    def __init__(self, client: BaseClient, method: str, path: str, params: dict[str, Any], data: dict[str, Any], request_timeout: float | None) -> None:
        self._client = client
        self._method = method
        self._path = path
        self._params = params
        self._timeout = request_timeout
        self.count: int = data.get("count", 0)
        self.next: str | None = data.get("next")
        self.previous: str | None = data.get("previous")
        self.results: list[T] = list(data.get("results", []))

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.results

    def __len__(self) -> int:
        return self.count

    def pages(self) -> Iterator[Page[T]]:
        page: Page[T] = self
        while True:
            yield page
            if not page.next or not page.results:
                return
            params = dict(page._params)
            params["offset"] = int(params.get("offset") or 0) + len(page.results)
            page = self._client._page(self._method, self._path, params=params, json=None, request_timeout=self._timeout)

    def all(self) -> list[T]:
        return list(self)

    def __repr__(self) -> str:
        return f"<Page {self._path} count={self.count} results={len(self.results)}>"


class BaseClient:
    """Holds the connection and the policy: timeouts, retries, Idempotency-Key."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        headers = {"Accept": "application/json", "User-Agent": user_agent or f"orchestrio-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one request path ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        request_timeout: float | None = None,
        replay_safe: bool | None = None,
    ) -> httpx.Response:
        """Send one API call and return its successful response, or raise its `ApiError`.

        A mutating call always carries an `Idempotency-Key` (the one given, else a fresh one
        kept across retries), so retrying it after a lost answer or a 429/503 never applies it
        twice. 429 and 503 are retried up to `max_retries` times after their `Retry-After`
        (exponential backoff when absent: the server applied neither, and released the key);
        a `Retry-After` beyond `max_retry_wait` raises at once rather than sleeping less than
        the server asked. A connection that could not be made is retried the same way. A
        failure after the request was sent (a read timeout, a dropped connection) is retried
        only when a second copy is harmless: `replay_safe` (default: every method but POST;
        the generated methods pass True for the POSTs whose schema declares the
        `Idempotency-Key` header); otherwise it raises `TransportError`, and the caller may
        retry with the same `idempotency_key`."""
        method = method.upper()
        headers = {}
        if method in MUTATING:
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        query = _query(params)
        timeout = self.timeout if request_timeout is None else request_timeout
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, params=query, json=json, headers=headers, timeout=timeout)
            except httpx.TransportError as exc:
                unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
                safe = replay_safe if replay_safe is not None else method != "POST"
                if attempt >= self.max_retries or not (unsent or safe):
                    raise errors.TransportError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
                self._sleep(_backoff(attempt))
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                wait = errors.retry_after(response)
                if wait is None:
                    wait = _backoff(attempt)
                if wait <= self.max_retry_wait:
                    self._sleep(wait)
                    attempt += 1
                    continue
            raise errors.error_for(response)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        if "json" not in response.headers.get("content-type", "application/json"):
            return response.text  # a stream asked for (app logs' ?follow=true: text/event-stream)
        return response.json()

    def _page(self, method: str, path: str, *, params: dict[str, Any], json: Any = None, request_timeout: float | None = None, **kwargs: Any) -> Page[Any]:
        data = self._call(method, path, params=params, json=json, request_timeout=request_timeout, **kwargs)
        return Page(self, method, path, params, data, request_timeout)


def _query(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            out.append((key, "true" if item is True else "false" if item is False else str(item)))
    return out


def _backoff(attempt: int) -> float:
    return min(8.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2)
