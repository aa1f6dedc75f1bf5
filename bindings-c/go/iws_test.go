package wsd

import (
	"context"
	"encoding/json"
	"fmt"
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
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

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
	return runContainer(t, []string{"--mount-proc", "sleep", "600"}, func(string) bool { return true }, func() {})
}

// runContainer starts unshare with new PID, mount and network namespaces (private propagation)
// around its first process, given by args, and waits until that process runs sleep and ready
// says so for its host PID. At the end of the test the init is killed first, then unshare, which
// reaps it (killed first, unshare would leave the dying init to the host's PID 1, which may reap
// it late); then cleanup runs.
func runContainer(t *testing.T, args []string, ready func(init string) bool, cleanup func()) testContainer {
	t.Helper()
	cmd := exec.Command("unshare", append([]string{"--fork", "--pid", "--mount", "--net",
		"--propagation", "private", "--kill-child"}, args...)...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cleanup()
		t.Fatalf("unshare (util-linux): %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c := testContainer{}
	t.Cleanup(func() {
		if c.init > 0 {
			_ = syscall.Kill(c.init, syscall.SIGKILL)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
			}
		}
		_ = cmd.Process.Kill()
		<-exited
		cleanup()
	})
	children := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "task", strconv.Itoa(cmd.Process.Pid), "children")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(children)
		if fields := strings.Fields(string(data)); len(fields) > 0 {
			// The child shows before it has entered its namespaces: wait until it runs sleep.
			if comm, _ := os.ReadFile(filepath.Join("/proc", fields[0], "comm")); strings.TrimSpace(string(comm)) == "sleep" && ready(fields[0]) {
				c.init, _ = strconv.Atoi(fields[0])
				return c
			}
		}
		select {
		case <-exited:
			t.Fatalf("unshare exited before its container started: %s", stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("unshare started no container: %s", stderr.String())
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
	// Response is the answer in protobuf's JSON form (null on failure).
	Response json.RawMessage
}

// callFromInside runs the socket client inside the container (nsenter into all its namespaces):
// method of iws.InWorkspaceService with request in protobuf's JSON form.
func callFromInside(t *testing.T, c testContainer, bin, socket, method, request string) iwsResult {
	t.Helper()
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(c.init), "-a", bin, socket, method, request)
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

// procRequest is a MountProc or UmountProc request in protobuf's JSON form.
func procRequest(target string, pid int) string {
	req, _ := json.Marshal(map[string]any{"target": target, "pid": pid})
	return string(req)
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
	if r := callFromInside(t, c, bin, socket, "MountProc", procRequest(target, 1)); r.Code != codes.OK.String() {
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
	if r := callFromInside(t, c, bin, socket, "UmountProc", procRequest(target, 1)); r.Code != codes.OK.String() {
		t.Fatalf("UmountProc from inside: %+v", r)
	}
	if names := c.listing(target); len(names) != 0 {
		t.Errorf("after UmountProc the container still sees %v at the target", names)
	}
	t.Logf("MountProc from inside took %v, UmountProc %v", mountTook, time.Since(started))
}

// rootedInit is a rooted container's first process (as core's TestContainer::start_rooted): a
// tmpfs root of its own with /usr and /etc bound in, a /dev of its own with a few host devices
// bound in, the folders given after the root bound in at their own paths (read-only unless they
// end in ":rw"), its own proc, then sleep as init.
const rootedInit = `
set -e
R=$1; shift
mount -t tmpfs -o size=16m,mode=755 ctrroot "$R"
mkdir -p "$R/usr" "$R/etc" "$R/proc" "$R/dev" "$R/tmp" "$R/sys" "$R/oldroot"
for l in bin sbin lib lib64; do if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; fi; done
mount --rbind /usr "$R/usr"; mount --rbind /etc "$R/etc"
mount -t tmpfs -o size=1m,mode=755 ctrdev "$R/dev"
for d in null zero full random urandom; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
for b in "$@"; do
  case "$b" in *:rw) b=${b%:rw}; o=bind ;; *) o=bind,ro ;; esac
  mkdir -p "$R$b"; mount -o "$o" "$b" "$R$b"
done
cd "$R"
pivot_root . oldroot
mount -t proc proc /proc
umount -l /oldroot
rmdir /oldroot
touch /.ready
exec sleep 600
`

// startRootedContainer is a stand-in workspace container with a root file system and a /dev of
// its own (what PrepareForUserNS changes), binds seen inside at the same paths. Killed at the end
// of the test; its root lived in its mount namespace only.
func startRootedContainer(t *testing.T, binds ...string) testContainer {
	t.Helper()
	rootDir, err := os.MkdirTemp("", "wsdgo-root")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"sh", "-c", rootedInit, "sh", rootDir}, binds...)
	made := func(init string) bool {
		_, err := os.Stat(filepath.Join("/proc", init, "root", ".ready"))
		return err == nil
	}
	return runContainer(t, args, made, func() { _ = os.Remove(rootDir) })
}

// path is inside (absolute, as the container's init sees it) through the init's root.
func (c testContainer) path(inside string) string {
	return filepath.Join("/proc", strconv.Itoa(c.init), "root", inside)
}

// v2Cgroup is a cgroup of the test's own on the v2 hierarchy.
type v2Cgroup struct {
	mount, dir string
}

// createV2Cgroup makes the cgroup name below the first cgroup2 mount in this process's
// mountinfo, and removes it at the end of the test: the cgroups below it first, their processes
// moved to the root cgroup.
func createV2Cgroup(t *testing.T, name string) v2Cgroup {
	t.Helper()
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mount := ""
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if _, after, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(after, "cgroup2 ") {
			mount = strings.Fields(line)[4]
			break
		}
	}
	if mount == "" {
		t.Fatal("no cgroup v2 hierarchy on this node")
	}
	g := v2Cgroup{mount: mount, dir: filepath.Join(mount, name)}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var order []string
		var walk func(string)
		walk = func(d string) {
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				if e.IsDir() {
					walk(filepath.Join(d, e.Name()))
				}
			}
			order = append(order, d)
		}
		walk(g.dir)
		for _, d := range order {
			for range 100 {
				for _, pid := range g.procsAt(d) {
					_ = os.WriteFile(filepath.Join(g.mount, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
				}
				if err := syscall.Rmdir(d); err == nil || err == syscall.ENOENT {
					break
				}
				// A process that ended is released a little later.
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	return g
}

// procsAt is the sorted PIDs in cgroup.procs of the cgroup folder d.
func (g v2Cgroup) procsAt(d string) []int {
	data, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// procs is the sorted PIDs of the cgroup rel below g.
func (g v2Cgroup) procs(rel string) []int { return g.procsAt(filepath.Join(g.dir, rel)) }

// hostPID is the PID of the process the container knows as inner.
func (c testContainer) hostPID(t *testing.T, inner int) int {
	t.Helper()
	ns, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(c.init), "ns", "pid"))
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" && f[2] == strconv.Itoa(inner) {
				if link, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "pid")); link == ns {
					return pid
				}
			}
		}
	}
	t.Fatalf("no process %d in the container", inner)
	return 0
}

