from django.urls import path

from hello.consumers import EchoConsumer, GroupConsumer

websocket_urlpatterns = [
    path("ws/echo", EchoConsumer.as_asgi()),
    path("ws/group/<slug:group>", GroupConsumer.as_asgi()),
]
