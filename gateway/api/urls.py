from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register(r"instances/(?P<instance_id>[^/]+)/gateway-policies", views.InstancePolicyViewSet, basename="instance-gateway-policy")
router.register("gateway-policies", views.PolicyViewSet, basename="gateway-policy")

urlpatterns = router.urls
