from django.db import models

from instances.choices import StatWindow


class GatewayProvider(models.TextChoices):
    API_KEY = "api-key", "Orchestrio API key"
    ANONYMOUS = "anonymous", "Anonymous"
    GITHUB = "github-oidc", "GitHub Actions OIDC"
    GITLAB = "gitlab-oidc", "GitLab CI OIDC"
    GCP = "gcp-oidc", "Google Cloud OIDC"
    AZURE = "azure-oidc", "Azure OIDC"
    CIRCLECI = "circleci-oidc", "CircleCI OIDC"
    TERRAFORM = "terraform-oidc", "Terraform Cloud OIDC"
    BITBUCKET = "bitbucket-oidc", "Bitbucket Pipelines OIDC"
    OIDC = "oidc", "Generic OIDC"


OIDC_PROVIDERS = frozenset(p.value for p in GatewayProvider if p.value.endswith("oidc"))


# The request metrics' windows are the stats' (instances.choices.StatWindow): one enum in the schema.
RequestMetricsWindow = StatWindow


class AppHealth(models.TextChoices):
    """What recent proxied traffic says of an instance (gateway.selectors.app_health)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class AppHealthSource(models.TextChoices):
    TRAFFIC = "traffic"
    HEALTH_CHECK = "health_check"
