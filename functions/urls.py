from django.urls import path

from . import views

app_name = "functions"

urlpatterns = [
    path("", views.function_list, name="list"),
    path("<str:function_id>", views.function_detail, name="detail"),
    path("<str:function_id>/live", views.function_detail_live, name="detail-live"),
    path("<str:function_id>/deploy", views.function_deploy, name="deploy"),
    path("<str:function_id>/invoke", views.function_invoke, name="invoke"),
    path("<str:function_id>/rotate-key", views.function_rotate_key, name="rotate-key"),
    path("<str:function_id>/delete", views.function_delete, name="delete"),
]