// isMountOf is whether path is a mount point in the mount namespace of pid.
func isMountOf(pid int, path string) bool {
	data, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "mountinfo"))
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// output runs a command and returns its output; the test fails if it does.
func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// owner is the uid and gid of path.
func owner(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

// An embedded daemon (cgo) serves the in-workspace calls of a workspace runtime, in the order
// the runtime makes them, to a client inside a container with a root and a /dev of its own in a
// v2 cgroup of its own; afterwards nothing of them is left.
func TestInWorkspaceSequenceFromInsideARootedContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (namespaces, mounts, cgroups)")
	}
	bin := buildIwscall(t)
	d, area := testDaemon(t)
	ctx := context.Background()
	if _, err := d.InitWorkspace(ctx, initReq("ws-seq", "o", "m-seq", emptyInit())); err != nil {
		t.Fatalf("InitWorkspace: %v", err)
	}
	socket := filepath.Join(area, "ws-seq-daemon", "daemon.sock")
	// Made before the container, so removed after it (cleanups run last first).
	cgroup := createV2Cgroup(t, "wsd-go-"+strconv.Itoa(os.Getpid()))
	// The socket's folder and the client are seen inside at their own paths.
	c := startRootedContainer(t, filepath.Dir(socket)+":rw", filepath.Dir(bin))
	if err := os.WriteFile(filepath.Join(cgroup.dir, "cgroup.procs"), []byte(strconv.Itoa(c.init)), 0); err != nil {
		t.Fatalf("the container into its cgroup: %v", err)
	}
	if _, err := d.AttachContainer(ctx, &wsdaemon.AttachContainerRequest{Id: "ws-seq", Pid: int64(c.init)}); err != nil {
		t.Fatalf("AttachContainer: %v", err)
	}
	call := func(method, request string, answer proto.Message) {
		t.Helper()
		r := callFromInside(t, c, bin, socket, method, request)
		if r.Code != codes.OK.String() {
			t.Fatalf("%s from inside: %+v", method, r)
		}
		if answer != nil {
			if err := protojson.Unmarshal(r.Response, answer); err != nil {
				t.Fatalf("%s answered %s: %v", method, r.Response, err)
			}
		}
	}
	exhausted := func(method string) {
		t.Helper()
		if r := callFromInside(t, c, bin, socket, method, "{}"); r.Code != codes.ResourceExhausted.String() {
			t.Errorf("%s a second time: %+v, want ResourceExhausted", method, r)
		}
	}

	var prepared iws.PrepareForUserNSResponse
	call("PrepareForUserNS", "{}", &prepared)
	if prepared.FsShift != iws.FSShiftMethod_IDMAPPED {
		t.Errorf("PrepareForUserNS: fs_shift %v, want IDMAPPED", prepared.FsShift)
	}
	if _, err := os.Stat(c.path("/dev/net/tun")); err != nil {
		t.Errorf("PrepareForUserNS made no /dev/net/tun: %v", err)
	}
	if got := cgroup.procs("workspace"); !slices.Equal(got, []int{c.init}) {
		t.Errorf("the workspace cgroup has %v, want the container's init %d", got, c.init)
	}

	// A child in user, mount and network namespaces of its own, started below the container's
	// init as a workspace runtime starts one.
	if err := os.Mkdir(c.path("/tmp/p"), 0o755); err != nil {
		t.Fatal(err)
	}
	started := output(t, "nsenter", "-t", strconv.Itoa(c.init), "-a", "sh", "-c",
		"unshare --user --mount --net sleep 600 >/dev/null 2>&1 </dev/null & echo $!")
	inner, err := strconv.Atoi(strings.TrimSpace(started))
	if err != nil {
		t.Fatalf("the child's PID: %q", started)
	}
	child := c.hostPID(t, inner)
	self, _ := os.Readlink("/proc/self/ns/user")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ns, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(child), "ns", "user")); ns != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child made no user namespace")
		}
	}
	// Started by nsenter, it is in this process's cgroup; forked by the init it would be in the
	// init's (the workspace cgroup since PrepareForUserNS).
	if err := os.WriteFile(filepath.Join(cgroup.dir, "workspace", "cgroup.procs"), []byte(strconv.Itoa(child)), 0); err != nil {
		t.Fatal(err)
	}

	mapping := `[{"containerId": 0, "hostId": 33333, "size": 1}, {"containerId": 1, "hostId": 100000, "size": 65534}]`
	call("WriteIDMapping", fmt.Sprintf(`{"pid": %d, "gid": false, "mapping": %s}`, inner, mapping), nil)
	call("WriteIDMapping", fmt.Sprintf(`{"pid": %d, "gid": true, "mapping": %s}`, inner, mapping), nil)
	call("MountProc", procRequest("/tmp/p", inner), nil)
	call("EvacuateCGroup", "{}", nil)
	call("SetupPairVeths", fmt.Sprintf(`{"pid": %d}`, inner), nil)

	// The shifted root: in the child's mount namespace only; root of the child's user namespace
	// makes a file through it that is root's on the container root and 33333's seen through it.
	if !isMountOf(child, "/.workspace/mark") || isMountOf(c.init, "/.workspace/mark") {
		t.Errorf("the idmapped root: in the child %v (want true), in the container %v (want false)",
			isMountOf(child, "/.workspace/mark"), isMountOf(c.init, "/.workspace/mark"))
	}
	if !isMountOf(child, "/tmp/p") {
		t.Error("no proc at /tmp/p in the child")
	}
	output(t, "nsenter", "-t", strconv.Itoa(child), "-U", "-m", "touch", "/.workspace/mark/f")
	if uid, _ := owner(t, c.path("/f")); uid != 0 {
		t.Errorf("the file is %d's on the container root, want 0", uid)
	}
	if uid, gid := owner(t, filepath.Join("/proc", strconv.Itoa(child), "root", ".workspace/mark/f")); uid != 33333 || gid != 33333 {
		t.Errorf("through the idmapped root the file is %d:%d's, want 33333:33333", uid, gid)
	}

	want := []int{c.init, child}
	slices.Sort(want)
	if got := cgroup.procs("workspace/user"); !slices.Equal(got, want) {
		t.Errorf("workspace/user has %v, want %v", got, want)
	}
	if uid, _ := owner(t, filepath.Join(cgroup.dir, "workspace", "user")); uid != 33333 {
		t.Errorf("workspace/user is %d's, want 33333's (delegated)", uid)
	}

	veth := regexp.MustCompile(`\bveth0[@:]`)
	if links := output(t, "nsenter", "-t", strconv.Itoa(c.init), "-n", "ip", "-o", "link"); !veth.MatchString(links) {
		t.Errorf("no veth0 in the container:\n%s", links)
	}
	if addrs := output(t, "nsenter", "-t", strconv.Itoa(child), "-n", "ip", "-o", "addr"); !regexp.MustCompile(`ceth0\s+inet 10\.0\.5\.2/30`).MatchString(addrs) {
		t.Errorf("no ceth0 10.0.5.2/30 in the child:\n%s", addrs)
	}
	wsdTable := regexp.MustCompile(`(?m)^table ip wsd$`)
	if tables := output(t, "nsenter", "-t", strconv.Itoa(c.init), "-n", "nft", "list", "tables"); !wsdTable.MatchString(tables) {
		t.Errorf("no table ip wsd in the container:\n%s", tables)
	}

	var info iws.WorkspaceInfoResponse
	call("WorkspaceInfo", "{}", &info)
	if info.GetResources().GetCpu().GetLimit() <= 0 || info.GetResources().GetMemory().GetLimit() <= 0 {
		t.Errorf("WorkspaceInfo: %v, want CPU and memory limits", &info)
	}

	exhausted("PrepareForUserNS")
	exhausted("EvacuateCGroup")

	var down iws.TeardownResponse
	call("Teardown", "{}", &down)
	if !down.Success {
		t.Error("Teardown: success false")
	}
	exhausted("Teardown")
	var wiped iws.WipingTeardownResponse
	call("WipingTeardown", `{"doWipe": true}`, &wiped)
	if !wiped.Success {
		t.Error("WipingTeardown: success false")
	}

	// Nothing left of the sequence; the child still runs.
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(child))); err != nil {
		t.Errorf("the child is gone: %v", err)
	}
	for _, m := range []string{"/.workspace/mark", "/tmp/p"} {
		if isMountOf(child, m) {
			t.Errorf("%s still mounted in the child", m)
		}
	}
	if links := output(t, "nsenter", "-t", strconv.Itoa(c.init), "-n", "ip", "-o", "link"); veth.MatchString(links) {
		t.Errorf("veth0 left in the container:\n%s", links)
	}
	if tables := output(t, "nsenter", "-t", strconv.Itoa(c.init), "-n", "nft", "list", "tables"); wsdTable.MatchString(tables) {
		t.Errorf("table ip wsd left in the container:\n%s", tables)
	}
	for _, left := range []string{filepath.Join(cgroup.dir, "workspace"), c.path("/dev/net/tun"), c.path("/.workspace/mark")} {
		if _, err := os.Stat(left); err == nil {
			t.Errorf("%s is left", left)
		}
	}
	if _, err := os.Stat(c.path("/dev/null")); err != nil {
		t.Errorf("the container's own /dev/null: %v", err)
	}
}
