import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from gateway.devissuer import IssuerServer


class Command(BaseCommand):
    help = (
        "Run a development OIDC issuer on 127.0.0.1 and print a token it signed, to try OIDC gateway "
        "policies locally (needs OUTBOUND_ALLOW_LOOPBACK, on with make run). Never for production."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=9000)
        parser.add_argument("--audience", default="orchestrio")
        parser.add_argument("--subject", default="repo:acme/app:ref:refs/heads/main")
        parser.add_argument("--claim", action="append", default=[], help="extra claim name=value (repeatable)")
        parser.add_argument("--lifetime", type=int, default=3600, help="token lifetime in seconds")

    def handle(self, *args, **options):
        if not settings.OUTBOUND_ALLOW_LOOPBACK:
            raise CommandError("OUTBOUND_ALLOW_LOOPBACK is off: policies would refuse an http:// issuer (run with DEBUG=1)")
        claims = {}
        for item in options["claim"]:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--claim wants name=value, not {item!r}")
            claims[name] = value
        server = IssuerServer(options["port"]).start()
        issuer = server.add("dev")
        token = issuer.token(audience=options["audience"], subject=options["subject"], lifetime=options["lifetime"], **claims)
        policy = {"slug": "ci", "provider": "oidc", "issuer": issuer.url, "audience": options["audience"], "allow": [{"sub": options["subject"]}]}
        self.stdout.write(f"issuer:  {issuer.url}  (discovery at /.well-known/openid-configuration)")
        self.stdout.write(f"policy:  {json.dumps(policy)}")
        self.stdout.write(f"token (valid {options['lifetime']} s):\n{token}")
        self.stdout.write("Serving the key set until Ctrl-C.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.shutdown()
