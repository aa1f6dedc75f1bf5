package wsd

/*
#cgo pkg-config: wsd
#include "wsdgo.h"

static wsdgo_result wsdgo_new(const char *config) {
	wsdgo_result r = {0};
	r.status = wsd_daemon_new(config, &r.daemon);
	wsdgo_error_copy(&r);
	return r;
}

static wsdgo_result wsdgo_close(const wsd_daemon *d) {
	wsdgo_result r = {0};
	r.status = wsd_daemon_close(d);
	wsdgo_error_copy(&r);
	return r;
}

static wsdgo_result wsdgo_call(const wsd_daemon *d, const char *method, const uint8_t *req, size_t req_len) {
	wsdgo_result r = {0};
	r.status = wsd_call(d, method, req, req_len, &r.response, &r.response_len);
	wsdgo_error_copy(&r);
	return r;
}

static wsdgo_result wsdgo_call_async(const wsd_daemon *d, const char *method, const uint8_t *req,
                                     size_t req_len, uintptr_t handle) {
	wsdgo_result r = {0};
	r.status = wsd_call_async(d, method, req, req_len, wsdgo_trampoline, (void *)handle, &r.pending);
	wsdgo_error_copy(&r);
	return r;
}
*/
import "C"

import (
	"context"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync"
	"unsafe"

	"google.golang.org/grpc/codes"
)

// Daemon is an in-process workspace daemon (a libwsd wsd_daemon with its own threads). Its
// methods are safe for concurrent use, also concurrently with Close.
//
// Lifetime of the C handle: ptr is read only while mu is read-held, for the duration of each C
// call that uses it, so Close (which write-locks mu before wsd_daemon_free) waits for in-flight C
// calls and later calls see ptr == nil and answer Unavailable. Close calls wsd_daemon_close
// before taking the write lock: that makes blocking calls that are waiting inside libwsd return
// (UNAVAILABLE) instead of keeping Close waiting for them. runtime.KeepAlive(d) after each C call
// keeps the finalizer from running while C still uses the pointer.
type Daemon struct {
	mu  sync.RWMutex
	ptr *C.wsd_daemon // nil once closed

	closeOnce sync.Once
	closeErr  error
}

// New starts an in-process daemon. config is a TOML or JSON document with the schema of the
// server's config file (all keys optional; "" means the defaults), for example
// {"working_area": "/tmp/x/area", "storage": {"local_path": "/tmp/x/storage"}}.
func New(config string) (*Daemon, error) {
	if strings.IndexByte(config, 0) >= 0 {
		return nil, &Error{Code: codes.InvalidArgument, Message: "config contains a NUL byte", Reason: reasonInvalidArgument}
	}
	cconfig := C.CString(config)
	defer C.free(unsafe.Pointer(cconfig))
	r := C.wsdgo_new(cconfig)
	if r.status != statusOK {
		return nil, takeError(&r)
	}
	d := &Daemon{ptr: r.daemon}
	// A forgotten daemon still stops its threads once unreachable. Close blocks for up to the
	// shutdown grace time, so it runs on its own goroutine rather than the finalizer goroutine.
	runtime.SetFinalizer(d, func(d *Daemon) { go d.Close() })
	return d, nil
}

// Close stops the daemon: new calls are refused, in-flight work gets up to
// limits.shutdown_grace_secs to finish, then the daemon's threads stop and its memory is freed.
// Calls made after Close return an *Error with code Unavailable. Close is idempotent; concurrent
// callers all wait for the first one to finish and get its result.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		runtime.SetFinalizer(d, nil)
		// Phase 1: close under the read lock. Calls racing with this get UNAVAILABLE from
		// libwsd (it is safe to call concurrently with wsd_daemon_close), and blocked calls wake.
		d.mu.RLock()
		if d.ptr != nil {
			r := C.wsdgo_close(d.ptr)
			if r.status != statusOK {
				d.closeErr = takeError(&r)
			}
		}
		d.mu.RUnlock()
		// Phase 2: wait for every C call still using the pointer, then free it.
		d.mu.Lock()
		p := d.ptr
		d.ptr = nil
		d.mu.Unlock()
		C.wsd_daemon_free(p) // NULL is a no-op
	})
	runtime.KeepAlive(d)
	return d.closeErr
}

// takeError converts a failed result, freeing its malloc'ed message and reason copies.
func takeError(r *C.wsdgo_result) *Error {
	return errorFromStatus(int(r.status), takeCString(&r.message), takeCString(&r.reason))
}

// takeCString copies a malloc'ed C string into Go, frees it and clears the pointer.
func takeCString(p **C.char) string {
	if *p == nil {
		return ""
	}
	s := C.GoString(*p)
	C.free(unsafe.Pointer(*p))
	*p = nil
	return s
}

// methodNames holds C copies of the known method paths, allocated once and never freed, so the
// fast path does not malloc/free a C string per call. Other paths (only reachable through
// ClientConn) are converted per call.
var methodNames = func() map[string]*C.char {
	m := make(map[string]*C.char, len(servedMethods))
	for _, name := range servedMethods {
		m[name] = C.CString(name)
	}
	return m
}()

