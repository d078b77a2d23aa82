"""The production URLs plus `GET /bench/bare`: the baseline of bench/api_overhead.py. It answers
the JSON in the file named by BENCH_BARE_JSON (an instance's API record) through the same server
and middleware, with no authentication, rate limit or database."""

import json
import os

from django.http import JsonResponse
from django.urls import path

from orchestrio.urls import handler404, handler500, urlpatterns as production  # noqa: F401

with open(os.environ["BENCH_BARE_JSON"]) as fh:
    RECORD = json.load(fh)


def bare(request):
    return JsonResponse(RECORD)


urlpatterns = [path("bench/bare", bare), *production]
