#!/usr/bin/env node
// A reference ERP connector in Node.js (>= 20; stdlib `http` and global `fetch`, no npm packages):
// the same hook -> invoice flow as harness/connectors/erp_connector.py, for cross-language tests.
//
//   VTEX_APP_KEY=... VTEX_APP_TOKEN=... node erp_connector.mjs --mode naive|robust --api-url URL \
//       [--host 127.0.0.1] [--port 0] [--timeout-ms 5000] [--retry-budget-s 60]
//
// POST /hook answers 200 at once and works in the background; GET /health. Prints
// `listening on http://HOST:PORT` once ready; on SIGTERM/SIGINT it stops taking hooks, waits (bounded)
// for in-flight invoices and exits 0.
// naive: on `handling`, read the order and invoice its remaining value (races KI-1348894).
// robust: one action per (orderId, State) (hooks are at-least-once); a cancel hook is noted whatever
// order hooks arrive in; wait until every Change is finished or canceled (a canceled Change keeps
// finished:false for ever, HC-ADAPT); re-read, skip a canceling/canceled order (KI-1400005); invoice
// number ERP-{orderId}, so a retry is idempotent (409 on the PII route -> re-read shows it landed);
// 429/5xx honour Retry-After within the retry budget (VTEX advises a 1-minute back-off).
import http from "node:http";
import { parseArgs } from "node:util";

const { values: opt } = parseArgs({
  options: {
    mode: { type: "string" }, "api-url": { type: "string" }, host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "0" }, "timeout-ms": { type: "string", default: "5000" },
    "retry-budget-s": { type: "string", default: "60" },
  },
});
const fail = (msg) => { console.error(`erp_connector.mjs: ${msg}`); process.exit(2); };
if (!["naive", "robust"].includes(opt.mode)) fail(`--mode must be naive or robust; got ${opt.mode}`);
if (!/^https?:\/\/[^/]+/.test(opt["api-url"] ?? "")) fail(`--api-url must be an http(s) URL; got ${opt["api-url"]}`);
const API = opt["api-url"].replace(/\/+$/, "");
const ROBUST = opt.mode === "robust";
const GUARD_MS = Number(opt["timeout-ms"]);
const BUDGET_MS = Number(opt["retry-budget-s"]) * 1000;
const PORT = Number(opt.port);
if (!(GUARD_MS > 0) || !(BUDGET_MS > 0) || !(PORT >= 0 && PORT <= 65535)) fail("bad --timeout-ms, --retry-budget-s or --port");
const REQUEST_TIMEOUT_MS = 5000, POLL_MS = 50, MAX_RETRIES = 3, REMEMBERED = 100000;
const CANCEL_STATES = new Set(["request-cancel", "cancel", "canceled"]);
const HEADERS = { Accept: "application/json", "Content-Type": "application/json" };
if (process.env.VTEX_APP_KEY) HEADERS["X-VTEX-API-AppKey"] = process.env.VTEX_APP_KEY;
if (process.env.VTEX_APP_TOKEN) HEADERS["X-VTEX-API-AppToken"] = process.env.VTEX_APP_TOKEN;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (...parts) => console.error(new Date().toISOString(), ...parts);

class Refused extends Error { constructor(status, msg) { super(msg); this.status = status; } }

// Seconds (fractions tolerated) or an HTTP date; null when absent or unreadable.
function retryAfterMs(header) {
  if (!header) return null;
  const s = Number(header);
  if (Number.isFinite(s)) return Math.max(s * 1000, 0);
  const when = Date.parse(header);
  return Number.isNaN(when) ? null : Math.max(when - Date.now(), 0);
}

