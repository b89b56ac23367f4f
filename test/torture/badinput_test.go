package torture

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxMsgSize is the limit Berth sets on CRI messages (internal/app), as
// kubelet's client does.
const maxMsgSize = 16 << 20

// TestOversizedRequests sends requests just under and just over the 16 MiB
// message limit: the one under is served, the one over is refused with
// ResourceExhausted naming the limit, and the berth goes on serving.
func TestOversizedRequests(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	n := startNode(t, r, nodeOptions{})
	conn, err := grpc.NewClient("unix://"+n.b.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(4*maxMsgSize), grpc.MaxCallRecvMsgSize(4*maxMsgSize)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	list := func(size int) error {
		c, cancel := ctx()
		defer cancel()
		_, err := rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
			LabelSelector: map[string]string{"big": strings.Repeat("x", size)}}})
		return err
	}
	r.Call("a request just under 16 MiB", list(maxMsgSize-1024))
	for _, size := range []int{maxMsgSize + 1024, 4*maxMsgSize - 1024} {
		r.Fault(1)
		err := list(size)
		if r.Call(fmt.Sprintf("a request of %d bytes", size), wantErr(err), codes.ResourceExhausted) == nil {
			continue
		}
		msg := status.Convert(err).Message()
		r.Check(strings.Contains(msg, "larger than max") && strings.Contains(msg, fmt.Sprint(maxMsgSize)),
			"refusal of an oversized request does not name the limit: %q", msg)
	}
	c, cancel := ctx()
	defer cancel()
	_, err = n.rt.Version(c, &runtimeapi.VersionRequest{})
	r.Call("Version after the oversized requests", err)
	r.Leaks(n.leaks())
}

// TestGarbageOnTheSocket has non-CRI clients write junk to the CRI socket
// (random bytes, HTTP/1, an HTTP/2 preface followed by junk frames, one
// byte at a time, nothing at all) while a real client keeps working: every
// real call succeeds, the junk is dropped, and once the junk clients are
// gone the berth's goroutines and descriptors are back where they were.
func TestGarbageOnTheSocket(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	n := startNode(t, r, nodeOptions{})
	if err := n.cycle(r, "warm-up"); err != nil {
		t.Fatalf("warm-up cycle: %v", err)
	}
	base := n.settle(t, nil)

	junk := []struct {
		name  string
		write func(c net.Conn) error
	}{
		{"random bytes", func(c net.Conn) error {
			_, err := io.CopyN(c, rand.Reader, 64<<10)
			return err
		}},
		{"HTTP/1", func(c net.Conn) error {
			_, err := io.WriteString(c, "GET /runtime.v1.RuntimeService/Version HTTP/1.1\r\nHost: berth\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nxx")
			return err
		}},
		{"HTTP/2 preface, then junk frames", func(c net.Conn) error {
			if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
				return err
			}
			_, err := io.CopyN(c, rand.Reader, 16<<10)
			return err
		}},
		{"a byte at a time", func(c net.Conn) error {
			for i := range 20 {
				if _, err := c.Write([]byte{byte('A' + i)}); err != nil {
					return err
				}
				time.Sleep(50 * time.Millisecond)
			}
			return nil
		}},
		{"nothing", func(net.Conn) error { return nil }},
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns = map[net.Conn]string{}
	)
	stopReal := make(chan struct{})
	realDone := make(chan struct{})
	go func() {
		defer close(realDone)
		for i := 0; ; i++ {
			select {
			case <-stopReal:
				return
			default:
			}
			c, cancel := ctx()
			_, err := n.rt.Version(c, &runtimeapi.VersionRequest{})
			r.Call("Version while junk arrives", err)
			_, err = n.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{})
			r.Call("ListPodSandbox while junk arrives", err)
			cancel()
			if i%10 == 0 {
				_ = n.cycle(r, fmt.Sprintf("beside-junk-%d", i))
			}
		}
	}()
	for i := range scale.GarbageConns {
		j := junk[i%len(junk)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("unix", n.b.Socket)
			if err != nil {
				r.Unexpected("dialling the socket: %v", err)
				return
			}
			mu.Lock()
			conns[c] = j.name
			mu.Unlock()
			r.Fault(1)
			// Writes fail once the berth has hung up on the junk: fine.
			_ = j.write(c)
		}()
	}
	wg.Wait()
	// The junk writers (other than the silent ones) are hung up on.
	for c, name := range conns {
		if name == "nothing" || name == "a byte at a time" {
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.Copy(io.Discard, c)
		r.Check(err == nil || !isTimeout(err), "berth did not hang up on a client that wrote junk: %v", err)
	}
	close(stopReal)
	<-realDone
	for c := range conns {
		c.Close()
	}
	n.settle(t, &base)
	if err := n.removeAll(); err != nil {
		r.Unexpected("removing the pods: %v", err)
	}
	r.Leaks(n.leaks())
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
