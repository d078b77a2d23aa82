from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
# Under the instance's path, with the instances app's names (`api:instance-chat`…).
router.register("instances", views.InstanceRuntimeViewSet, basename="instance")

urlpatterns = [path("models", views.LanguageModelListView.as_view(), name="models"), *router.urls]
