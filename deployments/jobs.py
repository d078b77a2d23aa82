"""Background jobs of the deployments app (django-rq): applying a revision."""

from __future__ import annotations

from .services import run_deployment as apply_revision


def run_deployment(deployment_pk: str, number: int) -> str:
    return apply_revision(deployment_pk, number)
