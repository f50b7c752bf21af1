// A small Node.js integration (no dependencies) for the scorecard's cross-language test.
// Usage: node tests/hazard_service.js API_URL  -> prints "listening on http://127.0.0.1:PORT".
// On a `handling` hook it waits until every Change of the order is `finished` (it ignores
// `canceled`: the bug the failed-change hazard exposes), then invoices the order's value once.
"use strict";
const http = require("http");
const api = process.argv[2];
const seen = new Set();

async function call(method, path, body) {
  const res = await fetch(api + path, {
    method, headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
}

async function invoice(orderId) {
  const deadline = Date.now() + 1500; // bounded wait for `finished`
  for (;;) {
    const h = await call("GET", `/api/order-system/orders/${orderId}/changes`);
    if ((h.body.requests || []).every((r) => r.finished === true)) break;
    if (Date.now() > deadline) return; // gives up: the order is never invoiced
    await new Promise((r) => setTimeout(r, 50));
  }
  const order = (await call("GET", `/api/oms/pvt/orders/${orderId}`)).body;
  await call("POST", `/api/orders/pvt/document/${orderId}/invoices`, {
    type: "Output", issuedDate: new Date().toISOString().slice(0, 10), invoiceNumber: `NODE-${orderId}`,
    invoiceValue: order.value,
    items: order.items.map((it, n) => ({ itemIndex: n, price: it.sellingPrice * it.quantity, quantity: it.quantity })),
  });
}

const server = http.createServer((req, res) => {
  let raw = "";
  req.on("data", (c) => { raw += c; });
  req.on("end", () => {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end("{}");
    let hook;
    try { hook = JSON.parse(raw || "{}"); } catch { return; }
    const key = `${hook.OrderId}/${hook.State}`;
    if (hook.State !== "handling" || seen.has(key)) return; // dedup by order + status
    seen.add(key);
    invoice(hook.OrderId).catch((e) => console.error(`order ${hook.OrderId}: ${e}`));
  });
});
server.listen(0, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${server.address().port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
