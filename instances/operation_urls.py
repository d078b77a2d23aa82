"""The console's page of the tenant's operations across its instances, at /operations/."""

from django.urls import path

from . import views

app_name = "operations"

urlpatterns = [
    path("", views.operation_list, name="list"),
    path("live", views.operation_list_live, name="list-live"),
]
