"""Benchmark-only settings: production settings plus the bare view of bench/urls.py."""

from orchestrio.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
