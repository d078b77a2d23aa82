"""The embedded mode: django-rq reaches the one in-memory Redis through its own USE_REDIS_CACHE
option, with nothing patched, so the API, the workers and the scheduler see the same queue."""

from __future__ import annotations

import django_rq
import pytest
from django.conf import settings
from django_rq.cron import DjangoCronScheduler

from orchestrio.redis import get_redis

pytestmark = pytest.mark.skipif(not settings.EMBEDDED_REDIS, reason="REDIS_URL is set: no embedded Redis")


def test_django_rq_queues_use_the_embedded_redis():
    for name in settings.RQ_QUEUES:
        assert django_rq.get_connection(name) is get_redis()
        assert django_rq.get_queue(name).connection is get_redis()


def test_a_job_enqueued_through_django_rq_is_in_the_shared_redis():
    queue = django_rq.get_queue("periodic")
    queue.empty()
    job = queue.enqueue("orchestrio.jobs.purge_idempotency_keys")
    assert get_redis().lrange(queue.key, 0, -1) == [job.id.encode()]
    queue.empty()


def test_django_rq_cron_scheduler_takes_the_same_connection():
    scheduler = DjangoCronScheduler()
    scheduler.register(len, queue_name="periodic", interval=60)
    assert scheduler.connection is get_redis()


def test_django_rq_is_not_patched():
    import django_rq.connection_utils
    import django_rq.cron
    import django_rq.queues
    import django_rq.utils

    for module in (django_rq.connection_utils, django_rq.queues, django_rq.cron, django_rq.utils):
        assert module.get_redis_connection.__module__ == "django_rq.connection_utils", module
