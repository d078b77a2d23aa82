from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Tasks"

    def ready(self) -> None:
        from instances import hooks, pages
        from orchestrio import hooks as core_hooks
        from orchestrio import quotas
        from orchestrio.metrics import register_database_figures

        from . import links, metrics, selectors, views
        from .reconciler import reconcile_tasks

        hooks.on_reconcile(reconcile_tasks)
        pages.register(route="tasks", view=views.instance_tasks, name="tasks", tab="Tasks")
        pages.register(route="tasks/live", view=views.instance_tasks_live, name="tasks-live")
        register_database_figures(metrics.database_figures)
        quotas.on_count_executions(selectors.task_executions, tenants=selectors.task_tenants)
        core_hooks.on_object_links("task", links.task_links)
