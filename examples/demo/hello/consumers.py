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
