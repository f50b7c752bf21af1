"""A small stdlib-only integration (hook receiver + Orders API client) for integration-mode tests.

Run as a child process: `python tests/integration_service.py --kind KIND --api-url URL [--port 0]`;
it prints `listening on http://127.0.0.1:PORT` once it listens. Kinds (what a team's service might do):
- naive: on the `handling` hook, read the order and invoice the value it reads (races);
- guarded: wait until every Change of the order is finished, then invoice the final value;
- dedup: naive, but each (order, state) is handled once (duplicates from the delivery plan are ignored);
- idle: accepts every hook and never invoices;
- error500: answers the ping with 200 and every notification with 500;
- double: invoices twice (a second invoice number for the same value).
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
import time
import urllib.request
import uuid
from typing import Any


def _call(api: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
    except urllib.error.HTTPError as err:
        err.read()
        return None
    return json.loads(raw) if raw else None


def _finished(api: str, order_id: str) -> bool:
    hist = _call(api, "GET", f"/api/order-system/orders/{order_id}/changes?an=mockstore") or {}
    return all(r.get("finished") for r in hist.get("requests") or [])


def _invoice(api: str, order_id: str, kind: str) -> None:
    if kind == "guarded":
        deadline = time.monotonic() + 5
        while not _finished(api, order_id) and time.monotonic() < deadline:
            time.sleep(0.05)
    order = _call(api, "GET", f"/api/oms/pvt/orders/{order_id}") or {}
    value = order.get("value")
    if value is None:
        return
    for _ in range(2 if kind == "double" else 1):
        _call(api, "POST", f"/api/oms/pvt/orders/{order_id}/invoice",
              {"type": "Output", "invoiceNumber": uuid.uuid4().hex[:10], "invoiceValue": value,
               "issuanceDate": "2026-01-01T00:00:00Z",
               # the OMS route requires items (SPEC invoice notification): the whole value as one line
               "items": [{"id": "1", "price": value, "quantity": 1}]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", required=True)
    ap.add_argument("--api-url", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    api, kind = args.api_url.rstrip("/"), args.kind
    seen: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def handle(order_id: str, state: str) -> None:
        if state != "handling":
            return
        if kind == "dedup":
            with lock:
                if (order_id, state) in seen:
                    return
                seen.add((order_id, state))
        threading.Thread(target=_invoice, args=(api, order_id, kind), daemon=True).start()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            ping = body.get("hookConfig") == "ping"
            code = 500 if kind == "error500" and not ping else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if not ping and code == 200 and kind != "idle":
                handle(str(body.get("OrderId")), str(body.get("State")))

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Hook)
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
