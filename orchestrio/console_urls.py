from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("overview/live", views.home_live, name="home-live"),
    path("login", views.console_login, name="login"),
    path("logout", auth_views.LogoutView.as_view(), name="logout"),
    path("signup", views.signup, name="signup"),
    path("account", views.account, name="account"),
    path("account/tenant", views.switch_tenant, name="switch-tenant"),
    path("account/password", auth_views.PasswordChangeView.as_view(success_url="/account?password=changed"), name="password-change"),
    path("tokens", views.tokens, name="tokens"),
    path("tokens/<int:token_pk>/revoke", views.token_revoke, name="token-revoke"),
    path("activity", views.activity, name="activity"),
    path("team", views.team, name="team"),
    path("team/members/<int:member_pk>/role", views.team_member_role, name="team-member-role"),
    path("team/members/<int:member_pk>/remove", views.team_member_remove, name="team-member-remove"),
    path("team/invitations/<int:invitation_pk>/revoke", views.team_invitation_revoke, name="team-invitation-revoke"),
    path("invitations/<str:token>", views.invitation_link, name="invitation-link"),
    path("invitation", views.invitation, name="invitation"),
    path("notifications", views.notifications, name="notifications"),
    path("notifications/bell", views.notifications_bell, name="notifications-bell"),
    path("notifications/live", views.notifications_live, name="notifications-live"),
    path("notifications/read-all", views.notifications_read_all, name="notifications-read-all"),
    path("notifications/<int:notification_pk>/read", views.notification_read, name="notification-read"),
]
