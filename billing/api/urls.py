from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("alerts/deliveries", views.AlertDeliveryViewSet, basename="alert-delivery")
# Under the instance's path, with the instances app's names (`api:instance-usage`).
router.register("instances", views.InstanceUsageViewSet, basename="instance")

urlpatterns = [
    path("billing/checkout", views.CheckoutView.as_view(), name="billing-checkout"),
    path("billing/portal", views.PortalView.as_view(), name="billing-portal"),
    path("usage/current", views.UsageCurrentView.as_view(), name="usage-current"),
    path("alerts", views.AlertConfigView.as_view(), name="alerts"),
    path("alerts/test", views.AlertDeliveryViewSet.as_view({"post": "test"}), name="alerts-test"),
    path("alerts/rotate-secret", views.AlertDeliveryViewSet.as_view({"post": "rotate_secret"}), name="alerts-rotate-secret"),
    path("dashboard/summary", views.DashboardView.as_view(), name="dashboard-summary"),
    *router.urls,
]
