from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("instances", views.InstanceViewSet, basename="instance")
router.register("operations", views.OperationViewSet, basename="operation")
router.register("blueprints", views.BlueprintViewSet, basename="blueprint")

urlpatterns = [
    path("plans", views.CatalogueView.as_view(), name="plans"),
    path("regions", views.RegionListView.as_view(), name="regions"),
    *router.urls,
]
