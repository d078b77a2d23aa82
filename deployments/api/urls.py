from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("deployments", views.DeploymentViewSet, basename="deployment")

urlpatterns = router.urls
