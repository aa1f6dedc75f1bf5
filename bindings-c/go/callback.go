package wsd

// This file has the //export, so its preamble may hold declarations only.

/*
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// wsdgoCallback receives the outcome of wsd_call_async on a daemon thread (not a Go thread;
// cgo attaches it). response, message and reason are valid only during the call, so all are
// copied.
// It must not block nor panic: the send goes to a channel buffered for exactly this one value.
//
//export wsdgoCallback
func wsdgoCallback(handle C.uintptr_t, status C.int, response *C.uint8_t, responseLen C.size_t, message, reason *C.char) {
	h := cgo.Handle(handle)
	ch, ok := h.Value().(chan asyncResult)
	h.Delete()
	if !ok {
		return
	}
	res := asyncResult{status: int(status)}
	if response != nil && responseLen > 0 {
		res.resp = make([]byte, int(responseLen))
		copy(res.resp, unsafe.Slice((*byte)(unsafe.Pointer(response)), int(responseLen)))
	} else {
		res.resp = []byte{}
	}
	if message != nil {
		res.message = C.GoString(message)
	}
	if reason != nil {
		res.reason = C.GoString(reason)
	}
	select {
	case ch <- res:
	default: // cannot happen (one callback per handle); never block a daemon thread
	}
}
