"""URLs of the tenant_cache Django example."""
from django.urls import path

from core import views

urlpatterns = [
    path("dashboard/metrics/", views.dashboard_metrics, name="dashboard-metrics"),
    path("dropdown/people/", views.people_dropdown, name="people-dropdown"),
]
