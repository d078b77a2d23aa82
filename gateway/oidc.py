"""OIDC token verification for gateway policies, with PyJWT.

A token is accepted only if its signature verifies with a key from the issuer's JWKS (found
through the issuer's discovery document), with an asymmetric algorithm (never `none`, never an
HMAC with a public key), and its `exp`, `nbf` (with a small leeway), `iss` and `aud` check out.
Discovery documents and key sets are cached (shared through the Django cache) and fetched again,
at most once per interval, when a token names a key id the cache does not know (key rotation).
"""

from __future__ import annotations

import logging

import httpx
import jwt
from django.conf import settings
from django.core.cache import cache

from orchestrio import jsoninput
from orchestrio.errors import ValidationFailed
from orchestrio.outbound import OutboundRefused, failure_reason, outbound_client, validate_outbound_url

from .choices import GatewayProvider

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
LEEWAY_SECONDS = 30
MAX_DOCUMENT_BYTES = 512 * 1024

DEFAULT_ISSUERS = {
    GatewayProvider.GITHUB: "https://token.actions.githubusercontent.com",
    GatewayProvider.GITLAB: "https://gitlab.com",
    GatewayProvider.GCP: "https://accounts.google.com",
    GatewayProvider.AZURE: "https://login.microsoftonline.com/{tenant}/v2.0",
    GatewayProvider.CIRCLECI: "https://oidc.circleci.com/org/{org_id}",
    GatewayProvider.TERRAFORM: "https://{hostname}",
    GatewayProvider.BITBUCKET: "https://api.bitbucket.org/2.0/workspaces/{workspace}/pipelines-config/identity/oidc",
}


class OIDCError(Exception):
    """The token is not acceptable; the message says why (it is shown to the caller)."""


def expected_issuer(provider: str, issuer: str = "", config: dict | None = None) -> str:
    """The issuer a policy trusts: its own `issuer` when set, else the provider's default."""
    if issuer:
        return issuer.rstrip("/")
    config = {"hostname": "app.terraform.io", **(config or {})}
    template = DEFAULT_ISSUERS.get(provider)
    if template is None:
        raise OIDCError(f"the {provider} provider needs an issuer")
    return template.format(**config).rstrip("/")


def check_issuer_url(url: str) -> str | None:
    """None when an issuer URL may be fetched; else why not (orchestrio.outbound's rules for every
    URL a tenant controls: https to public addresses)."""
    try:
        validate_outbound_url(url, what="the issuer")
    except OutboundRefused as exc:
        return str(exc)
    return None


def _fetch_json(url: str) -> dict:
    """GET a discovery document or key set through the outbound guard: the address is checked at
    the connection, and what a refused or failing server said is never passed on."""
    try:
        validate_outbound_url(url, what=url, resolve_host=False)
    except OutboundRefused as exc:
        raise OIDCError(f"refusing to fetch it: {exc}") from None
    try:
        with outbound_client(timeout=settings.OIDC_FETCH_TIMEOUT_SECONDS) as client:
            with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise OIDCError(f"{url} answered HTTP {response.status_code}")
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise OIDCError(f"{url} is too large")
    except httpx.HTTPError as exc:
        raise OIDCError(f"cannot fetch {url}: {failure_reason(exc)}") from None
    try:
        document = jsoninput.loads(body)  # a tenant's server wrote it: the API's JSON rules
    except ValidationFailed as exc:
        raise OIDCError(f"{url} is not JSON we can use: {exc.errors[0]['msg']}") from None
    if not isinstance(document, dict):
        raise OIDCError(f"{url} is not a JSON object")
    return document


def _cache_key(kind: str, issuer: str) -> str:
    import hashlib

    return f"oidc:{kind}:{hashlib.sha256(issuer.encode()).hexdigest()}"


def discovery(issuer: str) -> dict:
    key = _cache_key("discovery", issuer)
    document = cache.get(key)
    if document is None:
        document = _fetch_json(issuer + "/.well-known/openid-configuration")
        named = document.get("issuer")
        if not isinstance(named, str) or named.rstrip("/") != issuer:
            raise OIDCError(f"the discovery document of {issuer} names another issuer ({document.get('issuer')!r})")
        if not isinstance(document.get("jwks_uri"), str):
            raise OIDCError(f"the discovery document of {issuer} has no jwks_uri")
        cache.set(key, document, settings.OIDC_CACHE_SECONDS)
    return document


def jwks(issuer: str, *, refresh: bool = False) -> dict:
    key = _cache_key("jwks", issuer)
    keys = None if refresh else cache.get(key)
    if keys is None:
        keys = _fetch_json(discovery(issuer)["jwks_uri"])
        if not isinstance(keys.get("keys"), list):
            raise OIDCError(f"the key set of {issuer} has no keys")
        cache.set(key, keys, settings.OIDC_CACHE_SECONDS)
    return keys


def _find_key(keys: dict, kid: str | None, alg: str):
    candidates = [k for k in keys.get("keys", []) if isinstance(k, dict) and (kid is None or k.get("kid") == kid)]
    for candidate in candidates:
        if candidate.get("use", "sig") != "sig":
            continue
        try:
            return jwt.PyJWK(candidate, algorithm=candidate.get("alg") or alg)
        except (jwt.PyJWKError, jwt.InvalidKeyError, KeyError, ValueError):
            continue
    return None


def signing_key(issuer: str, kid: str | None, alg: str):
    key = _find_key(jwks(issuer), kid, alg)
    if key is not None:
        return key
    # Unknown kid: the issuer may have rotated its keys. Refetch, but not more than once per interval.
    guard = _cache_key("refetch", issuer)
    if cache.add(guard, 1, settings.OIDC_REFETCH_INTERVAL_SECONDS):
        key = _find_key(jwks(issuer, refresh=True), kid, alg)
        if key is not None:
            return key
    raise OIDCError(f"no key {kid!r} in the issuer's key set")


def verify(token: str, *, issuer: str, audience: str) -> dict:
    """Verify `token` for this issuer and audience; returns its claims or raises OIDCError."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise OIDCError("malformed JWT") from exc
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise OIDCError(f"algorithm {alg!r} is not accepted (asymmetric algorithms only)")
    key = signing_key(issuer, header.get("kid"), alg)
    if key.algorithm_name != alg and not (key.algorithm_name in ("EdDSA", "Ed25519") and alg == "EdDSA"):
        raise OIDCError(f"the token's algorithm {alg} does not match its key ({key.algorithm_name})")
    try:
        return jwt.decode(
            token,
            key=key.key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"], "verify_signature": True},
        )
    except jwt.ExpiredSignatureError as exc:
        raise OIDCError("token expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise OIDCError("token not valid yet (nbf)") from exc
    except jwt.InvalidAudienceError as exc:
        raise OIDCError(f"wrong audience (expected {audience!r})") from exc
    except jwt.InvalidIssuerError as exc:
        raise OIDCError(f"wrong issuer (expected {issuer})") from exc
    except jwt.InvalidSignatureError as exc:
        raise OIDCError("bad signature") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise OIDCError(f"missing claim {exc.claim!r}") from exc
    except jwt.InvalidTokenError as exc:
        raise OIDCError(f"invalid token: {exc}") from exc
