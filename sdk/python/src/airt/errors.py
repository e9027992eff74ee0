"""Typed errors: every failed call raises an `AirtError` subclass named after
its gRPC code, carrying the server's `ErrorInfo` reason and field violations
when it sent them (and `None`/`[]` when it did not, e.g. UNAVAILABLE from a
connection that never opened)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "AirtError", "Violation", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded",
    "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
    "Unauthenticated", "from_rpc_error",
]


@dataclass(frozen=True)
class Violation:
    """One bad field: its path in the request (`spec.steps[0].inputs.path`) and what is wrong."""

    field: str
    description: str


class AirtError(Exception):
    """A call the service refused or could not answer."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None, reason: str | None = None,
                 violations: list[Violation] | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason
        self.violations = violations or []
        self.metadata = metadata or {}

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.reason:
            text += f" [{self.reason}]"
        for violation in self.violations:
            text += f"\n  - {violation.field}: {violation.description}"
        return text


def _subclass(name: str, code: grpc.StatusCode) -> type[AirtError]:
    return type(name, (AirtError,), {"code": code, "__doc__": f"gRPC {code.name}."})


Cancelled = _subclass("Cancelled", grpc.StatusCode.CANCELLED)
Unknown = _subclass("Unknown", grpc.StatusCode.UNKNOWN)
InvalidArgument = _subclass("InvalidArgument", grpc.StatusCode.INVALID_ARGUMENT)
DeadlineExceeded = _subclass("DeadlineExceeded", grpc.StatusCode.DEADLINE_EXCEEDED)
NotFound = _subclass("NotFound", grpc.StatusCode.NOT_FOUND)
AlreadyExists = _subclass("AlreadyExists", grpc.StatusCode.ALREADY_EXISTS)
PermissionDenied = _subclass("PermissionDenied", grpc.StatusCode.PERMISSION_DENIED)
ResourceExhausted = _subclass("ResourceExhausted", grpc.StatusCode.RESOURCE_EXHAUSTED)
FailedPrecondition = _subclass("FailedPrecondition", grpc.StatusCode.FAILED_PRECONDITION)
Aborted = _subclass("Aborted", grpc.StatusCode.ABORTED)
OutOfRange = _subclass("OutOfRange", grpc.StatusCode.OUT_OF_RANGE)
Unimplemented = _subclass("Unimplemented", grpc.StatusCode.UNIMPLEMENTED)
Internal = _subclass("Internal", grpc.StatusCode.INTERNAL)
Unavailable = _subclass("Unavailable", grpc.StatusCode.UNAVAILABLE)
DataLoss = _subclass("DataLoss", grpc.StatusCode.DATA_LOSS)
Unauthenticated = _subclass("Unauthenticated", grpc.StatusCode.UNAUTHENTICATED)

_BY_CODE = {cls.code: cls for cls in [
    Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists, PermissionDenied,
    ResourceExhausted, FailedPrecondition, Aborted, OutOfRange, Unimplemented, Internal, Unavailable,
    DataLoss, Unauthenticated,
]}


def from_rpc_error(error: grpc.RpcError) -> AirtError:
    """The typed error for a failed call, with whatever details it carried."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    reason, violations, metadata = None, [], {}
    for key, value in trailers or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # a malformed detail is no reason to hide the error
            continue
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason or None, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [Violation(v.field, v.description) for v in bad.field_violations]
    cls = _BY_CODE.get(code, AirtError)
    return cls(message or code.name, code=code, reason=reason, violations=violations, metadata=metadata)
