import json

from channels.generic.websocket import AsyncWebsocketConsumer

from hello.runtime import RELEASE, SERVER


class EchoConsumer(AsyncWebsocketConsumer):
    """Greets on connect, then sends every message back unchanged."""

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=json.dumps({"hello": True, "release": RELEASE, "server": SERVER}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=text_data)
        elif bytes_data is not None:
            await self.send(bytes_data=bytes_data)


class GroupConsumer(AsyncWebsocketConsumer):
    """Joins the group named in the path; what one member sends, every member gets.

    Through a shared channel layer (Redis), members on other processes and hosts too.
    """

    async def connect(self) -> None:
        self.group = "demo-" + self.scope["url_route"]["kwargs"]["group"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data=json.dumps({"hello": True, "release": RELEASE, "server": SERVER}))

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            message = {"type": "group.message", "text": text_data, "server": SERVER}
            await self.channel_layer.group_send(self.group, message)

    async def group_message(self, event: dict) -> None:
        await self.send(text_data=json.dumps({"message": event["text"], "from": event["server"]}))
