"""The pure core: decisions and data, no I/O (no asyncio, httpx or gevent imports)."""
