"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the API answers with an error: the status, and what the client reads.

    ``param`` names the request field at fault (None when none is), ``code`` is a short
    machine-readable reason ("unsupported_field", "context_length_exceeded", ...).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI's clients read."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def unsupported(field: str, why: str = "") -> ApiError:
    """The error for a field (or one value of it) that Ember's API does not support."""
    message = f"Ember's API does not support '{field}'" + (f": {why}" if why else ".")
    return ApiError(400, message, param=field, code="unsupported_field")


def invalid(field: str, message: str) -> ApiError:
    """The error for a field whose value is wrong (of the wrong type, or out of range)."""
    return ApiError(400, message, param=field, code="invalid_value")
