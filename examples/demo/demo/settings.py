"""Settings for the demo project.

Everything that varies per host is read from DEMO_* environment variables.
The deployment imports this module (``from demo.settings import *``) and adds
its own overlay (static root, proxy handling, ...) on top.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = os.environ.get("DEMO_DEBUG", "0") == "1"

SECRET_KEY = os.environ.get("DEMO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DEMO_SECRET_KEY must be set (or DEMO_DEBUG=1)")
    SECRET_KEY = "insecure-demo-debug-key"  # noqa: S105  (DEMO_DEBUG=1 only)

ALLOWED_HOSTS = [host.strip() for host in os.environ.get("DEMO_ALLOWED_HOSTS", "localhost").split(",") if host.strip()]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "channels",
    "hello",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"

ASGI_APPLICATION = "demo.asgi.application"

# SQLite unless DEMO_DB_HOST names a PostgreSQL server.
DB_HOST = os.environ.get("DEMO_DB_HOST", "")
if DB_HOST:
    DB_PASSWORD = os.environ.get("DEMO_DB_PASSWORD", "")
    if not DB_PASSWORD:
        raise ImproperlyConfigured("DEMO_DB_PASSWORD must be set when DEMO_DB_HOST is set")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": DB_HOST,
            "PORT": os.environ.get("DEMO_DB_PORT", "5432"),
            "NAME": os.environ.get("DEMO_DB_NAME", "demo"),
            "USER": os.environ.get("DEMO_DB_USER", "demo"),
            "PASSWORD": DB_PASSWORD,
            "CONN_MAX_AGE": 0,
            "OPTIONS": {"connect_timeout": 5},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DEMO_DATABASE_PATH", str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": {"timeout": 20},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"

# Redis, when DEMO_REDIS_URL names it: the Channels layer (groups shared by
# every process of every host) and Celery's broker. Without it, one process's
# memory and tasks run inline.
REDIS_URL = os.environ.get("DEMO_REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 times a socket read out after 5 s by default, which
            # cuts the layer's blocking reads (and every WebSocket) each 5 s.
            "CONFIG": {
                "hosts": [{"address": os.environ.get("DEMO_CHANNELS_REDIS_URL", REDIS_URL), "socket_timeout": None}]
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_TASK_ALWAYS_EAGER = True
# A task is acknowledged once done, and a worker takes one at a time: a worker
# stopped with SIGTERM finishes its task, and leaves the rest in the queue.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "tick": {"task": "hello.tasks.tick", "schedule": float(os.environ.get("DEMO_TICK_SECONDS", "1"))},
}
