# Celery's app, so that @shared_task binds to it wherever Django runs.
from demo.celery import app as celery_app

__all__ = ("celery_app",)
