package wsd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"wsdaemon.dev/wsd/api/contentservice"
	"wsdaemon.dev/wsd/api/wsdaemon"
)

// TestConcurrentCalls: 50 goroutines at once, half initializing distinct workspaces and half
// asking IsWorkspaceExists, over both call paths, with forced garbage collections in between
// (a GC while C holds a handle or a pointer into Go memory is what the lifetime rules guard).
func TestConcurrentCalls(t *testing.T) {
	d, _ := testDaemon(t)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n*100)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Odd goroutines use a cancellable context (async path), even ones the blocking path.
			ctx := context.Background()
			if i%2 == 1 {
				c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				ctx = c
			}
			if i%3 == 0 {
				runtime.GC()
			}
			if i < n/2 {
				id := fmt.Sprintf("c%d", i)
				if _, err := d.InitWorkspace(ctx, initReq(id, "owner", "meta-"+id, emptyInit())); err != nil {
					errs <- fmt.Errorf("init %s: %w", id, err)
					return
				}
				if _, err := d.WaitForInit(ctx, &wsdaemon.WaitForInitRequest{Id: id}); err != nil {
					errs <- fmt.Errorf("wait %s: %w", id, err)
					return
				}
				res, err := d.IsWorkspaceExists(ctx, &wsdaemon.IsWorkspaceExistsRequest{Id: id})
				if err != nil || !res.GetExists() {
					errs <- fmt.Errorf("exists %s: %v %v", id, res, err)
				}
				return
			}
			for k := 0; k < 40; k++ {
				if _, err := d.IsWorkspaceExists(ctx, &wsdaemon.IsWorkspaceExistsRequest{Id: fmt.Sprintf("c%d", k%n)}); err != nil {
					errs <- fmt.Errorf("exists: %w", err)
				}
				if k%10 == 0 {
					runtime.GC()
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	runtime.GC()
	for i := 0; i < n/2; i++ {
		res, err := d.IsWorkspaceExists(context.Background(), &wsdaemon.IsWorkspaceExistsRequest{Id: fmt.Sprintf("c%d", i)})
		if err != nil || !res.GetExists() {
			t.Errorf("workspace c%d after the run: %v %v", i, res, err)
		}
	}
}

func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.Unavailable {
		t.Errorf("%s: %v, want Unavailable", what, err)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("%s: %T is not *wsd.Error", what, err)
	} else if e.Reason != "shutting_down" {
		t.Errorf("%s: reason %q, want shutting_down", what, e.Reason)
	}
}

func TestUseAfterClose(t *testing.T) {
	d, _ := testDaemon(t)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	req := &wsdaemon.IsWorkspaceExistsRequest{Id: "x"}
	_, err := d.IsWorkspaceExists(context.Background(), req)
	wantUnavailable(t, "blocking call", err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = d.IsWorkspaceExists(ctx, req)
	wantUnavailable(t, "async call", err)
	_, err = d.InitWorkspace(ctx, initReq("x", "o", "m", emptyInit()))
	wantUnavailable(t, "init", err)
	_, err = wsdaemon.NewWorkspaceContentServiceClient(d.ClientConn()).IsWorkspaceExists(ctx, req)
	wantUnavailable(t, "generated client", err)
}

// TestCloseRacesCalls: calls on both paths keep going while Close runs (twice, concurrently);
// every call either succeeds (before the close) or answers Unavailable - never crashes.
func TestCloseRacesCalls(t *testing.T) {
	for round := 0; round < 3; round++ {
		d, _ := testDaemon(t)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				<-start
				ctx := context.Background()
				if g%2 == 1 {
					c, cancel := context.WithCancel(context.Background())
					defer cancel()
					ctx = c
				}
				for k := 0; ; k++ {
					_, err := d.IsWorkspaceExists(ctx, &wsdaemon.IsWorkspaceExistsRequest{Id: "x"})
					if err != nil {
						wantUnavailable(t, fmt.Sprintf("goroutine %d call %d", g, k), err)
						return
					}
					if k%50 == 0 {
						runtime.GC()
					}
				}
			}(g)
		}
		close(start)
		time.Sleep(20 * time.Millisecond)
		closeErrs := make(chan error, 2)
		for c := 0; c < 2; c++ {
			go func() { closeErrs <- d.Close() }()
		}
		for c := 0; c < 2; c++ {
			if err := <-closeErrs; err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		wg.Wait()
	}
}

