from django.urls import path

from . import views

app_name = "addons"

urlpatterns = [
    path("backups/download/<str:token>", views.backup_download, name="backup-download"),
]
