// Command iwscall calls one method of iws.InWorkspaceService on a workspace's own socket, for the
// Go binding's tests (which build it and run it inside a test container):
//
//	iwscall <socket> <Method> [request as JSON]
//
// Method is the name in the proto (e.g. PrepareForUserNS, WriteIDMapping); the request is in
// protobuf's JSON form (e.g. {"pid": 7, "gid": true, "mapping": [...]}), an empty one when left
// out. It prints one JSON line {"code", "reason", "message", "response"}, code being the gRPC
// status name ("OK" on success) and response the answer in protobuf's JSON form (null on
// failure), and exits 0 whenever the call was made.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"wsdaemon.dev/wsd/api/iws"
)

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "iwscall: "+format+"\n", args...)
	os.Exit(code)
}

// message is a new, empty message of the type desc names.
func message(desc protoreflect.MessageDescriptor) protoreflect.ProtoMessage {
	t, err := protoregistry.GlobalTypes.FindMessageByName(desc.FullName())
	if err != nil {
		fail(1, "%s: %v", desc.FullName(), err)
	}
	return t.New().Interface()
}

func main() {
	if len(os.Args) != 3 && len(os.Args) != 4 {
		fail(2, "usage: iwscall <socket> <Method> [request as JSON]")
	}
	socket, method := os.Args[1], os.Args[2]
	service := iws.File_iws_workspace_daemon_proto.Services().ByName("InWorkspaceService")
	desc := service.Methods().ByName(protoreflect.Name(method))
	if desc == nil {
		fail(2, "no method %q in %s", method, service.FullName())
	}
	req, res := message(desc.Input()), message(desc.Output())
	if len(os.Args) == 4 {
		if err := protojson.Unmarshal([]byte(os.Args[3]), req); err != nil {
			fail(2, "request of %s: %v", method, err)
		}
	}
	cc, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(1, "%v", err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var trailer metadata.MD
	err = cc.Invoke(ctx, fmt.Sprintf("/%s/%s", service.FullName(), method), req, res, grpc.Trailer(&trailer))
	out := map[string]any{"code": status.Code(err).String(), "reason": "", "message": "", "response": nil}
	if err != nil {
		out["message"] = status.Convert(err).Message()
		if r := trailer.Get("wsd-error-reason"); len(r) > 0 {
			out["reason"] = r[0]
		}
	} else {
		answer, err := protojson.Marshal(res)
		if err != nil {
			fail(1, "answer of %s: %v", method, err)
		}
		out["response"] = json.RawMessage(answer)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
