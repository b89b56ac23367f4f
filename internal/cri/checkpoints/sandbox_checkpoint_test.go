package checkpoints

import (
	"errors"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestProcessStateOption(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts map[string]string
		want bool
		bad  bool
	}{
		{name: "none", want: true},
		{name: "include", opts: map[string]string{"process-state": "include"}, want: true},
		{name: "omit", opts: map[string]string{"process-state": "omit"}, want: false},
		{name: "unknown value", opts: map[string]string{"process-state": "some"}, bad: true},
		{name: "unknown key", opts: map[string]string{"tcp-established": "true"}, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := processStateOption(tc.opts)
			if tc.bad {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("processStateOption(%v) = %v, %v; want %v", tc.opts, got, err, tc.want)
			}
		})
	}
}
