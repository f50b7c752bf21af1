"""The asyncio driver against a real server: clock, HTTP client, last-byte sender, runner, targets, run_live."""
