"""Allow rules: an OR-list of rules; each rule an object of AND-conditions; a list value is OR
within that claim. An empty list allows everyone who authenticates."""

from __future__ import annotations

from typing import Any

from .choices import GatewayProvider

SCALARS = (str, int, float, bool)

# Claims that tie a token to one caller (a repository, project, workspace, subject…). An OIDC
# policy whose rules pin none of these lets anyone with a token from that issuer through.
PINNING_CLAIMS = {
    GatewayProvider.GITHUB: {"sub", "repository", "repository_id", "repository_owner", "repository_owner_id", "job_workflow_ref", "workflow_ref"},
    GatewayProvider.GITLAB: {"sub", "project_path", "project_id", "namespace_path", "namespace_id"},
    GatewayProvider.GCP: {"sub", "email", "azp"},
    GatewayProvider.AZURE: {"sub", "oid", "appid", "azp"},
    GatewayProvider.CIRCLECI: {"sub", "oidc.circleci.com/project-id", "oidc.circleci.com/context-ids"},
    GatewayProvider.TERRAFORM: {"sub", "terraform_organization_name", "terraform_workspace_id", "terraform_workspace_name", "terraform_project_id"},
    GatewayProvider.BITBUCKET: {"sub", "repositoryUuid", "workspaceUuid", "pipelineUuid"},
    GatewayProvider.OIDC: {"sub", "email", "azp", "client_id"},
}


def validate_allow(allow: Any) -> list[str]:
    """Problems with the shape of `allow` (empty when it is well formed)."""
    if not isinstance(allow, list):
        return ["allow must be a list of rules (objects)"]
    problems = []
    for index, rule in enumerate(allow):
        if not isinstance(rule, dict) or not rule:
            problems.append(f"rule {index} must be a non-empty object of claim conditions")
            continue
        for claim, expected in rule.items():
            values = expected if isinstance(expected, list) else [expected]
            if not values or not all(isinstance(value, SCALARS) for value in values):
                problems.append(f"rule {index}, claim {claim!r}: a condition is a string, number, boolean or a non-empty list of them")
    if len(allow) > 50:
        problems.append("at most 50 rules")
    return problems


def _matches(actual: Any, expected: Any) -> bool:
    options = expected if isinstance(expected, list) else [expected]
    wanted = {str(option).lower() if isinstance(option, bool) else str(option) for option in options}
    values = actual if isinstance(actual, list) else [actual]
    for value in values:
        if value is None or isinstance(value, (dict, list)):
            continue
        if (str(value).lower() if isinstance(value, bool) else str(value)) in wanted:
            return True
    return False


def allowed(allow: list, claims: dict) -> bool:
    if not allow:
        return True
    return any(all(claim in claims and _matches(claims[claim], expected) for claim, expected in rule.items()) for rule in allow)


def pinning_warnings(provider: str, allow: list) -> list[str]:
    if provider not in PINNING_CLAIMS:
        return []
    pins = PINNING_CLAIMS[provider]
    if not allow or not all(any(claim in pins for claim in rule) for rule in allow if isinstance(rule, dict)):
        return [
            f"the allow rules pin no caller (none of {', '.join(sorted(pins))} in every rule): "
            "anyone who can get a token from this issuer for this audience passes"
        ]
    return []
