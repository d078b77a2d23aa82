"""The models a fresh installation offers instances, with their prices per 1,000 tokens. Data,
edited in the admin afterwards; the seed never overwrites an existing row. `default` is the model
an instance's agent answers with when no model policy names one."""

from decimal import Decimal

MODELS = [
    {"id": "default", "name": "The instance's own responder", "price_in_per_1k": Decimal("0"), "price_out_per_1k": Decimal("0"), "sort_order": 0},
    {"id": "openclaw-fast", "name": "OpenClaw Fast", "price_in_per_1k": Decimal("0.0005"), "price_out_per_1k": Decimal("0.0015"), "sort_order": 1},
    {"id": "openclaw-large", "name": "OpenClaw Large", "price_in_per_1k": Decimal("0.003"), "price_out_per_1k": Decimal("0.015"), "sort_order": 2},
]


def seed(LanguageModel) -> None:
    for row in MODELS:
        LanguageModel.objects.get_or_create(id=row["id"], defaults=row)
