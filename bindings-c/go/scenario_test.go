package wsd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"wsdaemon.dev/wsd/api/wsdaemon"
)

// step is one recorded call of the scenario: what a transport answered, reduced to what must be
// identical across transports (code, reason and deterministic result fields).
type step struct {
	Name   string
	Code   codes.Code
	Reason string
	Result string
}

func (s step) String() string {
	return fmt.Sprintf("%-28s %-18s %-20s %s", s.Name, s.Code, s.Reason, s.Result)
}

// recorder runs the scenario's calls and checks each code against the expected one.
type recorder struct {
	t     *testing.T
	ctx   func() (context.Context, context.CancelFunc)
	steps []step
}

func (r *recorder) record(name string, want codes.Code, result string, err error) bool {
	r.t.Helper()
	got := status.Code(err)
	if err != nil {
		result = ""
		if _, ok := status.FromError(err); !ok {
			r.t.Errorf("%s: error %v (%T) carries no gRPC status", name, err, err)
		}
	}
	reason := reasonOf(err)
	if (err != nil) != (reason != "") {
		r.t.Errorf("%s: reason %q with error %v: every failure has a reason, a success none", name, reason, err)
	}
	r.steps = append(r.steps, step{Name: name, Code: got, Reason: reason, Result: result})
	if got != want {
		r.t.Errorf("%s: code %s, want %s (err: %v)", name, got, want, err)
	}
	return err == nil
}

