import logging
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.core.wsgi import get_wsgi_application
from waitress.server import create_server

from orchestrio.longpoll import set_server_threads
from orchestrio.schedule import build_scheduler
from orchestrio.worker import build_worker

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Serve the console and API, run a worker and the scheduler, all in this one process. "
        "This is `make run`: the embedded queue (no REDIS_URL) only exists inside this process. "
        "In production run gunicorn, `rqworker` and `scheduler` separately (see Procfile)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--threads", type=int, default=16,
            help="web server threads; long polls may hold all but LONG_POLL_RESERVED_THREADS of them",
        )  # fmt: skip
        parser.add_argument(
            "--workers", type=int, default=4,
            help="job workers (threads of this process): a slow job of one tenant never holds them all",
        )  # fmt: skip
        parser.add_argument("--no-worker", action="store_true", help="do not run a worker in this process")
        parser.add_argument("--no-scheduler", action="store_true", help="do not run the scheduler in this process")

    def handle(self, *args, **options):
        # Waitress serves each request on one of these threads until it ends, long polls too:
        # they get at most all but the reserve (orchestrio/longpoll.py).
        set_server_threads(options["threads"])
        server = create_server(
            get_wsgi_application(),
            host=options["host"],
            port=options["port"],
            threads=options["threads"],
            ident="orchestrio",
            # Stream large gateway bodies through temporary files rather than memory.
            inbuf_overflow=1 << 20,
            outbuf_overflow=1 << 20,
            channel_timeout=330,  # longer than the longest long-poll (wait: 300 s)
            # Behind a proxy, pass its X-Forwarded-* on as gunicorn does: Django decides how far
            # to trust them (TRUSTED_PROXY_COUNT). Waitress would otherwise drop them.
            clear_untrusted_proxy_headers=not settings.TRUSTED_PROXY_COUNT,
        )
        threading.Thread(target=server.run, name="web", daemon=True).start()
        mode = "embedded queue (no Redis server)" if settings.EMBEDDED_REDIS else "Redis at REDIS_URL"
        self.stdout.write(
            f"Orchestrio on http://{options['host']}:{options['port']}  (console /, API /api/v1/, docs /docs, admin /admin/)"
        )
        self.stdout.write(f"Queue: {mode}. Database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}.")

        if not options["no_scheduler"]:
            threading.Thread(target=build_scheduler().start, name="scheduler", daemon=True).start()
        try:
            if options["no_worker"]:
                threading.Event().wait()
            else:
                self.stdout.write(f"Workers: {max(1, options['workers'])}.")
                for number in range(1, max(1, options["workers"])):
                    threading.Thread(target=lambda: build_worker().work(logging_level="WARNING"), name=f"worker-{number}", daemon=True).start()
                build_worker().work(logging_level="WARNING")  # main thread: RQ installs its signal handlers
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
            self.stdout.write("Stopped.")