// cMethod returns the C string of a method path and a function releasing it.
func cMethod(method string) (*C.char, func(), error) {
	if c, ok := methodNames[method]; ok {
		return c, func() {}, nil
	}
	if strings.IndexByte(method, 0) >= 0 {
		return nil, nil, &Error{Code: codes.InvalidArgument, Message: "method contains a NUL byte", Reason: reasonInvalidArgument}
	}
	c := C.CString(method)
	return c, func() { C.free(unsafe.Pointer(c)) }, nil
}

// cBytes points C at the request bytes. Passing a pointer into a Go []byte for the duration of a
// call is allowed by the cgo rules (the bytes contain no Go pointers); libwsd copies them.
func cBytes(b []byte) (*C.uint8_t, C.size_t) {
	if len(b) == 0 {
		return nil, 0 // NULL with length 0 is allowed by libwsd
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(len(b))
}

// invoke is the single path of every call: encoded request in, encoded response out.
func (d *Daemon) invoke(ctx context.Context, method string, req []byte) ([]byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if ctx.Done() == nil {
		// This context can never end: no cancellation to watch, so block on this thread.
		return d.callBlocking(method, req)
	}
	if err := ctx.Err(); err != nil {
		return nil, contextError(err)
	}
	return d.callAsync(ctx, method, req)
}

func (d *Daemon) callBlocking(method string, req []byte) ([]byte, error) {
	cm, release, err := cMethod(method)
	if err != nil {
		return nil, err
	}
	defer release()
	reqPtr, reqLen := cBytes(req)

	d.mu.RLock()
	if d.ptr == nil {
		d.mu.RUnlock()
		return nil, errClosed()
	}
	r := C.wsdgo_call(d.ptr, cm, reqPtr, reqLen)
	d.mu.RUnlock()
	runtime.KeepAlive(d)
	runtime.KeepAlive(req)

	if r.status != statusOK {
		return nil, takeError(&r)
	}
	return takeBytes(r.response, r.response_len), nil
}

// takeBytes copies a libwsd response into Go memory and frees it.
func takeBytes(p *C.uint8_t, n C.size_t) []byte {
	if p == nil {
		return []byte{}
	}
	out := make([]byte, int(n))
	copy(out, unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
	C.wsd_bytes_free(p, n)
	return out
}

// asyncResult is what the libwsd callback hands back to the waiting goroutine.
type asyncResult struct {
	status  int
	resp    []byte
	message string
	reason  string
}

// callAsync runs the call on the daemon's threads and waits for its callback or the end of ctx.
func (d *Daemon) callAsync(ctx context.Context, method string, req []byte) ([]byte, error) {
	cm, release, err := cMethod(method)
	if err != nil {
		return nil, err
	}
	defer release()
	reqPtr, reqLen := cBytes(req)
	defer runtime.KeepAlive(req)
	res, err := d.awaitAsync(ctx, func(p *C.wsd_daemon, h C.uintptr_t) C.wsdgo_result {
		return C.wsdgo_call_async(p, cm, reqPtr, reqLen, h)
	})
	if err != nil {
		return nil, err
	}
	if res.status != statusOK {
		return nil, errorFromStatus(res.status, res.message, res.reason)
	}
	return res.resp, nil
}

// awaitAsync starts an asynchronous libwsd function with start (given the daemon and the handle
// its callback gets as user_data) and waits for the callback's outcome or the end of ctx. It
// answers an error for a refused start or the end of ctx, else the outcome as delivered.
//
// Lifetime: the channel is reachable from C only through a cgo.Handle (an integer in
// user_data), which keeps it alive for the GC until the callback - which libwsd runs exactly
// once, also after a cancel or a close - takes it and deletes the handle. The channel is
// buffered so that the callback never blocks a daemon thread, even when the waiting goroutine
// has already returned because ctx ended.
func (d *Daemon) awaitAsync(ctx context.Context, start func(*C.wsd_daemon, C.uintptr_t) C.wsdgo_result) (asyncResult, error) {
	// d must stay reachable until the result is read: otherwise a GC during the wait could run
	// the finalizer and close the daemon under the call.
	defer runtime.KeepAlive(d)
	ch := make(chan asyncResult, 1)
	h := cgo.NewHandle(ch)

	d.mu.RLock()
	if d.ptr == nil {
		d.mu.RUnlock()
		h.Delete()
		return asyncResult{}, errClosed()
	}
	r := start(d.ptr, C.uintptr_t(h))
	d.mu.RUnlock()

	if r.status != statusOK {
		// The callback never runs when the start fails: the handle is ours to delete.
		h.Delete()
		return asyncResult{}, takeError(&r)
	}
	// The pending handle is independent of the daemon's lifetime and may be freed at any time;
	// freeing it neither cancels the call nor stops the callback.
	pending := r.pending
	defer C.wsd_pending_free(pending)

	select {
	case res := <-ch:
		if res.status == statusCancelled && ctx.Err() != nil {
			return asyncResult{}, contextError(ctx.Err())
		}
		return res, nil
	case <-ctx.Done():
		// A result that arrived together with the end of ctx wins.
		select {
		case res := <-ch:
			if res.status == statusOK {
				return res, nil
			}
		default:
		}
		// Only the wait ends: work that must not be abandoned half-way goes on in the daemon.
		// The callback still runs (with CANCELLED) and releases the handle.
		C.wsd_pending_cancel(pending)
		return asyncResult{}, contextError(ctx.Err())
	}
}

// Version is the version of the loaded libwsd, e.g. "0.1.0".
func Version() string {
	return C.GoString(C.wsd_version())
}
