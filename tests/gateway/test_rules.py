"""Allow-rule semantics: OR of rules, AND within a rule, a list is OR within a claim."""

from __future__ import annotations

import pytest

from gateway.rules import allowed, pinning_warnings, validate_allow

CLAIMS = {"sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app", "ref": "refs/heads/main", "org_id": "org-123", "aud": ["a", "b"], "admin": True, "run": 42}


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([], True),  # empty: anyone who authenticates
        ([{"repository": "acme/app"}], True),
        ([{"repository": "acme/other"}], False),
        ([{"repository": "acme/app", "ref": "refs/heads/main"}], True),  # AND
        ([{"repository": "acme/app", "ref": "refs/heads/dev"}], False),  # AND fails
        ([{"repository": "acme/other"}, {"ref": "refs/heads/main"}], True),  # OR of rules
        ([{"repository": "acme/other"}, {"ref": "refs/heads/dev"}], False),
        ([{"org_id": ["org-456", "org-123"]}], True),  # list: OR within the claim
        ([{"org_id": ["org-456", "org-789"]}], False),
        ([{"missing_claim": "x"}], False),  # absent claim never matches
        ([{"aud": "b"}], True),  # list-valued claim: any element
        ([{"admin": True}], True),
        ([{"admin": "true"}], True),
        ([{"run": 42}], True),
        ([{"run": "42"}], True),
        ([{"repository": ["acme/app"], "org_id": "org-000"}, {"sub": "nobody"}], False),
    ],
)
def test_semantics(rules, expected):
    assert allowed(rules, CLAIMS) is expected


@pytest.mark.parametrize(
    "rules",
    [{"a": 1}, [1], [{}], [{"a": {"nested": 1}}], [{"a": []}], [{"a": [None]}]],
)
def test_invalid_shapes(rules):
    assert validate_allow(rules)


def test_warnings_when_nothing_is_pinned():
    assert pinning_warnings("github-oidc", [])
    assert pinning_warnings("github-oidc", [{"ref": "refs/heads/main"}])
    assert pinning_warnings("github-oidc", [{"repository": "acme/app"}, {"ref": "x"}])  # one rule pins nothing
    assert not pinning_warnings("github-oidc", [{"repository": "acme/app"}])
    assert not pinning_warnings("gitlab-oidc", [{"project_path": "acme/app"}])
    assert not pinning_warnings("api-key", [])
