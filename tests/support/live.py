"""The HTTP API served by uvicorn on a real loopback socket, in a background thread."""

import asyncio
import socket
import threading
import time

import httpx
import uvicorn

from api.app import create_app
from engine.runtime import Runtime


class LiveServer:
    """Start with `LiveServer(runtime)`, stop with `.stop()`; `.url` is the base URL."""

    def __init__(
        self,
        runtime: Runtime,
        suppression_rate: str = "1000/minute",
        stats_rate: str = "1000/minute",
    ) -> None:
        self.runtime = runtime
        sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(
                runtime,
                enable_noop=True,
                suppression_rate=suppression_rate,
                stats_rate=stats_rate,
            ),
            lifespan="on",
            log_config=None,
            access_log=False,
            http="httptools",
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[sock])), daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self._thread.join(timeout=15)
