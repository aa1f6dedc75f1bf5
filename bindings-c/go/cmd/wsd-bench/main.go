// Command wsd-bench compares the latency of IsWorkspaceExists in-process (libwsd through the Go
// binding) with the same call over gRPC to a ws-daemon server (unix socket and TCP).
//
//	PKG_CONFIG_PATH=<dir of wsd.pc for the release build> WSD_BIN=<release ws-daemon> go run ./cmd/wsd-bench
//
// Calls are sequential (one at a time), so throughput is 1/mean latency of one caller.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"wsdaemon.dev/wsd"
	"wsdaemon.dev/wsd/api/wsdaemon"
)

// budget bounds the measuring time of one path (see -budget).
var budget time.Duration

type result struct {
	name          string
	calls         int
	median, p99   time.Duration
	callsPerSec   float64
	relativeToRef float64
}

func main() {
	n := flag.Int("n", 20000, "measured calls per in-process path")
	grpcN := flag.Int("grpc-n", 20000, "measured calls per gRPC path")
	warmup := flag.Int("warmup", 2000, "warm-up calls per path (at most 2s of them)")
	flag.DurationVar(&budget, "budget", 10*time.Second, "time limit per path: a slow path stops after it with at least 100 calls")
	flag.Parse()
	if err := run(*n, *grpcN, *warmup); err != nil {
		fmt.Fprintln(os.Stderr, "wsd-bench:", err)
		os.Exit(1)
	}
}

func run(n, grpcN, warmup int) error {
	bin := os.Getenv("WSD_BIN")
	if bin == "" {
		return fmt.Errorf("set WSD_BIN to the (release) ws-daemon binary")
	}
	dir, err := os.MkdirTemp("", "wsd-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The in-process daemon.
	d, err := wsd.New(fmt.Sprintf(`{"working_area": %q, "storage": {"local_path": %q}, "limits": {"shutdown_grace_secs": 1}}`,
		filepath.Join(dir, "inproc", "area"), filepath.Join(dir, "inproc", "storage")))
	if err != nil {
		return fmt.Errorf("starting the in-process daemon: %w", err)
	}
	defer d.Close()

	// The server, on a free TCP port and a unix socket.
	port, err := freePort()
	if err != nil {
		return err
	}
	tcpAddr, sock := fmt.Sprintf("127.0.0.1:%d", port), filepath.Join(dir, "wsd.sock")
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("[limits]\nshutdown_grace_secs = 1\n"), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(bin, "--config", cfg, "--listen", tcpAddr, "--metrics-listen", "off",
		"--unix-socket", sock, "--working-area", filepath.Join(dir, "server", "area"),
		"--storage-path", filepath.Join(dir, "server", "storage"), "--log", "warn")
	cmd.Stderr = os.Stderr
	// The server must not outlive this process, even when it is killed (Linux).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	tcpConn, err := grpc.NewClient(tcpAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer tcpConn.Close()
	unixConn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer unixConn.Close()
	for _, cc := range []*grpc.ClientConn{tcpConn, unixConn} {
		if err := waitReady(wsdaemon.NewWorkspaceContentServiceClient(cc)); err != nil {
			return err
		}
	}

	req := &wsdaemon.IsWorkspaceExistsRequest{Id: "bench"}
	bg := context.Background()
	inprocClient := wsdaemon.NewWorkspaceContentServiceClient(d.ClientConn())
	unixClient := wsdaemon.NewWorkspaceContentServiceClient(unixConn)
	tcpClient := wsdaemon.NewWorkspaceContentServiceClient(tcpConn)
	paths := []struct {
		name  string
		calls int
		call  func() error
	}{
		{"Go in-process (blocking, context.Background)", n, func() error { _, err := d.IsWorkspaceExists(bg, req); return err }},
		{"Go in-process, ClientConn + generated client", n, func() error { _, err := inprocClient.IsWorkspaceExists(bg, req); return err }},
		{"Go gRPC over unix socket", grpcN, func() error { return withTimeout(unixClient, req) }},
		{"Go gRPC over TCP (127.0.0.1)", grpcN, func() error { return withTimeout(tcpClient, req) }},
	}
	var results []result
	for _, p := range paths {
		r, err := measure(p.name, p.calls, warmup, p.call)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		results = append(results, r)
	}
	ref := results[0].median
	for i := range results {
		results[i].relativeToRef = float64(results[i].median) / float64(ref)
	}

	fmt.Printf("IsWorkspaceExists({id:\"bench\"}), sequential calls; libwsd %s, %s, GOMAXPROCS=%d, %d CPUs\n\n",
		wsd.Version(), runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Println("| path | calls | median (µs) | p99 (µs) | calls/s | median / in-process median |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Printf("| %s | %d | %.2f | %.2f | %.0f | %.1fx |\n", r.name, r.calls, us(r.median), us(r.p99), r.callsPerSec, r.relativeToRef)
	}
	fmt.Printf("\ngRPC median / in-process median: unix socket %.1fx, TCP %.1fx\n",
		results[2].relativeToRef, results[3].relativeToRef)
	return nil
}

// withTimeout bounds a gRPC call, so that a request the server never answers shows up as an
// error instead of hanging the benchmark. (The in-process paths use context.Background on
// purpose: that is the blocking fast path being measured.)
func withTimeout(c wsdaemon.WorkspaceContentServiceClient, req *wsdaemon.IsWorkspaceExistsRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.IsWorkspaceExists(ctx, req)
	return err
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// measure warms up, then times each of up to n sequential calls; a slow path stops after the
// time budget (with at least 100 calls), and the calls actually made are reported.
func measure(name string, n, warmup int, call func() error) (result, error) {
	warmStart := time.Now()
	for i := 0; i < warmup && (i < 10 || time.Since(warmStart) < 2*time.Second); i++ {
		if err := call(); err != nil {
			return result{}, fmt.Errorf("warm-up call %d: %w", i+1, err)
		}
	}
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for len(lat) < n && (len(lat) < 100 || time.Since(start) < budget) {
		t := time.Now()
		if err := call(); err != nil {
			return result{}, fmt.Errorf("call %d: %w", len(lat)+1, err)
		}
		lat = append(lat, time.Since(t))
	}
	total := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return result{
		name:        name,
		calls:       len(lat),
		median:      lat[len(lat)/2],
		p99:         lat[(len(lat)*99)/100],
		callsPerSec: float64(len(lat)) / total.Seconds(),
	}, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(c wsdaemon.WorkspaceContentServiceClient) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.IsWorkspaceExists(ctx, &wsdaemon.IsWorkspaceExistsRequest{Id: "probe"}, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server did not answer: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
