"""WSGI entry point of bookshelf."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bookshelf.settings.production")

application = get_wsgi_application()
