"""An ASGI client for the served app: the real routes, no sockets."""

import asyncio

import httpx
import pytest

from seqmnist.use.serve import create_app


class Client:
    """Requests to an app through httpx's ASGI transport, each in a fresh event loop."""

    def __init__(self, app) -> None:
        self.app = app

    def request(self, method: str, url: str, **options) -> httpx.Response:
        return asyncio.run(self._request(method, url, **options))

    def get(self, url: str, **options) -> httpx.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options) -> httpx.Response:
        return self.request("POST", url, **options)

    def post_many(self, requests: list[dict]) -> list[httpx.Response]:
        """All of ``requests`` (post options) at once, as concurrent clients would send them."""

        async def send_all():
            async with self._client() as client:
                return await asyncio.gather(
                    *(client.post(options.pop("url"), **options) for options in requests)
                )

        return asyncio.run(send_all())

    async def _request(self, method: str, url: str, **options) -> httpx.Response:
        async with self._client() as client:
            return await client.request(method, url, **options)

    def _client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
def serve():
    """Build the app for some runs; its model threads stop after the test."""
    apps = []

    def build(run_dirs, **options) -> Client:
        app = create_app(run_dirs, **options)
        apps.append(app)
        return Client(app)

    yield build
    for app in apps:
        app.state.close()
