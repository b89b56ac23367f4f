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
