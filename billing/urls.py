from django.urls import path

from . import views

app_name = "billing"

urlpatterns = [
    path("", views.billing_overview, name="overview"),
    path("checkout/<str:plan_id>", views.billing_checkout, name="checkout"),
    path("portal", views.billing_portal, name="portal"),
    path("alerts", views.alerts_page, name="alerts"),
    path("alerts/live", views.alert_deliveries_live, name="alerts-live"),  # before the actions
    path("alerts/<str:action>", views.alerts_action, name="alerts-action"),
]
