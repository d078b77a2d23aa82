from django.urls import path

from gateway import views as gateway_views
from tasks import views as task_views

from . import views

app_name = "instances"

urlpatterns = [
    path("", views.instance_list, name="list"),
    path("new", views.instance_create, name="create"),
    path("<str:instance_id>", views.instance_detail, name="detail"),
    path("<str:instance_id>/destroy", views.instance_destroy, name="destroy"),
    path("<str:instance_id>/config", views.instance_config, name="config"),
    path("<str:instance_id>/tasks", task_views.instance_tasks, name="tasks"),
    path("<str:instance_id>/gateway", gateway_views.instance_gateway, name="gateway"),
    path("<str:instance_id>/<str:verb>", views.instance_action, name="action"),
]
