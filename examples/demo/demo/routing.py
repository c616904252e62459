from django.urls import path

from hello.consumers import EchoConsumer

websocket_urlpatterns = [
    path("ws/echo", EchoConsumer.as_asgi()),
]
