from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("requests", views.FleetRequestViewSet, basename="fleet-request")

urlpatterns = router.urls
