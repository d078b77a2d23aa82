from django.core.management.base import BaseCommand, CommandError

from orchestrio import services
from orchestrio.choices import Role
from orchestrio.errors import DomainError
from orchestrio.models import Membership
from orchestrio.tenancy import Actor, Principal


class Command(BaseCommand):
    help = "Create a tenant with its owner. With --token, print a new ork_live_ token as the last line."

    def add_arguments(self, parser):
        parser.add_argument("tenant_id", help="3–63 lowercase letters, digits and hyphens")
        parser.add_argument("--owner", required=True, help="The owner's email (an existing user is reused)")
        parser.add_argument("--name", help="Display name (default: the tenant id)")
        parser.add_argument("--plan", default="starter", help="Subscription plan id (starter, pro, team)")
        parser.add_argument("--token", action="store_true", help="Also issue an ork_live_ token and print it last")

    def handle(self, *args, **options):
        actor = Actor.system("cli:createtenant")
        try:
            tenant = services.tenant_create(
                tenant_id=options["tenant_id"],
                name=options["name"] or options["tenant_id"],
                owner_email=options["owner"],
                plan_id=options["plan"],
                actor=actor,
            )
        except DomainError as exc:
            raise CommandError(_message(exc)) from exc
        owner = Membership.objects.get(tenant=tenant, role=Role.OWNER).user
        self.stdout.write(f"Created tenant {tenant.pk} (plan {tenant.plan_id}) owned by {owner.get_username()}.")
        if owner.has_usable_password() is False:
            self.stdout.write(f"Set the owner's console password with: python manage.py changepassword {owner.get_username()}")
        if options["token"]:
            principal = Principal(tenant=tenant, role=Role.OWNER, user=owner)
            _, plaintext = services.api_token_create(principal=principal, name="createtenant", mode="live", actor=actor)
            self.stdout.write(plaintext)


def _message(exc: DomainError) -> str:
    if isinstance(exc.detail, str):
        return exc.detail
    return str(exc)