// One Orders API call: 429/5xx/network errors retried (naive: 3 times; robust: until the budget is spent).
async function call(method, path, body) {
  const deadline = Date.now() + BUDGET_MS;
  for (let attempt = 1; ; attempt++) {
    let problem, wait = null;
    try {
      const r = await fetch(API + path, { method, headers: HEADERS, body: body === undefined ? undefined : JSON.stringify(body),
                                          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      const text = await r.text();
      if (r.ok) return text.trim() ? JSON.parse(text) : {};
      problem = `${method} ${path}: HTTP ${r.status}: ${text.slice(0, 200)}`;
      if (r.status !== 429 && r.status < 500) throw new Refused(r.status, problem);
      wait = retryAfterMs(r.headers.get("retry-after"));
    } catch (err) {
      if (err instanceof Refused) throw err;
      problem = problem ?? `${method} ${path}: ${err.name}: ${err.message}`;
    }
    const left = deadline - Date.now();
    if ((!ROBUST && attempt > MAX_RETRIES) || left <= 0 || (wait !== null && wait > left)) {
      throw new Error(`${problem} (gave up after ${attempt} attempt(s))`);
    }
    await sleep(wait ?? Math.min(100 * 2 ** (attempt - 1) * (0.5 + Math.random() / 2), left));
  }
}

const enc = encodeURIComponent;
const getOrder = (id) => call("GET", `/api/oms/pvt/orders/${enc(id)}`);
const number = (id) => `ERP-${id}`;
const packages = (order) => order?.packageAttachment?.packages ?? [];

// Order value minus Output invoices plus Input (return) invoices: what is left to invoice.
function remaining(order) {
  return packages(order).reduce((left, p) => left + (p.type === "Input" ? 1 : -1) * Number(p.invoiceValue ?? 0),
                                Number(order.value));
}

// The PII route's body (the ticket's path): issuedDate YYYY-MM-DD, integer cents, items by itemIndex with line totals.
function invoiceBody(order, value) {
  const items = (order.items ?? []).map((it, n) => ({ itemIndex: n, quantity: Number(it.quantity ?? 0),
                                                      price: Number(it.sellingPrice ?? it.price ?? 0) * Number(it.quantity ?? 0) }))
    .filter((it) => it.quantity > 0);
  return { type: "Output", issuedDate: new Date().toISOString().slice(0, 10), invoiceNumber: number(order.orderId),
           invoiceValue: value, items, courier: "", trackingNumber: "", trackingUrl: "", invoiceKey: null, invoiceUrl: null };
}

const seen = new Set(); // robust: "orderId\nState" acted on
const canceling = new Set(); // robust: orders a cancel hook named
const remember = (set, key) => { set.add(key); if (set.size > REMEMBERED) set.delete(set.values().next().value); };

// Every Change finished or canceled, within GUARD_MS (false: gave up); stops early on a noted cancel.
async function changesTerminal(id) {
  const deadline = Date.now() + GUARD_MS;
  while (Date.now() < deadline && !canceling.has(id)) {
    const history = await call("GET", `/api/order-system/orders/${enc(id)}/changes`);
    if (!Array.isArray(history?.requests)) throw new Error(`Change history of ${id}: expected {requests: [...]}`);
    if (history.requests.every((r) => r.finished === true || r.status === "canceled")) return true;
    await sleep(POLL_MS);
  }
  return canceling.has(id);
}

async function invoice(id) {
  if (ROBUST) {
    if (!(await changesTerminal(id))) return `guard_timeout: Changes unfinished after ${GUARD_MS} ms`;
    if (canceling.has(id)) return "canceled: cancel hook";
  }
  const order = await getOrder(id);
  if (ROBUST && CANCEL_STATES.has(order.status)) return `canceled: order is ${order.status}`;
  if (packages(order).some((p) => p.invoiceNumber === number(id))) return "skipped: already invoiced";
  const value = remaining(order);
  if (value <= 0) return "skipped: nothing left to invoice";
  if (ROBUST && canceling.has(id)) return "canceled: cancel hook";
  try {
    await call("POST", `/api/orders/pvt/document/${enc(id)}/invoices`, invoiceBody(order, value));
  } catch (err) {
    // A reused number (a retry whose first attempt landed, its response lost): the order tells.
    if (!(err instanceof Refused && err.status === 409)) throw err;
    if (!packages(await getOrder(id)).some((p) => p.invoiceNumber === number(id))) return `refused: ${err.message}`;
  }
  return `accepted: ${value}`;
}

const chains = new Map(); // per-order serialisation: a repeated hook must not race our own invoice
const inFlight = new Set();
function schedule(id) {
  const run = (chains.get(id) ?? Promise.resolve()).then(() => invoice(id))
    .then((outcome) => log(`order ${id}: ${outcome}`), (err) => log(`order ${id}: error: ${err.message}`))
    .finally(() => { inFlight.delete(run); if (chains.get(id) === run) chains.delete(id); });
  chains.set(id, run);
  inFlight.add(run);
}

function onHook(body) {
  if (body?.hookConfig === "ping") return "pong";
  const { OrderId: id, State: state } = body ?? {};
  if (typeof id !== "string" || !id || typeof state !== "string" || !state) throw new Error("OrderId and State required");
  if (ROBUST) {
    const key = `${id}\n${state}`;
    if (seen.has(key)) return "duplicate";
    remember(seen, key);
    if (CANCEL_STATES.has(state)) { remember(canceling, id); return "noted"; }
  }
  if (state !== "handling") return "ignored";
  schedule(id);
  return "scheduled";
}

const reply = (res, status, body) => { res.writeHead(status, { "Content-Type": "application/json" }); res.end(JSON.stringify(body)); };
const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/health") return reply(res, 200, { status: "ok", mode: opt.mode });
  if (req.method !== "POST" || req.url !== "/hook") return reply(res, 404, { error: "not found" });
  const chunks = [];
  let size = 0;
  req.on("data", (c) => { size += c.length; if (size > 1 << 20) req.destroy(); else chunks.push(c); });
  req.on("end", () => {
    try {
      reply(res, 200, { status: onHook(JSON.parse(Buffer.concat(chunks).toString("utf8"))) });
    } catch (err) {
      reply(res, 400, { error: `hook body: ${err.message}` });
    }
  });
});

server.on("error", (err) => fail(`cannot listen on ${opt.host}:${PORT}: ${err.message}`));
server.listen(PORT, opt.host, () => {
  const { address, port } = server.address();
  console.log(`listening on http://${address.includes(":") ? `[${address}]` : address}:${port}`);
});

async function stop() {
  server.close();
  server.closeIdleConnections();
  await Promise.race([Promise.allSettled([...inFlight]), sleep(GUARD_MS)]); // bounded drain
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
