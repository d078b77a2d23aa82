from django.urls import path

from . import pages, views

app_name = "instances"

urlpatterns = [
    path("", views.instance_list, name="list"),
    path("new", views.instance_create, name="create"),
    path("live", views.instance_list_live, name="list-live"),  # (`live` is a reserved instance id: instances/hostnames.py)
    path("<str:instance_id>", views.instance_detail, name="detail"),
    path("<str:instance_id>/destroy", views.instance_destroy, name="destroy"),
    path("<str:instance_id>/config", views.instance_config, name="config"),
    path("<str:instance_id>/live", views.instance_detail_live, name="detail-live"),
    path("<str:instance_id>/header/live", views.instance_header_live, name="header-live"),  # its tab pages' heading
    *pages.urlpatterns(),  # the pages other apps add (tasks, gateway, domain): before the catch-all
    path("<str:instance_id>/<str:verb>", views.instance_action, name="action"),
]
