"""Opening an instance's own host from the console, without sending the console's session there.

An instance's hostname is an origin of its own (gateway/origin.py): the console's cookies never
reach it, so a logged-in owner who follows `access_url` is a caller without credentials (401). The
console's "Open" button instead mints a grant:

1. `gateway.services.open_grant_mint` (console, POST with CSRF, `operate`): a signed value naming the instance, its
   tenant, the user and a nonce, valid for GRANT_SECONDS; audited as `instance.open`.
2. The browser goes to `<access_url>/.orchestrio/open?grant=…`. The instance's host redeems it
   (`grant_redeem`): the signature, the age, the instance (a grant for one instance opens no
   other), and the nonce's first use (a shared cache: a replayed grant is refused), and the user
   still a member of the tenant.
3. The answer sets an instance-origin cookie (OPEN_COOKIE: host-only, HttpOnly, SameSite=Lax,
   Secure over HTTPS) holding a signed pass for that instance only, valid SESSION_SECONDS, then
   redirects to `/`. `session_caller` accepts it on that host and nowhere else; the membership is
   checked on every request, so removing the person closes the door at once. The cookie is never
   forwarded to the instance (gateway/origin.py `instance_cookies`). Every instance host is the
   same site, so SameSite does not stop another tenant's page from sending requests here with the
   pass: it counts only for this origin's own requests and for link-following navigations
   (`_first_party`, by Sec-Fetch-Site and Origin).
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core import signing
from django.core.cache import cache

from instances.models import Instance
from orchestrio.errors import NotFound, Unauthorized
from orchestrio.models import Membership
from orchestrio.roles import SAFE_METHODS

from .auth import Caller
from .origin import INSTANCE_PASS_COOKIE

GRANT_SALT = "orchestrio.gateway.open-grant"
PASS_SALT = "orchestrio.gateway.instance-pass"
GRANT_SECONDS = 60
CHALLENGE = 'Bearer realm="gateway"'
SESSION_SECONDS = 8 * 3600
OPEN_PATH = "/.orchestrio/open"
OPEN_COOKIE = INSTANCE_PASS_COOKIE
PROVIDER = "console"


def grant_value(*, instance: Instance, user_id) -> str:
    """The signed grant (gateway.services.open_grant_mint audits it)."""
    return signing.dumps({"i": instance.instance_id, "t": instance.tenant_id, "u": user_id, "n": secrets.token_urlsafe(16)}, salt=GRANT_SALT)


def open_url(*, instance: Instance, grant: str) -> str:
    return f"{instance.access_url}{OPEN_PATH}?grant={grant}"


def _member(tenant_id: str, user_id) -> bool:
    return Membership.objects.filter(tenant_id=tenant_id, user_id=user_id, user__is_active=True).exists()


def grant_redeem(*, value: str, instance_id: str, tenant_id: str) -> str:
    """The pass (the cookie's value) for a valid, unused grant for this instance; else refused."""
    try:
        grant = signing.loads(value or "", salt=GRANT_SALT, max_age=GRANT_SECONDS)
    except signing.SignatureExpired:
        raise Unauthorized("this link to open the instance has expired (it lasts a minute): use Open in the console again", challenge=CHALLENGE) from None
    except signing.BadSignature:
        raise Unauthorized("this link to open the instance is not valid: use Open in the console", challenge=CHALLENGE) from None
    if grant.get("i") != instance_id or grant.get("t") != tenant_id:
        raise NotFound(f"no instance {instance_id!r}")
    if not cache.add(f"gateway-open-grant:{grant['n']}", 1, GRANT_SECONDS * 2):
        raise Unauthorized("this link to open the instance was used already: use Open in the console again", challenge=CHALLENGE)
    if not _member(tenant_id, grant["u"]):
        raise NotFound(f"no instance {instance_id!r}")
    return signing.dumps({"i": instance_id, "t": tenant_id, "u": grant["u"]}, salt=PASS_SALT)


def _first_party(request) -> bool:
    """Whether the browser sent this request for the instance's own pages. Other instances' hosts
    are the same *site* (SameSite=Lax lets their requests carry the pass), so the pass counts only
    for requests from this origin, or for a top-level navigation (following a link) that only reads."""
    safe = request.method in SAFE_METHODS
    fetch_site = request.headers.get("Sec-Fetch-Site", "same-origin")
    if fetch_site not in ("same-origin", "none") and not (safe and request.headers.get("Sec-Fetch-Mode") == "navigate"):
        return False
    origin = request.headers.get("Origin")
    return safe or not origin or origin == f"{request.scheme}://{request.get_host()}"


def session_caller(request, *, instance_id: str, tenant_id: str) -> Caller | None:
    """The console user this instance's own host let in by a redeemed grant, or None."""
    value = request.COOKIES.get(OPEN_COOKIE)
    if not value or not _first_party(request):
        return None
    try:
        data = signing.loads(value, salt=PASS_SALT, max_age=SESSION_SECONDS)
    except signing.BadSignature:
        return None
    if data.get("i") != instance_id or data.get("t") != tenant_id or not _member(tenant_id, data.get("u")):
        return None
    user = get_user_model().objects.filter(pk=data["u"]).only("username").first()
    subject = user.get_username() if user else f"user:{data['u']}"
    return Caller(provider=PROVIDER, subject=subject, ratelimit_key=f"user:{data['u']}", claims={"sub": subject, "org_id": tenant_id})
