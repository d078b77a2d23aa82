from ..instances.conftest import live, make_instance, running  # noqa: F401 - fixtures
