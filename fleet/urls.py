from django.urls import path

from . import views

app_name = "fleet"

urlpatterns = [
    path("", views.request_list, name="list"),
    path("live", views.request_list_live, name="list-live"),
    path("<str:request_id>", views.request_detail, name="detail"),
    path("<str:request_id>/live", views.request_detail_live, name="detail-live"),
    path("<str:request_id>/return", views.request_return, name="return"),
]
