"""An HTTP load generator for Serve tests: concurrent clients in a closed loop, every outcome kept."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Load:
    """``clients`` concurrent HTTP clients posting to ``url`` until stopped; every outcome recorded."""

    url: str
    body: dict
    clients: int = 6
    results: list[tuple[float, int | str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _client(self, http: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            try:
                r = await http.post(self.url, json=self.body)
                self.results.append((time.monotonic(), r.status_code))
            except Exception as e:
                self.results.append((time.monotonic(), type(e).__name__))

    async def _main(self) -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            await asyncio.gather(*(self._client(http) for _ in range(self.clients)))

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=150)

    def failures(self) -> list[tuple[float, int | str]]:
        return [r for r in self.results if r[1] != 200]
