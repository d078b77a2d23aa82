from django.urls import path

from . import views

app_name = "gateway"

urlpatterns = [
    path("policies/<str:policy_id>/toggle", views.policy_toggle, name="policy-toggle"),
    path("policies/<str:policy_id>/delete", views.policy_delete, name="policy-delete"),
]
