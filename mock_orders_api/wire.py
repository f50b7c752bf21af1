"""The mock's wire names: header names, path templates and the admin prefix (one copy).

Everything that talks to the mock (the harness, benchmarks, tests, the Locust
file) takes these names from here. Header names are in their canonical
mixed case; HTTP header names are case-insensitive, so the mock matches them
in any case.
"""

from __future__ import annotations

# --- headers -------------------------------------------------------------------------
APP_KEY_HEADER = "X-VTEX-API-AppKey"
APP_TOKEN_HEADER = "X-VTEX-API-AppToken"
ADMIN_TOKEN_HEADER = "X-Mock-Admin-Token"
# Mock only: pin the delay of this request's Change / of the hook notification of its status change
# (and of its Feed v3 event's visibility).
CHANGE_DELAY_HEADER = "X-Mock-Change-Delay-Ms"
HOOK_DELAY_HEADER = "X-Mock-Hook-Delay-Ms"
# Mock only: pin how this request's Change ends ("done" or "canceled"), overriding change_cancel_rate.
CHANGE_OUTCOME_HEADER = "X-Mock-Change-Outcome"
# Mock only: pin how long this cancellation stays `cancel` / whether the seller denies it ("canceled" | "denied").
CANCEL_DELAY_HEADER = "X-Mock-Cancel-Delay-Ms"
CANCEL_OUTCOME_HEADER = "X-Mock-Cancel-Outcome"

# --- VTEX-shaped paths ------------------------------------------------------------------
ORDERS = "/api/oms/pvt/orders"  # List orders
ORDER = "/api/oms/pvt/orders/{orderId}"
START_HANDLING = "/api/oms/pvt/orders/{orderId}/start-handling"
CANCEL = "/api/oms/pvt/orders/{orderId}/cancel"
INVOICE_DOCUMENT = "/api/orders/pvt/document/{orderId}/invoices"  # the ticket's path
INVOICE_OMS = "/api/oms/pvt/orders/{orderId}/invoice"
INVOICE_UPDATE = "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}"  # send tracking number
INVOICE_TRACKING = "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}/tracking"  # tracking events
CHANGES = "/api/order-system/orders/{changeOrderId}/changes"
CHANGE_DETAIL = "/api/order-system/orders/{changeOrderId}/changes/{changeRequestId}"
OMS_CHANGES = "/api/oms/pvt/orders/{orderId}/changes"
HOOK_CONFIG = "/api/orders/hook/config"
FEED = "/api/orders/feed"
FEED_CONFIG = "/api/orders/feed/config"

# --- admin API ---------------------------------------------------------------------------
ADMIN_PREFIX = "/_mock"
ADMIN_HEALTH = ADMIN_PREFIX + "/health"
ADMIN_CONFIG = ADMIN_PREFIX + "/config"
ADMIN_RESET = ADMIN_PREFIX + "/reset"
ADMIN_ORDERS = ADMIN_PREFIX + "/orders"
ADMIN_AUDIT = ADMIN_PREFIX + "/orders/{orderId}/audit"
ADMIN_AUDITS = ADMIN_PREFIX + "/audits"
ADMIN_VERDICTS = ADMIN_PREFIX + "/verdicts"
ADMIN_JOURNAL = ADMIN_PREFIX + "/journal"
ADMIN_HOOKS = ADMIN_PREFIX + "/hooks"
