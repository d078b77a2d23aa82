from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register(r"instances/(?P<instance_id>[^/]+)/tasks", views.InstanceTaskViewSet, basename="instance-task")
router.register("tasks", views.TaskViewSet, basename="task")

urlpatterns = router.urls
