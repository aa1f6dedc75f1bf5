package wsd

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is the error of a failed daemon call: a gRPC status code and the daemon's message.
// It implements GRPCStatus, so status.Code(err) and status.FromError(err) work on it.
type Error struct {
	Code    codes.Code
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("wsd: code = %s desc = %s", e.Code, e.Message)
}

// GRPCStatus returns the error as a gRPC status.
func (e *Error) GRPCStatus() *status.Status {
	return status.New(e.Code, e.Message)
}

// Library status numbers above the gRPC range (include/wsd.h, enum wsd_status).
const (
	statusOK           = 0
	statusCancelled    = 1
	statusNullArgument = 100
	statusPanic        = 101
	statusInvalidUTF8  = 102
)

// errorFromStatus turns a non-OK wsd_status and its message into an *Error. Codes 0-16 are the
// gRPC codes themselves; the library's own codes map onto the nearest gRPC code, keeping the
// library's name in the message so that it is not lost.
func errorFromStatus(st int, msg string) *Error {
	var code codes.Code
	switch {
	case st > 0 && st <= 16:
		code = codes.Code(st)
	case st == statusNullArgument:
		// A NULL argument is a bug of this binding, not of the caller's input.
		code, msg = codes.Internal, prefixed("NULL_ARGUMENT", msg)
	case st == statusPanic:
		code, msg = codes.Internal, prefixed("PANIC", msg)
	case st == statusInvalidUTF8:
		code, msg = codes.InvalidArgument, prefixed("INVALID_UTF8", msg)
	default:
		code, msg = codes.Unknown, prefixed(fmt.Sprintf("status %d", st), msg)
	}
	if msg == "" {
		msg = code.String()
	}
	return &Error{Code: code, Message: msg}
}

func prefixed(name, msg string) string {
	if msg == "" {
		return name
	}
	return name + ": " + msg
}

// errClosed is returned for calls on a closed daemon, matching libwsd's answer after close.
func errClosed() *Error {
	return &Error{Code: codes.Unavailable, Message: "the daemon is closed"}
}

// contextError maps the end of a context to its gRPC code. libwsd answers CANCELLED for a
// cancelled pending call whatever the reason; only ctx.Err() tells a deadline from a cancel.
func contextError(err error) *Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: codes.DeadlineExceeded, Message: err.Error()}
	}
	return &Error{Code: codes.Canceled, Message: err.Error()}
}
