package wsd

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"wsdaemon.dev/wsd/api/iws"
	"wsdaemon.dev/wsd/api/wsdaemon"
)

// testContainer is a stand-in workspace container: sleep as PID 1 of new PID, mount and network
// namespaces with private propagation, sharing the host's root folder (needs root). init is the
// host PID of its PID 1. Killed at the end of the test.
type testContainer struct {
	init int
}

func startContainer(t *testing.T) testContainer {
	t.Helper()
	cmd := exec.Command("unshare", "--fork", "--pid", "--mount", "--net", "--propagation", "private",
		"--mount-proc", "--kill-child", "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare (util-linux): %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c := testContainer{}
	t.Cleanup(func() {
		// Kill the init and let unshare, which waits for it, reap it and exit (killed first,
		// unshare would leave the dying init to the host's PID 1, which may reap it late).
		if c.init > 0 {
			_ = syscall.Kill(c.init, syscall.SIGKILL)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
			}
		}
		_ = cmd.Process.Kill()
		<-exited
	})
	children := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "task", strconv.Itoa(cmd.Process.Pid), "children")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(children)
		if fields := strings.Fields(string(data)); len(fields) > 0 {
			// The child shows before it has entered its namespaces: wait until it runs sleep.
			if comm, _ := os.ReadFile(filepath.Join("/proc", fields[0], "comm")); strings.TrimSpace(string(comm)) == "sleep" {
				c.init, _ = strconv.Atoi(fields[0])
				return c
			}
		}
		select {
		case <-exited:
			t.Fatal("unshare exited before its container started")
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("unshare started no container")
	return c
}

// listing is the names in dir as the container's init sees it (none when it cannot be read).
func (c testContainer) listing(dir string) []string {
	entries, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(c.init), "root", dir))
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// buildIwscall builds the socket client (internal/cmd/iwscall) into a temp folder. The settings
// of the strict run (GOGC=1, GOEXPERIMENT=cgocheck2) are not passed on: they are for the binding,
// and would make the compiler crawl and rebuild every dependency.
func buildIwscall(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(shortTempDir(t), "iwscall")
	cmd := exec.Command("go", "build", "-o", bin, "./internal/cmd/iwscall")
	cmd.Env = append(plainEnv(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build iwscall: %v\n%s", err, out)
	}
	return bin
}

// plainEnv is this process's environment without the strict run's settings.
func plainEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "GOGC=") || strings.HasPrefix(kv, "GOEXPERIMENT=")
	})
}

type iwsResult struct {
	Code, Reason, Message string
}

// callFromInside runs the socket client inside the container (nsenter into all its namespaces).
func callFromInside(t *testing.T, c testContainer, bin, socket, method, target string) iwsResult {
	t.Helper()
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(c.init), "-a", bin, socket, method, target, "1")
	cmd.Env = plainEnv()
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s from inside the container: %v\n%s", method, err, out)
	}
	var r iwsResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%s from inside the container printed %q: %v", method, out, err)
	}
	return r
}

// An embedded daemon serves the workspace's own socket from this (multi-threaded, cgo) process;
// a process inside a stand-in container calls it, the host and the in-process surface cannot.
func TestInWorkspaceServiceFromInsideAContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (namespaces, mounts)")
	}
	bin := buildIwscall(t)
	d, area := testDaemon(t)
	ctx := context.Background()
	if _, err := d.InitWorkspace(ctx, initReq("ws-iws", "o", "m-iws", emptyInit())); err != nil {
		t.Fatalf("InitWorkspace: %v", err)
	}
	socket := filepath.Join(area, "ws-iws-daemon", "daemon.sock")
	c := startContainer(t)
	if _, err := d.AttachContainer(ctx, &wsdaemon.AttachContainerRequest{Id: "ws-iws", Pid: int64(c.init)}); err != nil {
		t.Fatalf("AttachContainer: %v", err)
	}
	target := filepath.Join(filepath.Dir(area), "proc-target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}

	// From inside the container: mounted, a proc of the container's PID namespace.
	started := time.Now()
	if r := callFromInside(t, c, bin, socket, "MountProc", target); r.Code != codes.OK.String() {
		t.Fatalf("MountProc from inside: %+v", r)
	}
	mountTook := time.Since(started)
	names := c.listing(target)
	number := regexp.MustCompile(`^\d+$`)
	pids := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !number.MatchString(n) })
	if !slices.Equal(pids, []string{"1"}) {
		t.Errorf("the mounted proc lists PIDs %v, want only the container's [1] (all: %v)", pids, names)
	}
	if host, _ := os.ReadDir(target); len(host) != 0 {
		t.Errorf("the host sees %d entries at the target, want none", len(host))
	}

	// The same call from this (host) process over the same socket: not a process of the container.
	cc, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var trailer metadata.MD
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = iws.NewInWorkspaceServiceClient(cc).MountProc(callCtx, &iws.MountProcRequest{Target: target, Pid: 1}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.PermissionDenied || !slices.Equal(trailer.Get(ReasonMetadataKey), []string{"permission_denied"}) {
		t.Errorf("MountProc from the host: %v (trailer %v), want PermissionDenied, permission_denied", err, trailer)
	}

	// In-process: no caller identity at all.
	_, err = iws.NewInWorkspaceServiceClient(d.ClientConn()).MountProc(ctx, &iws.MountProcRequest{Target: target, Pid: 1})
	if status.Code(err) != codes.FailedPrecondition || Reason(err) != "not_on_workspace_socket" ||
		!strings.Contains(err.Error(), "served only on the workspace's own socket") {
		t.Errorf("MountProc in-process: %v, want FailedPrecondition, not_on_workspace_socket", err)
	}

	started = time.Now()
	if r := callFromInside(t, c, bin, socket, "UmountProc", target); r.Code != codes.OK.String() {
		t.Fatalf("UmountProc from inside: %+v", r)
	}
	if names := c.listing(target); len(names) != 0 {
		t.Errorf("after UmountProc the container still sees %v at the target", names)
	}
	t.Logf("MountProc from inside took %v, UmountProc %v", mountTook, time.Since(started))
}
