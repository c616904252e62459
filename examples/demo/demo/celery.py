"""The demo's Celery app: its broker is DEMO_REDIS_URL (tasks run inline without it).

Run with ``celery -A demo worker`` and, on one host only, ``celery -A demo beat``.
"""

import os
import time

from celery import Celery
from celery.signals import before_task_publish

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

app = Celery("demo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@before_task_publish.connect
def stamp_ticks(sender: str | None = None, body: object = None, **_kwargs: object) -> None:
    """Beat's ticks carry the time beat sent them (body is (args, kwargs, embed))."""
    if sender == "hello.tasks.tick" and isinstance(body, tuple) and len(body) > 1 and isinstance(body[1], dict):
        body[1]["sent_at"] = time.time()
