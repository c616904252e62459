from django.urls import path

from hello import views

urlpatterns = [
    path("", views.index),
    path("async", views.index_async),
    path("whoami", views.whoami),
    path("slow", views.slow),
    path("db", views.db),
    path("tasks", views.tasks),
    path("tasks/<int:job_id>", views.task),
    path("ticks", views.ticks),
]