// scenario runs the workspace life cycle and the error table on o (whose workspaces live under
// area), with ids prefixed by prefix, and returns the transcript.
func scenario(t *testing.T, o ops, area, prefix string, ctxf func() (context.Context, context.CancelFunc)) []step {
	r := &recorder{t: t, ctx: ctxf}
	ctx := func() context.Context {
		c, cancel := ctxf()
		t.Cleanup(cancel)
		return c
	}
	ws, ws2, ws3 := prefix+"ws1", prefix+"ws2", prefix+"ws3"
	owner, meta := prefix+"u1", prefix+"m1"
	content := map[string]string{"hello.txt": "hello " + prefix + "\n", "dir/sub/data.bin": strings.Repeat("\x00\x01data", 1000)}

	exists := func(name, id string) {
		res, err := o.IsWorkspaceExists(ctx(), &wsdaemon.IsWorkspaceExistsRequest{Id: id})
		r.record(name, codes.OK, fmt.Sprint("exists=", res.GetExists()), err)
	}
	initWait := func(name, id, owner, meta string, ini func() *wsdaemon.InitWorkspaceRequest, wantInit, wantWait codes.Code) {
		_, err := o.InitWorkspace(ctx(), ini())
		r.record(name+"/init", wantInit, "", err)
		_, err = o.WaitForInit(ctx(), &wsdaemon.WaitForInitRequest{Id: id})
		r.record(name+"/wait", wantWait, "", err)
	}
	checkContent := func(name, id string) {
		result := "content=equal"
		for rel, want := range content {
			got, err := os.ReadFile(filepath.Join(area, id, rel))
			if err != nil || string(got) != want {
				result = fmt.Sprintf("content of %s differs (err %v)", rel, err)
				t.Errorf("%s: %s", name, result)
			}
		}
		r.steps = append(r.steps, step{Name: name, Code: codes.OK, Result: result})
	}

	exists("exists-before", ws)
	initWait("init-empty", ws, owner, meta, func() *wsdaemon.InitWorkspaceRequest { return initReq(ws, owner, meta, emptyInit()) }, codes.OK, codes.OK)
	st, err := o.WorkspaceState(ctx(), &wsdaemon.WorkspaceStateRequest{Id: ws})
	r.record("state", codes.OK, "state="+st.GetState().String(), err)
	exists("exists-after-init", ws)

	for rel, data := range content {
		p := filepath.Join(area, ws, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := o.BackupWorkspace(ctx(), &wsdaemon.BackupWorkspaceRequest{Id: ws})
	r.record("backup", codes.OK, fmt.Sprint("url-set=", b.GetUrl() != ""), err)
	_, err = o.DisposeWorkspace(ctx(), &wsdaemon.DisposeWorkspaceRequest{Id: ws, Backup: true})
	r.record("dispose-with-backup", codes.OK, "", err)
	exists("exists-after-dispose", ws)

	// A plain init of the same owner+meta_id restores the backup.
	initWait("init-restores-backup", ws, owner, meta, func() *wsdaemon.InitWorkspaceRequest { return initReq(ws, owner, meta, emptyInit()) }, codes.OK, codes.OK)
	checkContent("restored-content", ws)

	snap, err := o.TakeSnapshot(ctx(), &wsdaemon.TakeSnapshotRequest{Id: ws})
	r.record("snapshot", codes.OK, fmt.Sprint("url-set=", snap.GetUrl() != ""), err)
	ss, err := o.SnapshotStatus(ctx(), &wsdaemon.SnapshotStatusRequest{Url: snap.GetUrl()})
	r.record("snapshot-status", codes.OK, fmt.Sprint("phase=", ss.GetPhase(), " size-set=", ss.GetSizeBytes() > 0), err)
	initWait("init-from-snapshot", ws2, owner, prefix+"m2", func() *wsdaemon.InitWorkspaceRequest {
		return initReq(ws2, owner, prefix+"m2", snapshotInit(snap.GetUrl()))
	}, codes.OK, codes.OK)
	checkContent("snapshot-content", ws2)

	// The error table.
	_, err = o.InitWorkspace(ctx(), initReq("../x", owner, prefix+"mx", emptyInit()))
	r.record("init-bad-id", codes.InvalidArgument, "", err)
	_, err = o.IsWorkspaceExists(ctx(), &wsdaemon.IsWorkspaceExistsRequest{Id: "../x"})
	r.record("exists-bad-id", status.Code(err), "", err) // recorded, compared across transports
	_, err = o.WaitForInit(ctx(), &wsdaemon.WaitForInitRequest{Id: prefix + "unknown"})
	r.record("wait-unknown", codes.NotFound, "", err)
	_, err = o.DisposeWorkspace(ctx(), &wsdaemon.DisposeWorkspaceRequest{Id: prefix + "unknown"})
	r.record("dispose-unknown", codes.NotFound, "", err)
	_, err = o.TakeSnapshot(ctx(), &wsdaemon.TakeSnapshotRequest{Id: prefix + "unknown"})
	r.record("snapshot-unknown", codes.NotFound, "", err)
	_, err = o.BackupWorkspace(ctx(), &wsdaemon.BackupWorkspaceRequest{Id: prefix + "unknown"})
	r.record("backup-unknown", codes.NotFound, "", err)
	st, err = o.WorkspaceState(ctx(), &wsdaemon.WorkspaceStateRequest{Id: prefix + "unknown"})
	r.record("state-unknown", status.Code(err), "state="+st.GetState().String(), err)
	ss, err = o.SnapshotStatus(ctx(), &wsdaemon.SnapshotStatusRequest{Url: "no-such-snapshot@nowhere"})
	r.record("snapshot-status-unknown", status.Code(err), fmt.Sprint("phase=", ss.GetPhase()), err)
	_, err = o.InitWorkspace(ctx(), initReq(ws, owner, meta, emptyInit()))
	r.record("init-duplicate", codes.AlreadyExists, "", err)
	_, err = o.InitWorkspace(ctx(), initReq(prefix+"nobackup", owner, prefix+"m-none", backupInit()))
	if status.Code(err) == codes.OK { // the failure may surface in the init's outcome instead
		_, err = o.WaitForInit(ctx(), &wsdaemon.WaitForInitRequest{Id: prefix + "nobackup"})
		r.record("init-missing-backup/wait", codes.FailedPrecondition, "", err)
	} else {
		r.record("init-missing-backup/init", codes.FailedPrecondition, "", err)
	}

	// Restore through the explicit backup initializer, after the first instance is gone.
	_, err = o.DisposeWorkspace(ctx(), &wsdaemon.DisposeWorkspaceRequest{Id: ws})
	r.record("dispose", codes.OK, "", err)
	initWait("init-from-backup", ws3, owner, meta, func() *wsdaemon.InitWorkspaceRequest { return initReq(ws3, owner, meta, backupInit()) }, codes.OK, codes.OK)
	checkContent("backup-content", ws3)
	for _, id := range []string{ws2, ws3} {
		_, err = o.DisposeWorkspace(ctx(), &wsdaemon.DisposeWorkspaceRequest{Id: id})
		r.record("dispose-"+strings.TrimPrefix(id, prefix), codes.OK, "", err)
	}
	return r.steps
}

// wantReasons are the reasons of some failures of the scenario: the ones callers branch on.
var wantReasons = map[string]string{
	"init-bad-id":      "invalid_id",
	"wait-unknown":     "workspace_not_found",
	"dispose-unknown":  "workspace_not_found",
	"backup-unknown":   "workspace_not_found",
	"init-duplicate":   "workspace_exists",
	"snapshot-unknown": "workspace_not_found",
}

// checkReasons requires the reasons of wantReasons in a transcript.
func checkReasons(t *testing.T, name string, steps []step) {
	t.Helper()
	seen := 0
	for _, s := range steps {
		if want, ok := wantReasons[s.Name]; ok {
			seen++
			if s.Reason != want {
				t.Errorf("%s: %s has reason %q, want %q", name, s.Name, s.Reason, want)
			}
		}
	}
	if seen != len(wantReasons) {
		t.Errorf("%s: %d of the %d steps with a known reason were recorded", name, seen, len(wantReasons))
	}
}

func background() (context.Context, context.CancelFunc) { return context.Background(), func() {} }

func withTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func logSteps(t *testing.T, name string, steps []step) {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString("  " + s.String() + "\n")
	}
	t.Logf("%s:\n%s", name, b.String())
}

// TestScenarioGoAPI runs the scenario through the typed methods, on both call paths: the
// blocking one (context.Background) and the asynchronous one (a cancellable context).
func TestScenarioGoAPI(t *testing.T) {
	d, area := testDaemon(t)
	blocking := scenario(t, d, area, "b-", background)
	async := scenario(t, d, area, "a-", withTimeout)
	checkReasons(t, "blocking", blocking)
	checkReasons(t, "async", async)
	if !reflect.DeepEqual(blocking, async) {
		logSteps(t, "blocking", blocking)
		logSteps(t, "async", async)
		t.Fatal("the blocking and the asynchronous path answered differently")
	}
	if testing.Verbose() {
		logSteps(t, "transcript", blocking)
	}
}

// TestScenarioGRPC runs the scenario through the generated gRPC clients, in-process over
// ClientConn and against a ws-daemon server over TCP and over its unix socket, and requires
// identical transcripts (codes and results) from all of them.
func TestScenarioGRPC(t *testing.T) {
	d, area := testDaemon(t)
	srv := startServer(t)

	inproc := scenario(t, newGRPCOps(d.ClientConn()), area, "g-", withTimeout)
	overTCP := scenario(t, newGRPCOps(srv.tcpConn), srv.area, "t-", withTimeout)
	overUnix := scenario(t, newGRPCOps(srv.unixConn), srv.area, "u-", withTimeout)
	checkReasons(t, "in-process", inproc)
	for name, got := range map[string][]step{"tcp": overTCP, "unix": overUnix} {
		if !reflect.DeepEqual(inproc, got) {
			logSteps(t, "in-process", inproc)
			logSteps(t, name, got)
			t.Errorf("in-process and %s transcripts differ", name)
		}
	}

	// Calls outside the daemon's API answer the same way too.
	ctx, cancel := withTimeout()
	defer cancel()
	codeOf := func(cc grpc.ClientConnInterface) codes.Code {
		return status.Code(cc.Invoke(ctx, "/wsdaemon.WorkspaceContentService/NoSuchMethod",
			&wsdaemon.IsWorkspaceExistsRequest{Id: "x"}, new(wsdaemon.IsWorkspaceExistsResponse)))
	}
	local, remote := codeOf(d.ClientConn()), codeOf(srv.tcpConn)
	if local != remote || local != codes.Unimplemented {
		t.Errorf("unknown method: in-process %s, server %s, want Unimplemented", local, remote)
	}
	if testing.Verbose() {
		logSteps(t, "transcript", inproc)
	}
}

// TestClientConnRefusesBadArguments: an unknown stream, non-protobuf arguments, nil replies and
// NUL bytes answer status errors, never a panic.
func TestClientConnRefusesBadArguments(t *testing.T) {
	d, _ := testDaemon(t)
	s, err := d.ClientConn().NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, "/x.Y/Z")
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	if err := s.SendMsg(&wsdaemon.ProgressRequest{Id: "x"}); err != nil {
		t.Fatalf("SendMsg: %v", err)
	}
	if err := s.RecvMsg(new(wsdaemon.ProgressResponse)); status.Code(err) != codes.Unimplemented {
		t.Fatalf("RecvMsg of an unknown stream: %v, want Unimplemented", err)
	}
	_, err = d.ClientConn().NewStream(context.Background(), &grpc.StreamDesc{ClientStreams: true}, "/x.Y/Z")
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("NewStream of a client stream: %v, want Unimplemented", err)
	}
	// Non-protobuf arguments are refused with a status error, not a panic.
	err = d.ClientConn().Invoke(context.Background(), wsdaemon.WorkspaceContentService_IsWorkspaceExists_FullMethodName, "not a message", new(wsdaemon.IsWorkspaceExistsResponse))
	if status.Code(err) != codes.Internal {
		t.Fatalf("Invoke with a string: %v, want Internal", err)
	}
	// A method path with a NUL byte cannot reach C.
	var nilReply *wsdaemon.IsWorkspaceExistsResponse
	err = d.ClientConn().Invoke(context.Background(), wsdaemon.WorkspaceContentService_IsWorkspaceExists_FullMethodName, &wsdaemon.IsWorkspaceExistsRequest{Id: "x"}, nilReply)
	if status.Code(err) != codes.Internal {
		t.Fatalf("Invoke with a nil reply: %v, want Internal", err)
	}
	err = d.ClientConn().Invoke(context.Background(), "/a\x00b", &wsdaemon.IsWorkspaceExistsRequest{}, new(wsdaemon.IsWorkspaceExistsResponse))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Invoke with a NUL byte: %v, want InvalidArgument", err)
	}
	var _ proto.Message = (*wsdaemon.IsWorkspaceExistsRequest)(nil)
}
