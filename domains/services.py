"""Custom domains: validation, the DNS records a user must create, verification with dnspython,
and the edge proxy's "may I issue a certificate for this name?" question.

A domain is `pending_dns` until a check finds both records: the name points at the instance (a
CNAME to `<instance_id>.<BASE_DOMAIN>`, or, at a zone apex, A/AAAA records equal to the edge's
addresses) and `_orchestrio-challenge.<domain>` has a TXT record with the domain's token. Checks
run in the background with backoff for up to DOMAIN_VERIFY_HOURS (72 h), then the claim expires
(`failed`, with the last reason); `POST …/custom-domain/check` runs one at once. Once `active`,
the edge (Caddy's on-demand TLS) gets a certificate for it the first time someone visits.

A row is a tenant's *claim* on a name. Tenants are untrusted and anyone can sign up, so asking
first proves nothing: several tenants may hold pending claims on one name, each with its own
token, and the first to prove ownership in DNS wins. Its claim becomes the only active one (the
`custom_domain_active_unique` constraint) and every other claim on the name is ended with a reason
its owner can read. Only an active name is refused to others (409), with a detail that says
nothing about who holds it; the edge and the routing by Host consider active names only.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from datetime import timedelta

import dns.exception
import dns.name
import dns.resolver
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from instances.choices import LogLevel
from instances.models import Instance
from instances.services import log_append
from orchestrio.errors import Conflict, InvalidState, NotFound, ValidationFailed
from orchestrio.limits import limit_check
from orchestrio.queue import enqueue_on_commit
from orchestrio.services import activity_record
from orchestrio.tenancy import Actor

from .choices import DomainStatus
from .models import CustomDomain

logger = logging.getLogger(__name__)
LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed([{"loc": ["body", "domain"], "msg": message, "type": "value_error"}])


def normalise_domain(*, raw) -> str:
    """The domain in lowercase IDNA form, or 422 with the reason."""
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("domain is required")
    text = raw.strip().rstrip(".").lower()
    if "://" in text or "/" in text or ":" in text or "@" in text:
        raise _invalid("give a bare hostname like app.example.com (no scheme, port or path)")
    try:
        ipaddress.ip_address(text.strip("[]"))
        raise _invalid("an IP address is not a domain")
    except ValueError:
        pass
    if text.startswith("*."):
        raise _invalid("wildcard domains are not supported")
    parts = text.split(".")
    if "" in parts:
        raise _invalid("a domain name cannot start with a dot or have two dots in a row")
    for part in parts:
        if len(part) > 63:
            raise _invalid(f"each part between dots is at most 63 characters; {part[:16]}… has {len(part)}")
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        # The codec's own text ("encoding with 'idna' codec failed …") means nothing to a person.
        raise _invalid(
            "this is not a valid domain name: use letters, digits and hyphens (or the letters of one script, for an internationalised name)"
        ) from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253:
        raise _invalid("a domain name is at most 253 characters")
    if len(labels) < 2:
        raise _invalid("give a fully qualified name like app.example.com")
    for label in labels:
        if not LABEL_RE.match(label):
            raise _invalid(f"{label!r} is not a valid DNS label (1–63 letters, digits or '-', not starting or ending with '-')")
    if labels[-1].isdigit():
        raise _invalid("the top-level domain cannot be numeric")
    base = settings.BASE_DOMAIN.lower().rstrip(".")
    if ascii_name == base or ascii_name.endswith("." + base):
        raise _invalid(f"names under {base} are ours; attach your own domain")
    return ascii_name


def instance_hostname(*, instance: Instance) -> str:
    return f"{instance.instance_id}.{settings.BASE_DOMAIN}".lower()


def dns_records(*, domain: CustomDomain) -> list[dict]:
    """Exactly what the user must create at their DNS provider."""
    records = [
        {"type": "CNAME", "name": domain.domain, "value": instance_hostname(instance=domain.instance), "purpose": "routing: points your name at the instance"},
        {"type": "TXT", "name": domain.challenge_name, "value": domain.verification_token, "purpose": "ownership: proves the name is yours"},
    ]
    edge = [ip for ip in settings.EDGE_IP_ADDRESSES]
    if edge:
        for ip in edge:
            kind = "AAAA" if ":" in ip else "A"
            records.append({"type": kind, "name": domain.domain, "value": ip, "purpose": "instead of the CNAME, at a zone apex (example.com itself)"})
    return records


# --- services --------------------------------------------------------------------------------------

IN_USE = "this domain is already in use"
# What the owner of an ended claim reads: that the name is proven elsewhere, never by whom.
TAKEN = "another account proved ownership of this domain first (its DNS records point there); remove this claim"


def _active_claim(name: str) -> CustomDomain | None:
    return CustomDomain.objects.filter(domain=name, status=DomainStatus.ACTIVE, removed_at__isnull=True).select_related("instance").first()


def _end(domain: CustomDomain, reason: str) -> None:
    """A claim that can no longer win: failed with the reason, no more background checks."""
    domain.status, domain.error, domain.next_check_at = DomainStatus.FAILED, reason, None
    domain.save(update_fields=["status", "error", "next_check_at", "updated_at"])



@transaction.atomic
def domain_attach(*, instance: Instance, domain: str, actor: Actor) -> CustomDomain:
    name = normalise_domain(raw=domain)
    limit_check(tenant=instance.tenant, limit="custom_domains")
    locked = Instance.objects.select_for_update(of=("self",)).get(pk=instance.pk)
    if locked.destroyed_at is not None:
        raise NotFound(f"no instance {instance.instance_id!r} in this tenant")
    current = CustomDomain.objects.filter(instance=locked, removed_at__isnull=True).first()
    if current is not None:
        raise Conflict(f"{locked.instance_id} already has the domain {current.domain}; remove it first (one domain per instance)")
    holder = _active_claim(name)
    if holder is not None and holder.tenant_id != locked.tenant_id:
        raise Conflict(IN_USE)  # not whose, nor which instance: another tenant's business
    own = holder or (
        CustomDomain.objects.filter(domain=name, tenant_id=locked.tenant_id, removed_at__isnull=True)
        .exclude(status=DomainStatus.REMOVING).select_related("instance").first()
    )  # fmt: skip
    if own is not None:
        raise Conflict(f"{name} is attached to another instance of yours, {own.instance.instance_id}; remove it there first")
    record = CustomDomain(instance=locked, tenant_id=locked.tenant_id, domain=name, verification_token="orchestrio-verify=" + secrets.token_urlsafe(24), next_check_at=timezone.now())
    try:
        with transaction.atomic():
            record.save(force_insert=True)
    except IntegrityError as exc:
        raise Conflict(f"{locked.instance_id} already has a custom domain; remove it first (one domain per instance)") from exc
    log_append(instance=locked, stage="domain", message=f"custom domain {name} attached; waiting for its DNS records")
    activity_record(actor=actor, action="custom_domain.attach", tenant=locked.tenant_id, object_type="custom_domain", object_id=name, data={"instance_id": locked.instance_id})
    return record


@transaction.atomic
def domain_remove(*, domain: CustomDomain, actor: Actor) -> CustomDomain:
    locked = CustomDomain.objects.select_for_update(of=("self",)).get(pk=domain.pk)
    if locked.removed_at is not None:
        raise NotFound("no custom domain on this instance")
    if locked.status != DomainStatus.REMOVING:
        locked.status = DomainStatus.REMOVING
        locked.save(update_fields=["status", "updated_at"])
        activity_record(actor=actor, action="custom_domain.remove", tenant=locked.tenant_id, object_type="custom_domain", object_id=locked.domain)
        enqueue_on_commit("domains.jobs.remove_custom_domain", locked.pk)
    return locked


def domain_finish_removal(*, domain_pk: int) -> None:
    with transaction.atomic():
        domain = CustomDomain.objects.select_for_update(of=("self",)).select_related("instance").filter(pk=domain_pk, removed_at__isnull=True).first()
        if domain is None:
            return
        domain.removed_at = timezone.now()
        domain.save(update_fields=["removed_at", "updated_at"])
        log_append(instance=domain.instance, stage="domain", message=f"custom domain {domain.domain} removed; the edge no longer serves it")


# --- verification -----------------------------------------------------------------------------------


class DnsCheck:
    """One check's findings: what resolved, and the first reason it is not ready (or None)."""

    def __init__(self) -> None:
        self.resolved: dict = {}
        self.reason: str | None = None
        self.transient = False


