from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("functions", views.FunctionViewSet, basename="function")

urlpatterns = [path("functions/check-name/<str:name>", views.FunctionNameCheckView.as_view(), name="function-check-name"), *router.urls]
