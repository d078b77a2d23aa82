from django.urls import path

from . import views

app_name = "deployments"

urlpatterns = [
    path("", views.deployment_list, name="list"),
    path("new", views.deployment_create, name="create"),
    path("live", views.deployment_list_live, name="list-live"),
    path("<str:deployment_id>", views.deployment_detail, name="detail"),
    path("<str:deployment_id>/rollback", views.deployment_rollback, name="rollback"),
    path("<str:deployment_id>/delete", views.deployment_delete, name="delete"),
    path("<str:deployment_id>/live", views.deployment_detail_live, name="detail-live"),
]
