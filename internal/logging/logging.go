// Package logging builds Berth's slog logger and routes klog (used by the
// Kubernetes libraries Berth links) into it, so every line has one format.
package logging

import (
	"context"
	"io"
	"log/slog"

	"k8s.io/klog/v2"
)

// New returns a logger writing to w at level in format ("text" or "json"),
// installs it as slog's default and as klog's backend.
func New(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	logger := slog.New(h)
	slog.SetDefault(logger)
	klog.SetSlogLogger(logger.With("source", "klog"))
	return logger
}

type ctxKey struct{}

// WithLogger returns ctx carrying logger, for FromContext.
func WithLogger(ctx context.Context, logger *slog.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, logger)
}

// FromContext returns the logger stored in ctx (with the request id of the
// call it belongs to), or slog's default.
func FromContext(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}
