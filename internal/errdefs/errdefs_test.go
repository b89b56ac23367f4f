package errdefs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestToGRPC(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{nil, codes.OK},
		{fmt.Errorf("sandbox %q: %w", "x", ErrNotFound), codes.NotFound},
		{InvalidArgument("config.metadata.name", "must not be empty"), codes.InvalidArgument},
		{fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", ErrFailedPrecondition)), codes.FailedPrecondition},
		{fmt.Errorf("docker: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{status.Error(codes.Aborted, "kept"), codes.Aborted},
		{errors.New("no sentinel"), codes.Unknown},
	} {
		got := ToGRPC(tc.err)
		if c := status.Code(got); c != tc.code {
			t.Errorf("ToGRPC(%v) code = %v, want %v", tc.err, c, tc.code)
		}
		if tc.err != nil && status.Convert(got).Message() != tc.err.Error() && tc.code != codes.Aborted {
			t.Errorf("message changed: %q", status.Convert(got).Message())
		}
	}
}

func TestInvalidArgumentNamesField(t *testing.T) {
	err := InvalidArgument("config.metadata.uid", "must not be empty")
	if err.Error() != "config.metadata.uid: must not be empty" || Field(err) != "config.metadata.uid" {
		t.Errorf("got %q field %q", err, Field(err))
	}
	if Field(fmt.Errorf("wrapped: %w", err)) != "config.metadata.uid" {
		t.Errorf("field lost through wrapping")
	}
}

func TestCodeTakesFirstSentinelInChainOrder(t *testing.T) {
	cause := fmt.Errorf("inspect: %w", ErrNotFound)
	st := status.Error(codes.Unavailable, "engine down")
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"outer sentinel before wrapped cause", fmt.Errorf("%w: create: %w", ErrInvalidArgument, cause), codes.InvalidArgument},
		{"cause first", fmt.Errorf("%w: then %w", cause, ErrInvalidArgument), codes.NotFound},
		{"sentinel before wrapped status", fmt.Errorf("%w: %w", ErrFailedPrecondition, st), codes.FailedPrecondition},
		{"status before sentinel", fmt.Errorf("%w: %w", st, ErrFailedPrecondition), codes.Unavailable},
		{"joined", errors.Join(errors.New("plain"), ErrAlreadyExists, ErrInternal), codes.AlreadyExists},
		{"deep", fmt.Errorf("a: %w", fmt.Errorf("b: %w", fmt.Errorf("c: %w", context.Canceled))), codes.Canceled},
		{"field error", fmt.Errorf("%w; later %w", InvalidArgument("x", "bad"), ErrNotFound), codes.InvalidArgument},
		{"none", fmt.Errorf("x: %w", errors.New("y")), codes.Unknown},
	} {
		if got := Code(tc.err); got != tc.want {
			t.Errorf("%s: Code(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
		if got := status.Code(ToGRPC(tc.err)); got != tc.want {
			t.Errorf("%s: ToGRPC code = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestFieldFollowsChainOrder(t *testing.T) {
	bad := InvalidArgument("config.metadata.name", "must not be empty")
	if got := Field(fmt.Errorf("create: %w", bad)); got != "config.metadata.name" {
		t.Errorf("wrapped field error: Field = %q", got)
	}
	if got := Field(fmt.Errorf("%w: %w", ErrInternal, bad)); got != "" {
		t.Errorf("internal error caused by a field error: Field = %q, want none", got)
	}
}
