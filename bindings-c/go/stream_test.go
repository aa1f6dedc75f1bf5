package wsd

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"wsdaemon.dev/wsd/api/wsdaemon"
)

// watchTranscript drives one workspace through init and a backup that is watched while it runs,
// and records what WatchProgress answered: the same on every connection.
func watchTranscript(t *testing.T, cc grpc.ClientConnInterface, area, id string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	content := wsdaemon.NewWorkspaceContentServiceClient(cc)
	ext := wsdaemon.NewWorkspaceContentExtClient(cc)
	var out []string

	stream, err := ext.WatchProgress(ctx, &wsdaemon.ProgressRequest{Id: id})
	if err != nil {
		t.Fatalf("WatchProgress: %v", err)
	}
	_, err = stream.Recv()
	out = append(out, "unknown workspace: "+status.Code(err).String())

	if _, err := content.InitWorkspace(ctx, initReq(id, "u", "m-"+id, emptyInit())); err != nil {
		t.Fatalf("InitWorkspace: %v", err)
	}
	seq := uint64(0)
	stream, err = ext.WatchProgress(ctx, &wsdaemon.ProgressRequest{Id: id})
	if err != nil {
		t.Fatalf("WatchProgress: %v", err)
	}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			out = append(out, "end")
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		seq = r.Seq
		out = append(out, r.Operation+" done="+boolText(r.Done)+" error="+r.Error)
	}

	big := make([]byte, 32<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(area, id, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	// Watched from before it starts: the stream follows the next operation to its end.
	stream, err = ext.WatchProgress(ctx, &wsdaemon.ProgressRequest{Id: id, After: seq})
	if err != nil {
		t.Fatalf("WatchProgress: %v", err)
	}
	backup := make(chan error, 1)
	go func() {
		_, err := content.BackupWorkspace(ctx, &wsdaemon.BackupWorkspaceRequest{Id: id})
		backup <- err
	}()
	var last *wsdaemon.ProgressResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if last != nil && r.Seq <= last.Seq {
			t.Errorf("seq went from %d to %d", last.Seq, r.Seq)
		}
		last = r
	}
	if err := <-backup; err != nil {
		t.Fatalf("BackupWorkspace: %v", err)
	}
	if last == nil {
		t.Fatal("no report of the backup")
	}
	out = append(out, last.Operation+" done="+boolText(last.Done)+" error="+last.Error)
	if last.BytesDone < 32<<20 {
		t.Errorf("the backup's last report counts %d bytes, want the 32 MiB file at least", last.BytesDone)
	}

	// A watch with nothing running waits; the end of its context ends it.
	short, stop := context.WithCancel(ctx)
	stream, err = ext.WatchProgress(short, &wsdaemon.ProgressRequest{Id: id, After: last.Seq})
	if err != nil {
		t.Fatalf("WatchProgress: %v", err)
	}
	time.AfterFunc(200*time.Millisecond, stop)
	_, err = stream.Recv()
	out = append(out, "cancelled: "+status.Code(err).String())
	return out
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// TestWatchProgressInProcessAsOverTheWire: the generated WatchProgress client streams in-process
// through ClientConn exactly as against the server over TCP and its unix socket.
func TestWatchProgressInProcessAsOverTheWire(t *testing.T) {
	d, area := testDaemon(t)
	srv := startServer(t)
	inproc := watchTranscript(t, d.ClientConn(), area, "wp-g")
	want := []string{
		"unknown workspace: NotFound",
		"init done=true error=",
		"end",
		"backup done=true error=",
		"cancelled: Canceled",
	}
	if !reflect.DeepEqual(inproc, want) {
		t.Fatalf("in-process transcript %q, want %q", inproc, want)
	}
	for name, cc := range map[string]grpc.ClientConnInterface{"tcp": srv.tcpConn, "unix": srv.unixConn} {
		got := watchTranscript(t, cc, srv.area, "wp-"+name)
		if !reflect.DeepEqual(inproc, got) {
			t.Errorf("in-process %q, %s %q", inproc, name, got)
		}
	}
}

// TestWatchProgressEndsWhenTheDaemonCloses: a watch waiting in-process ends with Unavailable.
func TestWatchProgressEndsWhenTheDaemonCloses(t *testing.T) {
	d, _ := testDaemon(t)
	ctx := context.Background()
	if _, err := wsdaemon.NewWorkspaceContentServiceClient(d.ClientConn()).InitWorkspace(ctx, initReq("wp-c", "u", "m", emptyInit())); err != nil {
		t.Fatal(err)
	}
	ext := wsdaemon.NewWorkspaceContentExtClient(d.ClientConn())
	first, err := ext.Progress(ctx, &wsdaemon.ProgressRequest{Id: "wp-c"})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := ext.WatchProgress(ctx, &wsdaemon.ProgressRequest{Id: "wp-c", After: first.Seq})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(200*time.Millisecond, func() { _ = d.Close() })
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("Recv across Close: %v, want Unavailable", err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("Recv after the end: %v, want the same error again", err)
	}
}

// TestDaemonWatchProgressIsARangeableSequence: the typed WatchProgress yields each report, then
// ends; an error is yielded once and ends it.
func TestDaemonWatchProgressIsARangeableSequence(t *testing.T) {
	d, _ := testDaemon(t)
	ctx := context.Background()
	var errs []codes.Code
	for _, err := range d.WatchProgress(ctx, &wsdaemon.ProgressRequest{Id: "nope"}) {
		errs = append(errs, status.Code(err))
	}
	if !reflect.DeepEqual(errs, []codes.Code{codes.NotFound}) {
		t.Fatalf("unknown workspace: %v, want one NotFound", errs)
	}
	if _, err := d.InitWorkspace(ctx, initReq("wp-r", "u", "m", emptyInit())); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for report, err := range d.WatchProgress(ctx, &wsdaemon.ProgressRequest{Id: "wp-r"}) {
		if err != nil {
			t.Fatalf("WatchProgress: %v", err)
		}
		ops = append(ops, report.Operation+" "+boolText(report.Done))
	}
	if !reflect.DeepEqual(ops, []string{"init true"}) {
		t.Fatalf("reports %q, want the init's last", ops)
	}
	// Breaking out early ends the watch (the loop body runs once, nothing leaks).
	n := 0
	for range d.WatchProgress(ctx, &wsdaemon.ProgressRequest{Id: "wp-r"}) {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("%d reports before the break", n)
	}
}
