// Package wsd runs the workspace daemon in-process through libwsd (the C library of the
// bindings-c crate) and exposes its operations as Go methods over the generated protobuf types
// of wsdaemon.dev/wsd/api/wsdaemon.
//
// The library is found with pkg-config (package "wsd"): set PKG_CONFIG_PATH to the folder of a
// wsd.pc written by scripts/install-c.sh.
//
// Every operation goes through one code path, (*Daemon).invoke, which encodes the request with
// protobuf and calls libwsd by gRPC method path. A context without a Done channel (such as
// context.Background()) takes the blocking wsd_call on the calling goroutine's thread (a few
// microseconds); any other context takes wsd_call_async and cancels the pending call when the
// context ends. (*Daemon).ClientConn adapts the same path to grpc.ClientConnInterface, so the
// generated gRPC clients work in-process without a network.
//
// Errors are *Error values carrying a gRPC code, so status.Code(err) and status.FromError work
// the same for in-process calls and for calls to a ws-daemon server, and the daemon's reason
// (Reason(err)), which the server sends as the wsd-error-reason trailer and ClientConn fills in
// the same way.
package wsd
