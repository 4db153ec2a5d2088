"""The errors the API answers with, in AWS rest-json form."""

from __future__ import annotations


class ApiError(Exception):
    """An error rendered as `{"__type": code, "message": ...}` with `x-amzn-ErrorType: code`."""

    code = "ClientException"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class ClientException(ApiError):
    code = "ClientException"
    status = 400


class ServerException(ApiError):
    code = "ServerException"
    status = 500


class AuthError(ApiError):
    """SigV4 failures, with AWS's common error codes (403, or 400 for malformed headers)."""

    status = 403

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message, code=code, status=status)


class NotImplementedOperation(ClientException):
    def __init__(self, operation: str) -> None:
        super().__init__(
            f"{operation} is part of the AWS Batch API but is not implemented by batchd yet "
            "(see docs/api-coverage.md)"
        )
