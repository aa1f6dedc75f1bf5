package wsd

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"wsdaemon.dev/wsd/api/wsdaemon"
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
		err := error(errorFromStatus(c.st, "the message", "the_reason"))
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
		if got := Reason(fmt.Errorf("wrapped: %w", err)); got != "the_reason" {
			t.Errorf("status %d: reason %q", c.st, got)
		}
	}
	if got := errorFromStatus(statusPanic, "boom", "panic").Message; got != "PANIC: boom" {
		t.Errorf("panic message %q", got)
	}
	if status.Code(contextError(context.Canceled)) != codes.Canceled ||
		status.Code(contextError(context.DeadlineExceeded)) != codes.DeadlineExceeded {
		t.Error("context errors map wrongly")
	}
	if Reason(contextError(context.DeadlineExceeded)) != "deadline_exceeded" || Reason(errors.New("x")) != "" {
		t.Error("reasons of context and foreign errors")
	}
}

// TestStatusNamesAreGRPCCodes: libwsd's names of the statuses 0-16 (from core) are the gRPC
// code names of grpc-go, number for number; the library's own statuses have theirs.
func TestStatusNamesAreGRPCCodes(t *testing.T) {
	for n := statusOK; n <= statusMaxGRPC; n++ {
		name := statusName(n)
		var c codes.Code
		if err := c.UnmarshalJSON([]byte(`"` + name + `"`)); err != nil || c != codes.Code(n) {
			t.Errorf("status %d is named %q, which grpc-go reads as %v (%v)", n, name, c, err)
		}
	}
	for n, want := range map[int]string{statusNullArgument: "NULL_ARGUMENT", statusPanic: "PANIC", statusInvalidUTF8: "INVALID_UTF8", 999: "UNKNOWN_STATUS"} {
		if got := statusName(n); got != want {
			t.Errorf("status %d is named %q, want %q", n, got, want)
		}
	}
}

// TestReasonsOfRealFailures: the reason of a failing call reaches Go on both call paths.
func TestReasonsOfRealFailures(t *testing.T) {
	d, _ := testDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"blocking", context.Background()}, {"async", ctx}} {
		_, err := d.IsWorkspaceExists(c.ctx, &wsdaemon.IsWorkspaceExistsRequest{Id: "../x"})
		if status.Code(err) != codes.InvalidArgument || Reason(err) != "invalid_id" {
			t.Errorf("%s: invalid id: %v, want InvalidArgument with reason invalid_id", c.name, err)
		}
		_, err = d.WaitForInit(c.ctx, &wsdaemon.WaitForInitRequest{Id: "missing"})
		if status.Code(err) != codes.NotFound || Reason(err) != "workspace_not_found" {
			t.Errorf("%s: missing workspace: %v, want NotFound with reason workspace_not_found", c.name, err)
		}
		if !strings.Contains(err.Error(), "reason = workspace_not_found") {
			t.Errorf("%s: the text of the error lacks its reason: %v", c.name, err)
		}
	}
	// The generated clients get it in the trailer, as from a ws-daemon server.
	var md metadata.MD
	_, err := wsdaemon.NewWorkspaceContentServiceClient(d.ClientConn()).WaitForInit(ctx,
		&wsdaemon.WaitForInitRequest{Id: "missing"}, grpc.Trailer(&md))
	if got := md.Get(ReasonMetadataKey); status.Code(err) != codes.NotFound || len(got) != 1 || got[0] != "workspace_not_found" {
		t.Errorf("ClientConn: %v with trailer %v, want NotFound and %s: workspace_not_found", err, md, ReasonMetadataKey)
	}
}

// TestTypedMethodsCoverTheServedMethods: every method of core's dispatch table (servedMethods,
// generated) has a typed method on *Daemon of the same name, and every typed method is served.
func TestTypedMethodsCoverTheServedMethods(t *testing.T) {
	ctxType := reflect.TypeOf((*context.Context)(nil)).Elem()
	msgType := reflect.TypeOf((*proto.Message)(nil)).Elem()
	typed := map[string]bool{}
	dt := reflect.TypeOf((*Daemon)(nil))
	for i := 0; i < dt.NumMethod(); i++ {
		m := dt.Method(i).Type // with the receiver
		if m.NumIn() == 3 && m.In(1) == ctxType && m.In(2).Implements(msgType) && m.NumOut() == 2 {
			typed[dt.Method(i).Name] = true
		}
	}
	for _, path := range servedMethods {
		name := path[strings.LastIndexByte(path, '/')+1:]
		if !typed[name] {
			t.Errorf("%s is served but *Daemon has no typed method %s", path, name)
		}
		delete(typed, name)
	}
	for name := range typed {
		t.Errorf("*Daemon.%s is not a served method", name)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New("this is = = not toml"); err == nil {
		t.Fatal("New accepted a broken config")
	} else if st, ok := status.FromError(err); !ok || st.Code() != codes.InvalidArgument ||
		!strings.Contains(st.Message(), "invalid configuration") || Reason(err) == "" {
		t.Fatalf("want InvalidArgument naming the configuration, with a reason, got %v", err)
	}
	if _, err := New("a\x00b"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("config with NUL: %v", err)
	}
}
