"""Background jobs of the domains app (django-rq): the periodic DNS check and a removal."""

from __future__ import annotations

from .services import check_due_domains, domain_finish_removal


def check_custom_domains() -> int:
    return check_due_domains()


def remove_custom_domain(domain_pk: int) -> None:
    domain_finish_removal(domain_pk)
