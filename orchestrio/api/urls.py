from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("api-tokens", views.ApiTokenViewSet, basename="api-token")
router.register("activity", views.ActivityViewSet, basename="activity")
router.register("members", views.MemberViewSet, basename="member")
router.register("invitations", views.InvitationViewSet, basename="invitation")
router.register("notifications", views.NotificationViewSet, basename="notification")

urlpatterns = [
    path("tenant", views.TenantView.as_view(), name="tenant"),
    *router.urls,
]
