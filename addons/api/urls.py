from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register(r"instances/(?P<instance_id>[^/]+)/addons", views.InstanceAddOnViewSet, basename="instance-addon")
router.register("addons", views.AddOnViewSet, basename="addon")

urlpatterns = router.urls
