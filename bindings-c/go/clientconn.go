package wsd

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// ClientConn returns a grpc.ClientConnInterface that serves unary calls in-process through the
// daemon, without a network, so that generated clients work on it:
//
//	c := wsdaemon.NewWorkspaceContentServiceClient(d.ClientConn())
//
// Call options are ignored except grpc.Trailer, which receives what a ws-daemon server sends: the
// reason of a failure under ReasonMetadataKey. Server-streaming methods (WatchProgress) stream
// in-process too (stream.go); the daemon has no client-streaming ones.
func (d *Daemon) ClientConn() grpc.ClientConnInterface {
	return clientConn{d: d}
}

type clientConn struct{ d *Daemon }

var _ grpc.ClientConnInterface = clientConn{}

func (c clientConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	err := c.invoke(ctx, method, args, reply)
	trailer := metadata.MD{}
	var e *Error
	if errors.As(err, &e) {
		trailer = e.trailer()
	}
	for _, o := range opts {
		if t, ok := o.(grpc.TrailerCallOption); ok && t.TrailerAddr != nil {
			*t.TrailerAddr = trailer.Copy()
		}
	}
	return err
}

func (c clientConn) invoke(ctx context.Context, method string, args, reply any) error {
	req, ok := args.(proto.Message)
	if !ok {
		return &Error{Code: codes.Internal, Message: fmt.Sprintf("request type %T is not a proto.Message", args), Reason: reasonInternal}
	}
	rep, ok := reply.(proto.Message)
	if !ok {
		return &Error{Code: codes.Internal, Message: fmt.Sprintf("reply type %T is not a proto.Message", reply), Reason: reasonInternal}
	}
	// A typed nil (e.g. (*IsWorkspaceExistsResponse)(nil)) cannot be unmarshalled into.
	if !req.ProtoReflect().IsValid() || !rep.ProtoReflect().IsValid() {
		return &Error{Code: codes.Internal, Message: "request and reply must not be nil messages", Reason: reasonInternal}
	}
	return c.d.invokeMessage(ctx, method, req, rep)
}
