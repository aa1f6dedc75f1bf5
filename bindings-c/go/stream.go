package wsd

/*
#cgo pkg-config: wsd
#include "wsdgo.h"

static wsdgo_result wsdgo_stream_open(const wsd_daemon *d, const char *method, const uint8_t *req,
                                      size_t req_len) {
	wsdgo_result r = {0};
	r.status = wsd_stream_open(d, method, req, req_len, &r.stream);
	wsdgo_error_copy(&r);
	return r;
}

static wsdgo_result wsdgo_stream_next_async(const wsd_daemon *d, const wsd_stream *s, uintptr_t handle) {
	wsdgo_result r = {0};
	r.status = wsd_stream_next_async(d, s, wsdgo_trampoline, (void *)handle, &r.pending);
	wsdgo_error_copy(&r);
	return r;
}
*/
import "C"

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// clientStream is a server-streaming call (WatchProgress) in-process, for the clients that
// protoc-gen-go-grpc generates: SendMsg takes the one request, RecvMsg reads the responses one at
// a time from a libwsd stream until io.EOF, as over the wire.
type clientStream struct {
	ctx    context.Context
	d      *Daemon
	method string

	mu      sync.Mutex
	request []byte
	sent    bool
	stream  *C.wsd_stream
	ended   error // io.EOF or the error that ended the stream; nil while it runs
	trailer metadata.MD
}

var _ grpc.ClientStream = (*clientStream)(nil)

func (c clientConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	if desc != nil && desc.ClientStreams {
		return nil, &Error{Code: codes.Unimplemented, Message: fmt.Sprintf("wsd: %s streams requests; the daemon has no such method", method), Reason: "unimplemented"}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	s := &clientStream{ctx: ctx, d: c.d, method: method, trailer: metadata.MD{}}
	// A stream dropped before its end still releases its libwsd handle.
	runtime.SetFinalizer(s, func(s *clientStream) { s.free() })
	return s, nil
}

func (s *clientStream) Header() (metadata.MD, error) { return metadata.MD{}, nil }
func (s *clientStream) Context() context.Context     { return s.ctx }
func (s *clientStream) CloseSend() error             { return nil }

func (s *clientStream) Trailer() metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trailer.Copy()
}

func (s *clientStream) SendMsg(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return &Error{Code: codes.Internal, Message: fmt.Sprintf("request type %T is not a proto.Message", m), Reason: reasonInternal}
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		return &Error{Code: codes.Internal, Message: err.Error(), Reason: reasonInternal}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent {
		return &Error{Code: codes.Internal, Message: "a server-streaming call takes exactly one request", Reason: reasonInternal}
	}
	s.request, s.sent = b, true
	return nil
}

func (s *clientStream) RecvMsg(m any) error {
	rep, ok := m.(proto.Message)
	if !ok || !rep.ProtoReflect().IsValid() {
		return &Error{Code: codes.Internal, Message: fmt.Sprintf("reply type %T is not a usable proto.Message", m), Reason: reasonInternal}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return s.ended
	}
	if s.stream == nil {
		if err := s.open(); err != nil {
			return s.end(err)
		}
	}
	resp, err := s.next()
	if err != nil {
		return s.end(err)
	}
	if err := proto.Unmarshal(resp, rep); err != nil {
		return s.end(&Error{Code: codes.Internal, Message: "cannot decode the response: " + err.Error(), Reason: reasonInternal})
	}
	return nil
}

// end records why the stream ended (io.EOF at its end), releases the libwsd handle and answers err.
func (s *clientStream) end(err error) error {
	s.ended = err
	if e, ok := err.(*Error); ok {
		s.trailer = e.trailer()
	}
	s.freeLocked()
	return err
}

func (s *clientStream) open() error {
	if !s.sent {
		return &Error{Code: codes.Internal, Message: "RecvMsg before SendMsg", Reason: reasonInternal}
	}
	if err := s.ctx.Err(); err != nil {
		return contextError(err)
	}
	cm, release, err := cMethod(s.method)
	if err != nil {
		return err
	}
	defer release()
	reqPtr, reqLen := cBytes(s.request)
	s.d.mu.RLock()
	defer s.d.mu.RUnlock()
	if s.d.ptr == nil {
		return errClosed()
	}
	r := C.wsdgo_stream_open(s.d.ptr, cm, reqPtr, reqLen)
	runtime.KeepAlive(s.request)
	if r.status != statusOK {
		return takeError(&r)
	}
	s.stream = r.stream
	return nil
}

// next waits for the next response on the daemon's threads, or for the end of the context.
func (s *clientStream) next() ([]byte, error) {
	res, err := s.d.awaitAsync(s.ctx, func(d *C.wsd_daemon, h C.uintptr_t) C.wsdgo_result {
		return C.wsdgo_stream_next_async(d, s.stream, h)
	})
	if err != nil {
		return nil, err
	}
	switch res.status {
	case statusOK:
		return res.resp, nil
	case statusStreamEnd:
		return nil, io.EOF
	default:
		return nil, errorFromStatus(res.status, res.message, res.reason)
	}
}

func (s *clientStream) free() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.freeLocked()
}

// freeLocked releases the libwsd stream. A read still pending keeps what it needs in libwsd, so
// freeing never waits for it.
func (s *clientStream) freeLocked() {
	if s.stream != nil {
		C.wsd_stream_free(s.stream)
		s.stream = nil
	}
}
