// Package interceptor holds what every CRI call goes through once, at the
// gRPC boundary: panic recovery, a request id, the readiness gate, logging,
// metrics, and the mapping of Berth's sentinel errors to gRPC codes.
package interceptor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/panics"
)

// RequestIDHeader is the metadata key carrying a call's request id, both
// ways: a client may send one; Berth always returns one.
const RequestIDHeader = "x-request-id"

// Chain is the interceptor set for the CRI server.
type Chain struct {
	Log     *slog.Logger
	Metrics *metrics.Metrics
	Gate    *Gate
}

// Unary returns the unary server interceptor.
func (c *Chain) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		ctx, done := c.begin(ctx, info.FullMethod)
		defer func() {
			if r := recover(); r != nil {
				err = c.panicked(ctx, info.FullMethod, r)
			}
			err = done(err)
		}()
		if err := c.Gate.Wait(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream returns the stream server interceptor.
func (c *Chain) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		ctx, done := c.begin(ss.Context(), info.FullMethod)
		defer func() {
			if r := recover(); r != nil {
				err = c.panicked(ctx, info.FullMethod, r)
			}
			err = done(err)
		}()
		if err := c.Gate.Wait(ctx, info.FullMethod); err != nil {
			return err
		}
		return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	}
}

// begin starts a call: it assigns the request id, puts a logger carrying
// it in the context, and returns the function that ends the call.
func (c *Chain) begin(ctx context.Context, fullMethod string) (context.Context, func(error) error) {
	start := time.Now()
	method := path.Base(fullMethod)
	id := requestID(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id))
	logger := c.Log.With("method", method, "requestID", id)
	ctx = logging.WithLogger(ctx, logger)
	c.Metrics.RPCInFlight.WithLabelValues(method).Inc()

	return ctx, func(err error) error {
		err = errdefs.ToGRPC(err)
		code := status.Code(err)
		elapsed := time.Since(start)
		c.Metrics.RPCInFlight.WithLabelValues(method).Dec()
		c.Metrics.RPCRequests.WithLabelValues(method, code.String()).Inc()
		c.Metrics.RPCDuration.WithLabelValues(method).Observe(elapsed.Seconds())

		level := slog.LevelDebug
		if IsMutating(method) {
			level = slog.LevelInfo
		}
		switch code {
		case codes.OK, codes.NotFound, codes.Canceled:
		case codes.Internal, codes.Unknown, codes.DataLoss:
			level = slog.LevelError
		default:
			level = max(level, slog.LevelWarn)
		}
		if logger.Enabled(ctx, level) {
			attrs := []any{"code", code.String(), "duration", elapsed}
			if err != nil {
				attrs = append(attrs, "error", status.Convert(err).Message())
			}
			logger.Log(ctx, level, "CRI call", attrs...)
		}
		return err
	}
}

// panicked logs and counts a panic of the call's goroutine (or one a
// worker of the call raised again in it) and returns its Internal error.
func (c *Chain) panicked(ctx context.Context, method string, r any) error {
	return fmt.Errorf("%s: %w", path.Base(method), panics.Handle(ctx, panics.RPC, r))
}

func requestID(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if ids := md.Get(RequestIDHeader); len(ids) > 0 && ids[0] != "" && len(ids[0]) <= 64 {
			return ids[0]
		}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// readOnly lists the calls that change nothing; they log at debug level.
var readOnly = map[string]bool{
	"Version": true, "Status": true, "RuntimeConfig": true,
	"PodSandboxStatus": true, "ListPodSandbox": true, "StreamPodSandboxes": true,
	"ContainerStatus": true, "ListContainers": true, "StreamContainers": true,
	"ContainerStats": true, "ListContainerStats": true, "StreamContainerStats": true,
	"PodSandboxStats": true, "ListPodSandboxStats": true, "StreamPodSandboxStats": true,
	"ListMetricDescriptors": true, "ListPodSandboxMetrics": true, "StreamPodSandboxMetrics": true,
	"GetContainerEvents": true,
	"ListImages":         true, "StreamImages": true, "ImageStatus": true, "ImageFsInfo": true,
	"ServerReflectionInfo": true, "Check": true, "Watch": true,
}

// IsMutating reports whether a CRI method (its short name) changes state.
func IsMutating(method string) bool {
	return !readOnly[strings.TrimPrefix(method, "/")]
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }
