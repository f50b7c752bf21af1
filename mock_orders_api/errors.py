"""One error hierarchy for the whole project (the harness subclasses it too).

API errors carry their HTTP status and a VTEX-style code and render as
`{"error": {"code": ..., "message": ..., "exception": null}}`.
"""

from __future__ import annotations

import math
from typing import Any


class RaceHarnessError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(RaceHarnessError):
    """A setting (flag, env var, config patch, scenario field) is invalid."""


class ApiError(RaceHarnessError):
    status: int = 400
    code: str = "BadRequest"
    headers: dict[str, str] | None = None  # extra response headers (e.g. Retry-After)

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "exception": None}}


class BadRequest(ApiError):
    status = 400
    code = "BadRequest"


class Unauthorized(ApiError):
    status = 401
    code = "Unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "Forbidden"


class NotFound(ApiError):
    status = 404
    code = "NotFound"


class Conflict(ApiError):
    status = 409
    code = "Conflict"


class TooManyRequests(ApiError):
    """429 with `Retry-After` (whole seconds, rounded up, as RFC 9110 delta-seconds)."""

    status = 429
    code = "TooManyRequests"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