def resolver() -> dns.resolver.Resolver:
    if settings.DNS_NAMESERVERS:
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = list(settings.DNS_NAMESERVERS)
        res.port = settings.DNS_PORT
    else:
        res = dns.resolver.Resolver()
    res.timeout = 2.0
    res.lifetime = 4.0
    res.cache = None
    return res


def _lookup(res, name: str, rdtype: str):
    """(records as text, problem): problem is 'nxdomain', 'none', 'timeout' or None."""
    try:
        answer = res.resolve(name, rdtype, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return [], "nxdomain"
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout):
        return [], "timeout"
    except dns.exception.DNSException:
        return [], "timeout"
    if answer.rrset is None:
        return [], "none"
    return [rdata.to_text() for rdata in answer.rrset], None


def check_dns(*, domain: CustomDomain) -> DnsCheck:
    res = resolver()
    result = DnsCheck()
    target = instance_hostname(instance=domain.instance)
    cnames, problem = _lookup(res, domain.domain, "CNAME")
    result.resolved["CNAME"] = [c.rstrip(".").lower() for c in cnames]
    if problem == "timeout":
        result.reason, result.transient = "DNS lookup timed out; retrying", True
        return result
    if problem == "nxdomain":
        result.reason = f"NXDOMAIN: {domain.domain} does not exist in DNS yet; create the records below"
    elif cnames:
        if result.resolved["CNAME"][0] != target:
            result.reason = f"wrong target: {domain.domain} is a CNAME to {result.resolved['CNAME'][0]}, not {target}"
    else:
        addresses = []
        for rdtype in ("A", "AAAA"):
            found, _ = _lookup(res, domain.domain, rdtype)
            addresses += found
        result.resolved["A"] = addresses
        edge = set(settings.EDGE_IP_ADDRESSES)
        if not addresses:
            result.reason = f"no CNAME (or A record) for {domain.domain}: create a CNAME to {target}"
        elif not edge or not set(addresses) <= edge:
            expected = ", ".join(sorted(edge)) if edge else f"a CNAME to {target}"
            result.reason = f"wrong target: {domain.domain} points to {', '.join(sorted(addresses))}, not {expected}"
    txts, problem = _lookup(res, domain.challenge_name, "TXT")
    values = [t.strip('"') for t in txts]
    result.resolved["TXT"] = values
    if problem == "timeout" and result.reason is None:
        result.reason, result.transient = "DNS lookup timed out; retrying", True
    elif domain.verification_token not in values and result.reason is None:
        result.reason = f"missing TXT: {domain.challenge_name} has no TXT record {domain.verification_token!r}"
    return result


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(settings.DOMAIN_CHECK_MAX_INTERVAL_SECONDS, settings.DOMAIN_CHECK_BASE_SECONDS * 2 ** min(attempts, 20)))


