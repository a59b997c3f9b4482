from board import views
from django.urls import path

urlpatterns = [
    path("healthz", views.healthz),
    path("version", views.version),
    path("notes", views.notes),
]
