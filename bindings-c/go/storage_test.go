package wsd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"wsdaemon.dev/wsd/api/wsdaemon"
)

const (
	s3AccessKey = "wsd-go-access"
	s3SecretKey = "wsd-go-secret-0123456789"
)

// startS3 runs s3s-fs (a real S3 server that checks signatures; scripts/test-all.sh installs it
// and exports WSD_S3S_FS) on a port it picks itself and returns its endpoint.
func startS3(t *testing.T, root string) string {
	t.Helper()
	bin := os.Getenv("WSD_S3S_FS")
	if bin == "" {
		t.Fatal("WSD_S3S_FS is not set: run ./scripts/test-all.sh, which installs s3s-fs and sets it")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--host", "127.0.0.1", "--port", "0",
		"--access-key", s3AccessKey, "--secret-key", s3SecretKey, root)
	cmd.Env = append(os.Environ(), "RUST_LOG=s3s_fs=info", "NO_COLOR=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		running := regexp.MustCompile(`server is running at (http://[\d.]+:\d+)`)
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if m := running.FindStringSubmatch(lines.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case endpoint := <-found:
		return endpoint
	case <-time.After(30 * time.Second):
		t.Fatal("s3s-fs did not start")
		return ""
	}
}

func s3Daemon(t *testing.T, area, endpoint, secret string) *Daemon {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{
		"working_area": area,
		"limits":       map[string]any{"shutdown_grace_secs": 1},
		"storage": map[string]any{
			"backend":         "s3",
			"part_size_bytes": 5 << 20,
			"s3": map[string]any{
				"endpoint": endpoint, "access_key_id": s3AccessKey, "secret_access_key": secret,
			},
		},
	})
	d, err := New(string(cfg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

// TestS3BackupRestoresOnAnotherDaemon: an in-process daemon backs up through S3 and a second one,
// with its own working area, restores the same content.
func TestS3BackupRestoresOnAnotherDaemon(t *testing.T) {
	dir := shortTempDir(t)
	endpoint := startS3(t, filepath.Join(dir, "s3"))
	ctx := context.Background()

	a := s3Daemon(t, filepath.Join(dir, "a"), endpoint, s3SecretKey)
	defer a.Close()
	if _, err := a.InitWorkspace(ctx, initReq("ws-a", "owner-1", "meta-a", emptyInit())); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 12<<20)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "ws-a", "blob.bin"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	backup, err := a.BackupWorkspace(ctx, &wsdaemon.BackupWorkspaceRequest{Id: "ws-a"})
	if err != nil {
		t.Fatal(err)
	}
	if backup.Url != "workspaces/meta-a/full.tar.zst@gitpod-user-owner-1" {
		t.Fatalf("url %q", backup.Url)
	}
	if _, err := a.DisposeWorkspace(ctx, &wsdaemon.DisposeWorkspaceRequest{Id: "ws-a", Backup: true}); err != nil {
		t.Fatal(err)
	}

	b := s3Daemon(t, filepath.Join(dir, "b"), endpoint, s3SecretKey)
	defer b.Close()
	if _, err := b.InitWorkspace(ctx, initReq("ws-b", "owner-1", "meta-a", emptyInit())); err != nil {
		t.Fatal(err)
	}
	restored, err := os.ReadFile(filepath.Join(dir, "b", "ws-b", "blob.bin"))
	if err != nil || !bytes.Equal(restored, blob) {
		t.Fatalf("restored content differs (read error: %v)", err)
	}
}

// TestS3WrongSecretIsDataLoss: a backup with a wrong secret fails with codes.DataLoss and names
// the store's reason, not the secret.
func TestS3WrongSecretIsDataLoss(t *testing.T) {
	dir := shortTempDir(t)
	endpoint := startS3(t, filepath.Join(dir, "s3"))
	ctx := context.Background()
	area := filepath.Join(dir, "area")
	good := s3Daemon(t, area, endpoint, s3SecretKey)
	if _, err := good.InitWorkspace(ctx, initReq("ws", "owner-1", "meta", emptyInit())); err != nil {
		t.Fatal(err)
	}
	if err := good.Close(); err != nil {
		t.Fatal(err)
	}

	wrong := s3Daemon(t, area, endpoint, "not-the-secret")
	defer wrong.Close()
	_, err := wrong.BackupWorkspace(ctx, &wsdaemon.BackupWorkspaceRequest{Id: "ws"})
	var werr *Error
	if !errors.As(err, &werr) || werr.Code != codes.DataLoss {
		t.Fatalf("want DataLoss, got %v", err)
	}
	if !strings.Contains(werr.Message, "SignatureDoesNotMatch") || strings.Contains(werr.Message, "not-the-secret") {
		t.Fatalf("message %q", werr.Message)
	}
}
