package wsd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"wsdaemon.dev/wsd/api/contentservice"
	"wsdaemon.dev/wsd/api/wsdaemon"
)

// ops is the set of operations, satisfied by *Daemon and by grpcOps over generated clients, so
// that one scenario runs over every transport.
type ops interface {
	InitWorkspace(context.Context, *wsdaemon.InitWorkspaceRequest) (*wsdaemon.InitWorkspaceResponse, error)
	WaitForInit(context.Context, *wsdaemon.WaitForInitRequest) (*wsdaemon.WaitForInitResponse, error)
	IsWorkspaceExists(context.Context, *wsdaemon.IsWorkspaceExistsRequest) (*wsdaemon.IsWorkspaceExistsResponse, error)
	TakeSnapshot(context.Context, *wsdaemon.TakeSnapshotRequest) (*wsdaemon.TakeSnapshotResponse, error)
	DisposeWorkspace(context.Context, *wsdaemon.DisposeWorkspaceRequest) (*wsdaemon.DisposeWorkspaceResponse, error)
	BackupWorkspace(context.Context, *wsdaemon.BackupWorkspaceRequest) (*wsdaemon.BackupWorkspaceResponse, error)
	SnapshotStatus(context.Context, *wsdaemon.SnapshotStatusRequest) (*wsdaemon.SnapshotStatusResponse, error)
	WorkspaceState(context.Context, *wsdaemon.WorkspaceStateRequest) (*wsdaemon.WorkspaceStateResponse, error)
}

var _ ops = (*Daemon)(nil)

// grpcOps adapts the generated clients (over any grpc.ClientConnInterface) to ops.
type grpcOps struct {
	svc wsdaemon.WorkspaceContentServiceClient
	ext wsdaemon.WorkspaceContentExtClient
}

func newGRPCOps(cc grpc.ClientConnInterface) grpcOps {
	return grpcOps{svc: wsdaemon.NewWorkspaceContentServiceClient(cc), ext: wsdaemon.NewWorkspaceContentExtClient(cc)}
}

func (g grpcOps) InitWorkspace(ctx context.Context, r *wsdaemon.InitWorkspaceRequest) (*wsdaemon.InitWorkspaceResponse, error) {
	var md metadata.MD
	res, err := g.svc.InitWorkspace(ctx, r, grpc.Trailer(&md))
	return res, withTrailerReason(err, md)
}
func (g grpcOps) WaitForInit(ctx context.Context, r *wsdaemon.WaitForInitRequest) (*wsdaemon.WaitForInitResponse, error) {
	var md metadata.MD
	res, err := g.svc.WaitForInit(ctx, r, grpc.Trailer(&md))
	return res, withTrailerReason(err, md)
}
func (g grpcOps) IsWorkspaceExists(ctx context.Context, r *wsdaemon.IsWorkspaceExistsRequest) (*wsdaemon.IsWorkspaceExistsResponse, error) {
	var md metadata.MD
	res, err := g.svc.IsWorkspaceExists(ctx, r, grpc.Trailer(&md))
	return res, withTrailerReason(err, md)
}
func (g grpcOps) TakeSnapshot(ctx context.Context, r *wsdaemon.TakeSnapshotRequest) (*wsdaemon.TakeSnapshotResponse, error) {
	var md metadata.MD
	res, err := g.svc.TakeSnapshot(ctx, r, grpc.Trailer(&md))
	return res, withTrailerReason(err, md)
}
func (g grpcOps) DisposeWorkspace(ctx context.Context, r *wsdaemon.DisposeWorkspaceRequest) (*wsdaemon.DisposeWorkspaceResponse, error) {
	var md metadata.MD
	res, err := g.svc.DisposeWorkspace(ctx, r, grpc.Trailer(&md))
	return res, withTrailerReason(err, md)
}
func (g grpcOps) BackupWorkspace(ctx context.Context, r *wsdaemon.BackupWorkspaceRequest) (*wsdaemon.BackupWorkspaceResponse, error) {
	var md metadata.MD
	res, err := g.svc.BackupWorkspace(ctx, r, grpc.Trailer(&md))
	return res, withTrailerReason(err, md)
}
func (g grpcOps) SnapshotStatus(ctx context.Context, r *wsdaemon.SnapshotStatusRequest) (*wsdaemon.SnapshotStatusResponse, error) {
	var md metadata.MD
	res, err := g.ext.SnapshotStatus(ctx, r, grpc.Trailer(&md))
	return res, withTrailerReason(err, md)
}
func (g grpcOps) WorkspaceState(ctx context.Context, r *wsdaemon.WorkspaceStateRequest) (*wsdaemon.WorkspaceStateResponse, error) {
	var md metadata.MD
	res, err := g.ext.WorkspaceState(ctx, r, grpc.Trailer(&md))
	return res, withTrailerReason(err, md)
}

