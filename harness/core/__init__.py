"""The pure core: scenario, plan, request bodies, history, oracle and trials.csv rows.

No I/O, no clock, no event loop: every driver (asyncio live and simulated runs,
integration mode, the gevent load mode) makes the same decisions by calling
these modules, so the modes cannot drift apart. Nothing here imports asyncio,
httpx, gevent, pandas, numpy, matplotlib, fastapi or locust
(tests/test_layout.py checks it).
"""
