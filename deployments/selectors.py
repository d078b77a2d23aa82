from __future__ import annotations

import math

from django.db.models import F, OuterRef, Prefetch, Subquery

from .models import AUTOMATIC_ROLLBACK_REASON, ROLLBACK_REASON, Deployment, DeploymentRevision, DeploymentStep


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


def _percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of `values` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def _durations(values: list[float]) -> dict:
    return {
        "count": len(values),
        "avg_seconds": round(sum(values) / len(values), 3) if values else None,
        "p95_seconds": round(_percentile(values, 0.95), 3) if values else None,
    }


def deployment_stats(*, deployment: Deployment) -> dict:
    """How a deployment's revisions have gone: success rate over finished revisions, duration of a
    revision (created → applied) and of each step (started → finished, finished steps only), the
    last deploy, and rollbacks (a person's and automatic ones). Two queries whatever its history."""
    revisions = list(deployment.revisions.order_by("number").values("number", "status", "reason", "created_at", "applied_at", "error"))
    applied = [r for r in revisions if r["status"] == "applied"]
    failed = [r for r in revisions if r["status"] == "failed"]
    finished = len(applied) + len(failed)
    steps: dict[str, dict] = {name: {"succeeded": 0, "failed": 0, "skipped": 0, "seconds": []} for name in DeploymentStep.STEPS}
    rows = DeploymentStep.objects.filter(deployment=deployment).values_list("name", "status", "started_at", "finished_at")
    for name, status, started_at, finished_at in rows:
        figure = steps.setdefault(name, {"succeeded": 0, "failed": 0, "skipped": 0, "seconds": []})
        if status in figure:
            figure[status] += 1
        if status in ("succeeded", "failed") and started_at and finished_at:
            figure["seconds"].append((finished_at - started_at).total_seconds())
    last = revisions[-1] if revisions else None
    return {
        "deployment_id": deployment.pk,
        "revisions": len(revisions),
        "succeeded": len(applied),
        "failed": len(failed),
        "in_progress": len(revisions) - finished,
        "success_rate": round(len(applied) / finished, 4) if finished else None,
        "duration": _durations([(r["applied_at"] - r["created_at"]).total_seconds() for r in applied if r["applied_at"]]),
        "steps": [
            {"name": name, "succeeded": f["succeeded"], "failed": f["failed"], "skipped": f["skipped"], **_durations(f["seconds"])}
            for name, f in steps.items()
        ],
        "last_deploy": None
        if last is None
        else {
            "revision": last["number"], "status": last["status"], "reason": last["reason"], "created_at": last["created_at"],
            "applied_at": last["applied_at"],
            "duration_seconds": round((last["applied_at"] - last["created_at"]).total_seconds(), 3) if last["applied_at"] else None,
        },  # fmt: skip
        "rollbacks": {
            "manual": sum(r["reason"].startswith(ROLLBACK_REASON) for r in revisions),
            "automatic": sum(r["reason"].startswith(AUTOMATIC_ROLLBACK_REASON) for r in revisions),
        },
    }
