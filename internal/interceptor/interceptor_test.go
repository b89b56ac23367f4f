package interceptor

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/metrics"
)

func newChain(buf *bytes.Buffer, open bool) (*Chain, *metrics.Metrics) {
	m := metrics.New()
	g := NewGate(50*time.Millisecond, func() string { return "Docker is not answering" })
	if open {
		g.Open()
	}
	return &Chain{Log: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), Metrics: m, Gate: g}, m
}

func call(c *Chain, method string, h grpc.UnaryHandler) (any, error) {
	return c.Unary()(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/" + method}, h)
}

func TestPanicBecomesInternal(t *testing.T) {
	var buf bytes.Buffer
	c, _ := newChain(&buf, true)
	_, err := call(c, "RunPodSandbox", func(context.Context, any) (any, error) { panic("boom") })
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err = %v, want Internal", err)
	}
	if !strings.Contains(buf.String(), "recovered from a panic") || !strings.Contains(buf.String(), "goroutine") {
		t.Errorf("panic not logged with its stack:\n%s", buf.String())
	}
	if n := testutil.ToFloat64(metrics.Panics.WithLabelValues("rpc")); n < 1 {
		t.Errorf("berth_panics_total{where=rpc} = %v, want it counted", n)
	}
}

func TestSentinelErrorsAreMapped(t *testing.T) {
	var buf bytes.Buffer
	c, m := newChain(&buf, true)
	_, err := call(c, "PodSandboxStatus", func(context.Context, any) (any, error) {
		return nil, errdefs.NotFound("pod sandbox", "abc")
	})
	if status.Code(err) != codes.NotFound {
		t.Errorf("err = %v, want NotFound", err)
	}
	if n := testutil.ToFloat64(m.RPCRequests.WithLabelValues("PodSandboxStatus", "NotFound")); n != 1 {
		t.Errorf("requests_total{NotFound} = %v, want 1", n)
	}
	if n := testutil.CollectAndCount(m.RPCDuration); n != 1 {
		t.Errorf("duration series = %d, want 1", n)
	}
}

func TestLogLevels(t *testing.T) {
	var buf bytes.Buffer
	c, _ := newChain(&buf, true)
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	_, _ = call(c, "ListContainers", ok)
	_, _ = call(c, "CreateContainer", ok)
	out := buf.String()
	if !strings.Contains(out, "level=DEBUG msg=\"CRI call\" method=ListContainers") {
		t.Errorf("a read is not logged at debug:\n%s", out)
	}
	if !strings.Contains(out, "level=INFO msg=\"CRI call\" method=CreateContainer") {
		t.Errorf("a mutation is not logged at info:\n%s", out)
	}
	if !strings.Contains(out, "requestID=") {
		t.Errorf("no request id:\n%s", out)
	}
}

func TestGateHoldsStatefulCallsOnly(t *testing.T) {
	var buf bytes.Buffer
	c, _ := newChain(&buf, false)
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	if _, err := call(c, "Status", ok); err != nil {
		t.Errorf("Status was gated: %v", err)
	}
	_, err := call(c, "ListPodSandbox", ok)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "Docker is not answering") {
		t.Errorf("ListPodSandbox before recovery = %v, want Unavailable with the reason", err)
	}
	c.Gate.Open()
	if _, err := call(c, "ListPodSandbox", ok); err != nil {
		t.Errorf("ListPodSandbox after Open = %v", err)
	}
}
