"""Instance plans, regions and built-in blueprints a fresh installation starts with. Data, edited
in the admin afterwards; the seed never overwrites an existing row."""

from decimal import Decimal

INSTANCE_PLANS = [
    {
        "id": "openclaw-basic",
        "name": "OpenClaw Basic",
        "instance_type": "t3.small",
        "vcpus": 2,
        "memory_mib": 2048,
        "price_per_hour": Decimal("0.0208"),
        "supports_hibernation": True,
        "sort_order": 1,
    },
    {
        "id": "openclaw-pro",
        "name": "OpenClaw Pro",
        "instance_type": "t3.large",
        "vcpus": 2,
        "memory_mib": 8192,
        "price_per_hour": Decimal("0.0832"),
        "supports_hibernation": True,
        "sort_order": 2,
    },
]

REGIONS = [
    {"id": "local", "name": "This host (local processes)", "provider": "local", "provider_region": "", "sort_order": 0},
    {"id": "iad", "name": "Washington, DC (US)", "provider": "aws", "provider_region": "us-east-1", "sort_order": 1},
    {"id": "fra", "name": "Frankfurt (DE)", "provider": "aws", "provider_region": "eu-central-1", "sort_order": 2},
    {"id": "sjc", "name": "San Jose, CA (US)", "provider": "aws", "provider_region": "us-west-1", "sort_order": 3},
    {"id": "gru", "name": "São Paulo (BR)", "provider": "aws", "provider_region": "sa-east-1", "sort_order": 4},
    {"id": "nrt", "name": "Tokyo (JP)", "provider": "aws", "provider_region": "ap-northeast-1", "sort_order": 5},
]

BLUEPRINTS = [
    {
        "name": "OpenClaw",
        "description": "The OpenClaw agent runtime with the Orchestrio instance agent.",
        "provider_api": "RunInstances",
        # Latest Ubuntu 24.04 LTS AMI, resolved by EC2 from the public SSM parameter.
        "image_id": "resolve:ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
        "health_path": "/health",
        "agent_port": 8080,
        "tags": {"product": "openclaw"},
        "task_roots": ["/opt/openclaw/scripts", "/opt/orchestrio/scripts"],
    },
    {
        # The machine a tenant's functions run on when FUNCTIONS_BACKEND is `instance`
        # (docs/functions.md, "Where functions run"): its agent runs the function host the control
        # plane pushes. Amazon Linux 2023 packages the runtimes functions offer and bubblewrap.
        "name": "Function host",
        "description": "Runs the tenant's functions (the function host under the instance agent), with Python 3.11, Node.js 20 and bubblewrap.",
        "provider_api": "RunInstances",
        "image_id": "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        "health_path": "/health",
        "agent_port": 8080,
        "tags": {"product": "orchestrio-functions"},
        "user_data": (
            "dnf install -y python3.11 nodejs20 bubblewrap util-linux || dnf install -y python3.11 nodejs20 || true\n"
            "[ -e /usr/bin/node ] || ln -s /usr/bin/node-20 /usr/bin/node || true\n"
        ),
    },
]


def seed(InstancePlan, Region, Blueprint) -> None:
    for row in INSTANCE_PLANS:
        InstancePlan.objects.get_or_create(id=row["id"], defaults=row)
    for row in REGIONS:
        Region.objects.get_or_create(id=row["id"], defaults=row)
    for row in BLUEPRINTS:
        Blueprint.objects.get_or_create(tenant=None, name=row["name"], defaults=row)
