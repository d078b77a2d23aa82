from __future__ import annotations

from django.db.models import F, OuterRef, Prefetch, Subquery

from .models import Deployment, DeploymentRevision, DeploymentStep


def live_deployments():
    """Deployments not deleted, newest first."""
    return Deployment.objects.filter(deleted_at__isnull=True).order_by("-created_at")


def with_latest_revision(queryset):
    """`queryset` with what a deployment's API record shows beside its own row: its blueprint and
    instance (joined), its latest revision (`latest_revisions`, a list of at most one) and that
    revision's steps in order (`ordered_steps`) — three queries for any number of deployments."""
    newest = DeploymentRevision.objects.filter(deployment=OuterRef("deployment")).order_by("-number").values("number")[:1]
    latest = (
        DeploymentRevision.objects.annotate(newest=Subquery(newest))
        .filter(number=F("newest"))
        .prefetch_related(Prefetch("steps", queryset=DeploymentStep.objects.order_by("position"), to_attr="ordered_steps"))
    )
    return queryset.select_related("blueprint", "instance").prefetch_related(Prefetch("revisions", queryset=latest, to_attr="latest_revisions"))
