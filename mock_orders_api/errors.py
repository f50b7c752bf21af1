"""One error hierarchy for the whole project (the harness subclasses it too).

API errors carry their HTTP status and a VTEX-style code and render as
`{"error": {"code": ..., "message": ..., "exception": null}}`.
"""

from __future__ import annotations

from typing import Any


class RaceHarnessError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(RaceHarnessError):
    """A setting (flag, env var, config patch, scenario field) is invalid."""


class ApiError(RaceHarnessError):
    status: int = 400
    code: str = "BadRequest"

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
