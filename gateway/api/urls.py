from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register(r"instances/(?P<instance_id>[^/]+)/gateway-policies", views.InstancePolicyViewSet, basename="instance-gateway-policy")
router.register("gateway-policies", views.PolicyViewSet, basename="gateway-policy")
# Under the instance's path, with the instances app's names (`api:instance-request-metrics`).
router.register("instances", views.InstanceRequestMetricsViewSet, basename="instance")

urlpatterns = router.urls
