// Package errdefs holds the sentinel errors Berth's layers return and the one
// place where they become gRPC status codes.
package errdefs

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors. Lower layers wrap them with %w and context; the gRPC
// interceptor maps them to codes with ToGRPC. A handler never builds a
// status by hand.
var (
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrUnimplemented      = errors.New("not implemented")
	ErrDeadlineExceeded   = errors.New("deadline exceeded")
	ErrResourceExhausted  = errors.New("resource exhausted")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrUnauthenticated    = errors.New("unauthenticated")
	ErrInternal           = errors.New("internal error")
)

// InvalidArgument returns an error wrapping ErrInvalidArgument whose message
// names the offending field, e.g. InvalidArgument("config.metadata.name", "must not be empty").
func InvalidArgument(field, format string, args ...any) error {
	return &fieldError{kind: ErrInvalidArgument, field: field, msg: fmt.Sprintf(format, args...)}
}

// NotFound returns an error wrapping ErrNotFound for the named object.
func NotFound(what string, id string) error {
	return fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
}

type fieldError struct {
	kind  error
	field string
	msg   string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }
func (e *fieldError) Unwrap() error { return e.kind }

// Field returns the request field an error names, or "" if it names none.
// Like Code it looks at the first coded error in chain order, so an
// internal error whose cause was a bad field names no field.
func Field(err error) string {
	if fe, ok := firstCoded(err).(*fieldError); ok {
		return fe.field
	}
	return ""
}

var codeOf = []struct {
	err  error
	code codes.Code
}{
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrNotFound, codes.NotFound},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrUnavailable, codes.Unavailable},
	{ErrUnimplemented, codes.Unimplemented},
	{ErrDeadlineExceeded, codes.DeadlineExceeded},
	{ErrResourceExhausted, codes.ResourceExhausted},
	{ErrPermissionDenied, codes.PermissionDenied},
	{ErrUnauthenticated, codes.Unauthenticated},
	{ErrInternal, codes.Internal},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// Code returns the gRPC code for err: the code of the first sentinel or
// status error met walking err's chain in order (err itself, then what it
// wraps, depth first, left to right for errors joined or formatted with
// several %w), else codes.Unknown. So fmt.Errorf("%w: ...: %w", ErrNotFound,
// cause) is NotFound whatever cause wraps.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if c, ok := firstCode(err); ok {
		return c
	}
	return codes.Unknown
}

// firstCode returns the code of firstCoded(err).
func firstCode(err error) (codes.Code, bool) {
	switch e := firstCoded(err).(type) {
	case nil:
		return codes.OK, false
	case *fieldError:
		return firstCode(e.kind)
	case interface{ GRPCStatus() *status.Status }:
		return e.GRPCStatus().Code(), true
	default:
		for _, c := range codeOf {
			if e == c.err {
				return c.code, true
			}
		}
		return codes.OK, false
	}
}

// firstCoded walks err's chain in pre-order and returns the first node that
// is a field error, a sentinel of codeOf or a gRPC status, or nil.
func firstCoded(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*fieldError); ok {
		return err
	}
	for _, c := range codeOf {
		if err == c.err {
			return err
		}
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return firstCoded(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if c := firstCoded(e); c != nil {
				return c
			}
		}
	}
	return nil
}

// ToGRPC converts err into a gRPC status error carrying err's message and
// the code Code gives. A status error (not wrapped) is returned unchanged.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	return status.Error(Code(err), err.Error())
}
