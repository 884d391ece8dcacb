"""An asyncio event loop on its own thread, for servers a test starts and stops."""

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run `work` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def stop(self, *servers: asyncio.Server) -> None:
        """Close `servers`, let their connections wind down, then stop the loop."""

        async def close() -> None:
            for server in servers:
                server.close()
            await asyncio.sleep(0.05)  # connection_lost callbacks of closed transports
            # handlers still running (a sink told to stall): cancelled, not left to warn
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