def domain_check(*, domain_pk: int, actor: Actor | None = None) -> CustomDomain:
    """Check the DNS of one claim now and record the outcome; the first claim on a name to pass
    becomes its active one and ends the others."""
    with transaction.atomic():
        domain = CustomDomain.objects.select_for_update(of=("self",)).select_related("instance").get(pk=domain_pk)
        if domain.removed_at is not None or domain.status == DomainStatus.REMOVING:
            raise InvalidState(f"{domain.domain} is being removed")
        if domain.status != DomainStatus.ACTIVE:
            holder = _active_claim(domain.domain)
            if holder is not None:
                _end(domain, TAKEN)  # no DNS needed: the name is proven elsewhere
                return domain
            domain.status = DomainStatus.VERIFYING
            domain.save(update_fields=["status", "updated_at"])
        started = domain.status
    result = check_dns(domain=domain)  # outside the transaction: DNS may take seconds
    now = timezone.now()
    ended: list[CustomDomain] = []
    with transaction.atomic():
        # Every live claim on the name, locked in one order: two claims that pass at once are
        # decided one after the other (and without a deadlock), never both active.
        claims = {
            claim.pk: claim
            for claim in CustomDomain.objects.select_for_update(of=("self",)).select_related("instance")
            .filter(domain=domain.domain, removed_at__isnull=True).order_by("pk")
        }  # fmt: skip
        domain = claims.get(domain_pk)
        if domain is None or domain.status != started:
            # Removed, or ended by a rival that proved the name, while DNS was being asked.
            return domain or CustomDomain.objects.get(pk=domain_pk)
        domain.resolved = result.resolved
        domain.last_checked_at = now
        domain.attempts += 1
        previous = domain.status
        if result.reason is None and previous != DomainStatus.ACTIVE and any(c.status == DomainStatus.ACTIVE for c in claims.values()):
            domain.status, domain.error, domain.next_check_at = DomainStatus.FAILED, TAKEN, None
        elif result.reason is None:
            domain.status, domain.error, domain.next_check_at = DomainStatus.ACTIVE, "", None
            domain.activated_at = domain.activated_at or now
            if previous != DomainStatus.ACTIVE:
                log_append(instance=domain.instance, stage="domain", message=f"{domain.domain} verified: DNS is right; TLS is issued on the first visit")
                activity_record(actor=actor or Actor.system("domains"), action="custom_domain.active", tenant=domain.tenant_id, object_type="custom_domain", object_id=domain.domain)
                ended = [claim for claim in claims.values() if claim.pk != domain.pk and claim.status != DomainStatus.REMOVING]
        elif domain.status == DomainStatus.ACTIVE and result.transient:
            pass  # an active domain keeps serving through a resolver hiccup
        elif now - domain.created_at > timedelta(hours=settings.DOMAIN_VERIFY_HOURS):
            reason = f"not verified within {settings.DOMAIN_VERIFY_HOURS} h, so this claim expired and is no longer checked (last check: {result.reason}); fix the records and check again, or remove it"
            domain.status, domain.error, domain.next_check_at = DomainStatus.FAILED, reason, None
            log_append(instance=domain.instance, stage="domain", message=f"{domain.domain} failed verification after {settings.DOMAIN_VERIFY_HOURS} h: {result.reason}", level=LogLevel.WARNING)
        else:
            domain.status, domain.error = DomainStatus.PENDING_DNS, result.reason
            domain.next_check_at = now + _backoff(domain.attempts)
        domain.save(update_fields=["status", "error", "resolved", "last_checked_at", "attempts", "next_check_at", "activated_at", "updated_at"])
        for claim in ended:
            _end(claim, TAKEN)
            activity_record(actor=Actor.system("domains"), action="custom_domain.ended", tenant=claim.tenant_id, object_type="custom_domain", object_id=claim.domain, data={"reason": "proven by another account"})
    # The log lines of the ended claims' instances, after the claims' locks are released (a
    # log line takes its instance's row, which a destroy holds while it takes the claim's).
    for claim in ended:
        log_append(instance=claim.instance, stage="domain", message=f"{claim.domain}: claim ended: {TAKEN}", level=LogLevel.WARNING)
    return domain


