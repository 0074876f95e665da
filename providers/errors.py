"""The one exception tree of Switchboard.

Everything that can go wrong with a request ends up as a :class:`SwitchboardError`, rendered by the
inbound surface as the OpenAI error envelope ``{"error": {"message", "type", "param", "code"}}`` with
``status`` as the HTTP status. Foreign exceptions (aiohttp, httpx, msgspec, OSError) are translated at
one boundary each (the transport, the config loaders) with ``raise ... from exc``.

    SwitchboardError                        500 api_error
    ├── InvalidRequest                      400 invalid_request_error   malformed JSON, missing fields
    ├── NotFound                            404 invalid_request_error   unknown provider / model (with close matches)
    ├── MissingCredentials                  401 authentication_error    says which env var or command fixes it
    ├── NotImplementedYet                   501 not_implemented         a declared wire API with no module (e.g.
    │                                                                   azure-openai-responses without its adapter)
    ├── ConfigError                         500 config_error            a config file is invalid (file + key path)
    ├── UpstreamError                       upstream status             the provider answered 4xx/5xx
    ├── UpstreamTimeout                     504 timeout                 no answer within the read timeout
    ├── UpstreamUnreachable                 502 upstream_unreachable    connection refused, DNS, TLS, redirects,
    │                                                                   a cut or unreadable answer
    ├── ServerShuttingDown                  503 server_shutdown         the server stopped before the answer ended
    └── ClientDisconnected                  499 client_disconnected     the client left mid-upload (nobody reads it)

Messages say how to fix the problem and never contain a secret.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClientDisconnected",
    "ConfigError",
    "InvalidRequest",
    "MissingCredentials",
    "NotFound",
    "NotImplementedYet",
    "ServerShuttingDown",
    "SwitchboardError",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
]


class SwitchboardError(Exception):
    status: int = 500
    type: str = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(SwitchboardError):
    status = 400
    type = "invalid_request_error"


class NotFound(SwitchboardError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class MissingCredentials(SwitchboardError):
    status = 401
    type = "authentication_error"
    code = "missing_credentials"


class NotImplementedYet(SwitchboardError):
    status = 501
    type = "not_implemented"
    code = "not_implemented"


class ConfigError(SwitchboardError):
    status = 500
    type = "config_error"
    code = "invalid_config"


class UpstreamError(SwitchboardError):
    """The provider answered with an error status; ``status`` is the provider's."""

    type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type_: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, param=param, headers=headers)
        if type_:
            self.type = type_


class UpstreamTimeout(SwitchboardError):
    status = 504
    type = "timeout"
    code = "upstream_timeout"


class UpstreamUnreachable(SwitchboardError):
    status = 502
    type = "upstream_unreachable"
    code = "upstream_unreachable"


class ServerShuttingDown(SwitchboardError):
    """The server is stopping and ended a request still in flight."""

    status = 503
    type = "server_shutdown"
    code = "server_shutdown"

    def __init__(self) -> None:
        super().__init__("Switchboard is shutting down; retry the request")


class ClientDisconnected(SwitchboardError):
    """The client went away before its request body arrived (nginx's 499): nobody reads the answer.

    A :class:`SwitchboardError` rather than a cancellation so the handler's ordinary error path ends
    the request quietly (the server drops what is sent to a closed connection).
    """

    status = 499
    code = "client_disconnected"
