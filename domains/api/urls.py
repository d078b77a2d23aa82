from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
# Under the instance's path, with the instances app's names (`api:instance-custom-domain`…).
router.register("instances", views.InstanceCustomDomainViewSet, basename="instance")

urlpatterns = router.urls