def check_due_domains(*, limit: int = 200) -> int:
    """The periodic job: check domains whose next check is due."""
    due = CustomDomain.objects.filter(
        removed_at__isnull=True, status__in=(DomainStatus.PENDING_DNS, DomainStatus.VERIFYING), next_check_at__lte=timezone.now()
    ).values_list("pk", flat=True)[:limit]
    checked = 0
    for pk in list(due):
        try:
            domain_check(domain_pk=pk)
            checked += 1
        except InvalidState:
            continue
    return checked


def tls_allowed(*, name: str) -> bool:
    """The edge's question, answered from indexes only (no DNS): is this an active custom domain
    or the hostname of a live instance?"""
    name = (name or "").strip().rstrip(".").lower()
    if not name or len(name) > 253:
        return False
    base = "." + settings.BASE_DOMAIN.lower().rstrip(".")
    if name.endswith(base):
        label = name[: -len(base)]
        return "." not in label and Instance.objects.filter(instance_id=label, destroyed_at__isnull=True).exists()
    return CustomDomain.objects.filter(domain=name, status=DomainStatus.ACTIVE, removed_at__isnull=True).exists()


def instance_destroying(instance: Instance) -> None:
    """The instances app's `instance_destroying` hook: the instance's custom domain stops being
    served (and certified) from now on."""
    CustomDomain.objects.filter(instance=instance, removed_at__isnull=True).update(status=DomainStatus.REMOVING, updated_at=timezone.now())


def instance_destroyed(instance: Instance) -> None:
    """The instances app's `instance_destroyed` hook: the instance's custom domain is removed."""
    CustomDomain.objects.filter(instance=instance, removed_at__isnull=True).update(removed_at=timezone.now(), updated_at=timezone.now())


def instance_for_host(host: str) -> str | None:
    """The gateway's `instance_for_host` hook: the instance an active custom domain serves."""
    return (
        CustomDomain.objects.filter(domain=host, status=DomainStatus.ACTIVE, removed_at__isnull=True)
        .values_list("instance__instance_id", flat=True)
        .first()
    )
