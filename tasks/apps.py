from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Tasks"

    def ready(self) -> None:
        from instances import hooks, pages

        from . import views
        from .reconciler import reconcile_tasks

        hooks.on_reconcile(reconcile_tasks)
        pages.register(route="tasks", view=views.instance_tasks, name="tasks", tab="Tasks")
