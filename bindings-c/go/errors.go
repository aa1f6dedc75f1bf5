package wsd

/*
#include <stdint.h>
#include <wsd.h>
*/
import "C"

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ReasonMetadataKey is the trailer metadata key under which the ws-daemon server sends the
// reason of a failed call; the in-process ClientConn fills it the same way (see grpc.Trailer).
const ReasonMetadataKey = "wsd-error-reason"

// Error is the error of a failed daemon call: a gRPC status code, the daemon's message and the
// reason, a stable identifier of the failure to branch on (e.g. "workspace_not_found" or
// "invalid_id"; several reasons share a code). It implements GRPCStatus, so status.Code(err) and
// status.FromError(err) work on it.
type Error struct {
	Code    codes.Code
	Message string
	Reason  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("wsd: code = %s reason = %s desc = %s", e.Code, e.Reason, e.Message)
}

// GRPCStatus returns the error as a gRPC status.
func (e *Error) GRPCStatus() *status.Status {
	return status.New(e.Code, e.Message)
}

// Reason returns the reason of the *Error in err's chain, or "" when there is none.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// trailer is the metadata a ws-daemon server sends with this error.
func (e *Error) trailer() metadata.MD {
	if e.Reason == "" {
		return metadata.MD{}
	}
	return metadata.Pairs(ReasonMetadataKey, e.Reason)
}

// Reasons of the errors this package makes itself; they are the identifiers core uses for the
// same failures.
const (
	reasonInvalidArgument  = "invalid_argument"
	reasonInternal         = "internal"
	reasonShuttingDown     = "shutting_down"
	reasonCancelled        = "cancelled"
	reasonDeadlineExceeded = "deadline_exceeded"
)

// Library status numbers, from the header (include/wsd.h, enum wsd_status).
const (
	statusOK           = C.WSD_OK
	statusCancelled    = C.WSD_CANCELLED
	statusNullArgument = C.WSD_NULL_ARGUMENT
	statusPanic        = C.WSD_PANIC
	statusInvalidUTF8  = C.WSD_INVALID_UTF8
	statusStreamEnd    = C.WSD_STREAM_END
	statusMaxGRPC      = C.WSD_UNAUTHENTICATED
)

// statusName is libwsd's name of a status, e.g. "NOT_FOUND" or "NULL_ARGUMENT".
func statusName(st int) string {
	return C.GoString(C.wsd_status_str(C.int32_t(st)))
}

// errorFromStatus turns a non-OK wsd_status, its message and its reason into an *Error. Codes
// 0-16 are the gRPC codes themselves; the library's own codes map onto the nearest gRPC code,
// keeping the library's name of the status in the message so that it is not lost.
func errorFromStatus(st int, msg, reason string) *Error {
	var code codes.Code
	switch {
	case st > statusOK && st <= statusMaxGRPC:
		code = codes.Code(st)
	case st == statusNullArgument, st == statusPanic:
		// A NULL argument is a bug of this binding, not of the caller's input.
		code, msg = codes.Internal, prefixed(statusName(st), msg)
	case st == statusInvalidUTF8:
		code, msg = codes.InvalidArgument, prefixed(statusName(st), msg)
	default:
		code, msg = codes.Unknown, prefixed(fmt.Sprintf("status %d", st), msg)
	}
	if msg == "" {
		msg = code.String()
	}
	return &Error{Code: code, Message: msg, Reason: reason}
}

func prefixed(name, msg string) string {
	if msg == "" {
		return name
	}
	return name + ": " + msg
}

// errClosed is returned for calls on a closed daemon, matching libwsd's answer after close.
func errClosed() *Error {
	return &Error{Code: codes.Unavailable, Message: "the daemon is closed", Reason: reasonShuttingDown}
}

// contextError maps the end of a context to its gRPC code. libwsd answers CANCELLED for a
// cancelled pending call whatever the reason; only ctx.Err() tells a deadline from a cancel.
func contextError(err error) *Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: codes.DeadlineExceeded, Message: err.Error(), Reason: reasonDeadlineExceeded}
	}
	return &Error{Code: codes.Canceled, Message: err.Error(), Reason: reasonCancelled}
}
