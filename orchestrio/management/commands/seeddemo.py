import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from orchestrio import services
from orchestrio.choices import Role
from orchestrio.models import Tenant
from orchestrio.tenancy import Actor, Principal

DEMO_TENANT = "demo"
DEMO_EMAIL = "demo@example.com"


class Command(BaseCommand):
    help = "Create the demo tenant, its owner login and an ork_test_ token; print them once."

    def handle(self, *args, **options):
        if Tenant.objects.filter(pk=DEMO_TENANT).exists():
            self.stdout.write(
                f"Demo tenant '{DEMO_TENANT}' exists. Log in as {DEMO_EMAIL} with the password printed when it was "
                f"created (reset it: .venv/bin/python manage.py changepassword {DEMO_EMAIL})."
            )
            return
        password = secrets.token_urlsafe(12)
        actor = Actor.system("cli:seeddemo")
        tenant = services.tenant_create(
            tenant_id=DEMO_TENANT, name="Demo", owner_email=DEMO_EMAIL, owner_password=password, plan_id="pro", actor=actor
        )
        owner = get_user_model().objects.get(username=DEMO_EMAIL)
        _, token = services.api_token_create(
            principal=Principal(tenant=tenant, role=Role.OWNER, user=owner), name="demo", mode="test", actor=actor
        )
        rule = "=" * 72
        self.stdout.write(
            f"\n{rule}\n"
            f"  Demo tenant created (shown once; keep it):\n"
            f"    console login:  {DEMO_EMAIL}\n"
            f"    password:       {password}\n"
            f"    API token:      {token}\n"
            f"  Try:  curl -H 'Authorization: Bearer {token}' {settings.PUBLIC_URL}/api/v1/tenant\n"
            f"{rule}\n"
        )
