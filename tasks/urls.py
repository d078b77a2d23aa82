from django.urls import path

from . import views

app_name = "tasks"

urlpatterns = [
    path("<str:task_id>", views.task_detail, name="detail"),
    path("<str:task_id>/cancel", views.task_cancel, name="cancel"),
    path("<str:task_id>/live", views.task_detail_live, name="detail-live"),
]
