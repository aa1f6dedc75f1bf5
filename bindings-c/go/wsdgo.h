// The C side that the cgo files of this package share: each file's preamble includes it (the
// functions are static inline, so each file has its own copy and none is reported unused).
#ifndef WSDGO_H
#define WSDGO_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wsd.h>

// Defined in Go (callback.go, //export wsdgoCallback).
extern void wsdgoCallback(uintptr_t handle, int status, uint8_t *response, size_t response_len, char *message, char *reason);

// The libwsd callback: user_data carries a cgo.Handle value (an integer, never a Go pointer,
// so that no Go memory is retained by C). The casts only drop const for the Go signature.
static inline void wsdgo_trampoline(void *user_data, enum wsd_status status, const uint8_t *response,
                                    size_t response_len, const char *message, const char *reason) {
	wsdgoCallback((uintptr_t)user_data, (int)status, (uint8_t *)response, response_len, (char *)message,
	              (char *)reason);
}

typedef struct {
	int status;
	uint8_t *response;
	size_t response_len;
	char *message;
	char *reason;
	wsd_pending *pending;
	wsd_daemon *daemon;
	wsd_stream *stream;
} wsdgo_result;

// wsd_last_error_message and _reason are thread-local: they must be read on the thread that made
// the failing call, before any other libwsd call there. Go may move a goroutine to another
// thread between two cgo calls, so every helper reads them inside the same cgo call and keeps
// copies (malloc'ed, freed by Go with free()).
static inline void wsdgo_error_copy(wsdgo_result *r) {
	if (r->status == WSD_OK) return;
	const char *m = wsd_last_error_message();
	const char *why = wsd_last_error_reason();
	r->message = m ? strdup(m) : NULL;
	r->reason = why ? strdup(why) : NULL;
}

#endif
