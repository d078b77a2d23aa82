from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("instances", views.InstanceViewSet, basename="instance")
router.register("blueprints", views.BlueprintViewSet, basename="blueprint")

urlpatterns = router.urls
