package wsd

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorMapping(t *testing.T) {
	gc := debug.SetGCPercent(100)
	debug.SetGCPercent(gc)
	t.Logf("GC percent of this run: %d", gc)
	for _, c := range []struct {
		st   int
		code codes.Code
	}{
		{1, codes.Canceled}, {3, codes.InvalidArgument}, {5, codes.NotFound}, {6, codes.AlreadyExists},
		{9, codes.FailedPrecondition}, {14, codes.Unavailable}, {16, codes.Unauthenticated},
		{statusNullArgument, codes.Internal}, {statusPanic, codes.Internal},
		{statusInvalidUTF8, codes.InvalidArgument}, {999, codes.Unknown},
	} {
		err := error(errorFromStatus(c.st, "the message"))
		if got := status.Code(err); got != c.code {
			t.Errorf("status %d: code %s, want %s", c.st, got, c.code)
		}
		s, ok := status.FromError(fmt.Errorf("wrapped: %w", err))
		if !ok || s.Code() != c.code {
			t.Errorf("status %d: FromError of a wrapped error gives %v, %v", c.st, s, ok)
		}
		var e *Error
		if !errors.As(err, &e) || e.Message == "" {
			t.Errorf("status %d: not an *Error with a message: %v", c.st, err)
		}
	}
	if got := errorFromStatus(statusPanic, "boom").Message; got != "PANIC: boom" {
		t.Errorf("panic message %q", got)
	}
	if status.Code(contextError(context.Canceled)) != codes.Canceled ||
		status.Code(contextError(context.DeadlineExceeded)) != codes.DeadlineExceeded {
		t.Error("context errors map wrongly")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New("this is = = not toml"); err == nil {
		t.Fatal("New accepted a broken config")
	} else if st, ok := status.FromError(err); !ok || st.Code() != codes.InvalidArgument ||
		!strings.Contains(st.Message(), "invalid configuration") {
		t.Fatalf("want InvalidArgument naming the configuration, got %v", err)
	}
	if _, err := New("a\x00b"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("config with NUL: %v", err)
	}
}
