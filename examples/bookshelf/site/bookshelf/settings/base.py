"""Settings shared by every bookshelf environment.

Secrets and the database come from BOOKSHELF_* environment variables;
anything else a host needs goes into settings/local.py.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = os.environ.get("BOOKSHELF_SECRET", "")
if not SECRET_KEY:
    raise ImproperlyConfigured("BOOKSHELF_SECRET is not set: export it with the site's secret key")

DEBUG = False

ALLOWED_HOSTS = ["bookshelf.example.com"]

SITE_TITLE = "Bookshelf"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "shelf",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Right after SecurityMiddleware, so static files skip the rest of the stack.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bookshelf.urls"

WSGI_APPLICATION = "bookshelf.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
            ],
        },
    },
]

# PostgreSQL in production; SQLite lets the project be tried without a server.
DB_HOST = os.environ.get("BOOKSHELF_DB_HOST", "")
if DB_HOST:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": DB_HOST,
            "NAME": os.environ.get("BOOKSHELF_DB_NAME", "bookshelf"),
            "USER": os.environ.get("BOOKSHELF_DB_USER", "bookshelf"),
            "PASSWORD": os.environ.get("BOOKSHELF_DB_PASSWORD", ""),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BOOKSHELF_SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"

MEDIA_ROOT = "/data/media"
MEDIA_URL = "/media/"

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, pre-compressed names so browsers can cache static files forever.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