// trailerReasonError is a gRPC error with the reason its server sent in the trailer.
type trailerReasonError struct {
	error
	reason string
}

func (e *trailerReasonError) Unwrap() error { return e.error }

// withTrailerReason attaches the reason of a failed call's trailer to its error.
func withTrailerReason(err error, md metadata.MD) error {
	if err == nil {
		return nil
	}
	reason := ""
	if v := md.Get(ReasonMetadataKey); len(v) > 0 {
		reason = v[0]
	}
	return &trailerReasonError{error: err, reason: reason}
}

// reasonOf is the reason of a failure: from the *Error of an in-process call, or from the
// trailer of a gRPC call.
func reasonOf(err error) string {
	var t *trailerReasonError
	if errors.As(err, &t) {
		return t.reason
	}
	return Reason(err)
}

// shortTempDir is a temp folder with a short path (unix socket paths are limited to 107 bytes,
// which t.TempDir can exceed). Removal errors are ignored: a closing daemon may still write.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wsdgo")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// testDaemon starts an in-process daemon on fresh folders and returns it with its working area.
func testDaemon(t testing.TB) (*Daemon, string) {
	t.Helper()
	dir := shortTempDir(t)
	area := filepath.Join(dir, "area")
	cfg, _ := json.Marshal(map[string]any{
		"working_area": area,
		"storage":      map[string]any{"local_path": filepath.Join(dir, "storage")},
		"limits":       map[string]any{"shutdown_grace_secs": 1},
		// Tests that keep a download hanging must not see it time out.
		"download": map[string]any{"attempt_timeout_secs": 3600},
	})
	d, err := New(string(cfg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d, area
}

// server is a ws-daemon server process started by a test.
type server struct {
	tcp, unix, area string
	tcpConn         *grpc.ClientConn
	unixConn        *grpc.ClientConn
}

// lockedBuffer collects the server's output for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startServer runs $WSD_BIN on a free TCP port and a unix socket, on fresh folders, and waits
// until it answers on both.
func startServer(t testing.TB) *server {
	t.Helper()
	bin := os.Getenv("WSD_BIN")
	if bin == "" {
		t.Fatal("WSD_BIN must name the ws-daemon server binary (see test.sh)")
	}
	dir := shortTempDir(t)
	s := &server{
		tcp:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		unix: filepath.Join(dir, "wsd.sock"),
		area: filepath.Join(dir, "area"),
	}
	cfgFile := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgFile, []byte("[limits]\nshutdown_grace_secs = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "--config", cfgFile, "--listen", s.tcp, "--metrics-listen", "off",
		"--unix-socket", s.unix, "--working-area", s.area, "--storage-path", filepath.Join(dir, "storage"))
	cmd.Stdout, cmd.Stderr = out, out
	// The server must not outlive this process, even when it is killed (Linux).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("ws-daemon output:\n%s", out.String())
		}
	})

	var err error
	if s.tcpConn, err = grpc.NewClient(s.tcp, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.tcpConn.Close() })
	if s.unixConn, err = grpc.NewClient("unix://"+s.unix, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.unixConn.Close() })

	deadline := time.Now().Add(60 * time.Second)
	for _, cc := range []*grpc.ClientConn{s.tcpConn, s.unixConn} {
		c := wsdaemon.NewWorkspaceContentServiceClient(cc)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := c.IsWorkspaceExists(ctx, &wsdaemon.IsWorkspaceExistsRequest{Id: "probe"}, grpc.WaitForReady(true))
			cancel()
			if err == nil {
				break
			}
			select {
			case <-exited:
				t.Fatalf("ws-daemon exited early:\n%s", out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("ws-daemon did not answer: %v\n%s", err, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return s
}

func emptyInit() *contentservice.WorkspaceInitializer {
	return &contentservice.WorkspaceInitializer{Spec: &contentservice.WorkspaceInitializer_Empty{Empty: &contentservice.EmptyInitializer{}}}
}

func backupInit() *contentservice.WorkspaceInitializer {
	return &contentservice.WorkspaceInitializer{Spec: &contentservice.WorkspaceInitializer_Backup{Backup: &contentservice.FromBackupInitializer{}}}
}

func snapshotInit(url string) *contentservice.WorkspaceInitializer {
	return &contentservice.WorkspaceInitializer{Spec: &contentservice.WorkspaceInitializer_Snapshot{Snapshot: &contentservice.SnapshotInitializer{Snapshot: url}}}
}

func initReq(id, owner, meta string, ini *contentservice.WorkspaceInitializer) *wsdaemon.InitWorkspaceRequest {
	return &wsdaemon.InitWorkspaceRequest{
		Id:          id,
		Metadata:    &wsdaemon.WorkspaceMetadata{Owner: owner, MetaId: meta},
		Initializer: ini,
	}
}
