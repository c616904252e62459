"""ASGI entry point: Django for HTTP, Channels for WebSockets."""

import os

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

# Set up Django before anything imports models (the consumers, the routing).
django_asgi_app = get_asgi_application()

from demo.routing import websocket_urlpatterns  # noqa: E402  (needs Django set up first)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
