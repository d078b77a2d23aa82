"""Console pages of an instance's custom domain, under the instance's URL (included at
`instances/` by the root URLconf, before the instances app's own pages)."""

from django.urls import path

from . import views

app_name = "domains"

urlpatterns = [
    path("<str:instance_id>/domain", views.instance_domain, name="domain"),
    path("<str:instance_id>/domain/<str:action>", views.instance_domain_action, name="domain-action"),
]