// hangingServer accepts connections and never answers, so a download from it hangs.
func hangingServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestContextCancellation: WaitForInit on a workspace whose init hangs ends quickly with
// Canceled when the context is cancelled and with DeadlineExceeded when it times out.
func TestContextCancellation(t *testing.T) {
	d, _ := testDaemon(t)
	addr := hangingServer(t)
	ini := &contentservice.WorkspaceInitializer{Spec: &contentservice.WorkspaceInitializer_Download{
		Download: &contentservice.FileDownloadInitializer{Files: []*contentservice.FileDownloadInitializer_FileInfo{{
			Url:      "http://" + addr + "/file",
			FilePath: "file",
			Digest:   "sha256:" + strings.Repeat("0", 64),
		}}},
	}}
	// InitWorkspace itself waits for the initializer, so it runs on its own goroutine with a
	// context that ends with the test (the init goes on in the daemon until Close).
	initCtx, initCancel := context.WithCancel(context.Background())
	initDone := make(chan error, 1)
	go func() {
		_, err := d.InitWorkspace(initCtx, initReq("hang", "o", "m-hang", ini))
		initDone <- err
	}()
	defer func() {
		initCancel()
		if err := <-initDone; status.Code(err) != codes.Canceled {
			t.Errorf("hanging init after cancel: %v, want Canceled", err)
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		res, err := d.IsWorkspaceExists(context.Background(), &wsdaemon.IsWorkspaceExistsRequest{Id: "hang"})
		if err == nil && res.GetExists() {
			break
		}
		select {
		case err := <-initDone:
			t.Fatalf("init ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hanging workspace never appeared: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := d.WaitForInit(ctx, &wsdaemon.WaitForInitRequest{Id: "hang"})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("WaitForInit returned before the cancel: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	cancelled := time.Now()
	cancel()
	select {
	case err := <-done:
		if status.Code(err) != codes.Canceled {
			t.Errorf("after cancel: %v, want Canceled", err)
		}
		// Generous: the machine is shared and the GOGC=1 pass pauses often.
		if el := time.Since(cancelled); el > 3*time.Second {
			t.Errorf("returned %v after the cancel", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitForInit did not return after the cancel")
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	began := time.Now()
	_, err := d.WaitForInit(ctx2, &wsdaemon.WaitForInitRequest{Id: "hang"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("with a timeout: %v, want DeadlineExceeded", err)
	}
	if el := time.Since(began); el > 4*time.Second {
		t.Errorf("timeout of 200ms took %v", el)
	}

	// An already-ended context does not reach the daemon.
	_, err = d.IsWorkspaceExists(ctx, &wsdaemon.IsWorkspaceExistsRequest{Id: "hang"})
	if status.Code(err) != codes.Canceled {
		t.Errorf("ended context: %v, want Canceled", err)
	}
	// The same over the in-process gRPC client.
	ctx3, cancel3 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel3()
	_, err = wsdaemon.NewWorkspaceContentServiceClient(d.ClientConn()).WaitForInit(ctx3, &wsdaemon.WaitForInitRequest{Id: "hang"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("generated client with a timeout: %v, want DeadlineExceeded", err)
	}
	runtime.GC()
}

// BenchmarkIsWorkspaceExists measures the blocking fast path (see cmd/wsd-bench for more).
func BenchmarkIsWorkspaceExists(b *testing.B) {
	d, _ := testDaemon(b)
	req := &wsdaemon.IsWorkspaceExistsRequest{Id: "bench"}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := d.IsWorkspaceExists(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
