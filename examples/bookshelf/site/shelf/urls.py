from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("whoami", views.whoami, name="whoami"),
    path("notes", views.notes, name="notes"),
    # Before media/<name>, which would otherwise take "upload" as a file name.
    path("media/upload", views.upload, name="upload"),
    path("media/<str:name>", views.media, name="media"),
]
