// Command iwscall calls one method of iws.InWorkspaceService on a workspace's own socket, for the
// Go binding's tests (which build it and run it inside a test container):
//
//	iwscall <socket> MountProc|UmountProc <target> <pid>
//
// It prints one JSON line {"code", "reason", "message"}, code being the gRPC status name ("OK" on
// success), and exits 0 whenever the call was made.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"wsdaemon.dev/wsd/api/iws"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: iwscall <socket> MountProc|UmountProc <target> <pid>")
		os.Exit(2)
	}
	socket, method, target := os.Args[1], os.Args[2], os.Args[3]
	pid, err := strconv.ParseInt(os.Args[4], 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "iwscall: pid %q: %v\n", os.Args[4], err)
		os.Exit(2)
	}
	cc, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "iwscall: %v\n", err)
		os.Exit(1)
	}
	defer cc.Close()
	c := iws.NewInWorkspaceServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var trailer metadata.MD
	switch method {
	case "MountProc":
		_, err = c.MountProc(ctx, &iws.MountProcRequest{Target: target, Pid: pid}, grpc.Trailer(&trailer))
	case "UmountProc":
		_, err = c.UmountProc(ctx, &iws.UmountProcRequest{Target: target, Pid: pid}, grpc.Trailer(&trailer))
	default:
		fmt.Fprintf(os.Stderr, "iwscall: unknown method %q\n", method)
		os.Exit(2)
	}
	out := map[string]string{"code": status.Code(err).String(), "reason": "", "message": ""}
	if err != nil {
		out["message"] = status.Convert(err).Message()
		if r := trailer.Get("wsd-error-reason"); len(r) > 0 {
			out["reason"] = r[0]
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
