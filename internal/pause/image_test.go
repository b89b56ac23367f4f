package pause

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

// images is an image store standing in for Docker: the layer diff ids of
// each image by name. (The e2e suite tests the Ensurer on real Docker; this
// covers the decisions it makes, each in isolation.)
type images struct {
	mu       sync.Mutex
	layers   map[string][]string
	imports  int
	inspects int
}

func (d *images) ImageLayers(_ context.Context, ref string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inspects++
	l, ok := d.layers[ref]
	if !ok {
		return nil, fmt.Errorf("image %s: %w", ref, errdefs.ErrNotFound)
	}
	return l, nil
}

func (d *images) ImportImage(_ context.Context, rootfs io.Reader, ref string, _ []string) error {
	if _, err := io.ReadAll(rootfs); err != nil {
		return err
	}
	want, err := LayerDigest()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.layers[ref] = []string{want}
	d.imports++
	return nil
}

func TestEnsurer(t *testing.T) {
	ours, err := LayerDigest()
	if err != nil {
		t.Fatal(err)
	}
	const (
		builtin = "berth.local/pause:1.0"
		custom  = "registry.example/pause:3.10"
		real    = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	)
	errUnreachable := errors.New("registry registry.example is unreachable")
	for _, tc := range []struct {
		name    string
		image   string
		present []string // layers of the image already there; nil: absent
		pull    error    // what a pull returns; nil: it succeeds
		noPull  bool     // Ensurer.Pull is nil
		cancel  bool     // the caller's context is cancelled
		wantErr bool
		want    State
		pulls   int
		imports int
	}{
		{name: "builtin absent is built", image: builtin,
			want: State{Source: Built}, imports: 1},
		{name: "builtin current is used", image: builtin, present: []string{ours},
			want: State{Source: Present}},
		{name: "builtin stale is rebuilt, never pulled", image: builtin, present: []string{real},
			want: State{Source: Built}, imports: 1},
		{name: "custom absent is pulled", image: custom,
			want: State{Source: Pulled}, pulls: 1},
		{name: "custom present is used", image: custom, present: []string{real},
			want: State{Source: Present}},
		{name: "custom unpullable gets a stand-in", image: custom, pull: errUnreachable,
			want: State{Source: Built, PullError: errUnreachable.Error()}, pulls: 1, imports: 1},
		{name: "a stand-in from an earlier run is pulled over", image: custom, present: []string{ours},
			want: State{Source: Pulled}, pulls: 1},
		{name: "a stand-in from an earlier run stays when the pull fails", image: custom, present: []string{ours}, pull: errUnreachable,
			want: State{Source: Built, PullError: errUnreachable.Error()}, pulls: 1},
		{name: "without a pull function a custom image is built", image: custom, noPull: true,
			want: State{Source: Built}, imports: 1},
		{name: "a cancelled caller builds nothing", image: custom, pull: context.Canceled, cancel: true,
			wantErr: true, want: State{Source: Unchecked}, pulls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &images{layers: map[string][]string{}}
			if tc.present != nil {
				d.layers[tc.image] = tc.present
			}
			pulls := 0
			e := &Ensurer{
				Image:   tc.image,
				Builtin: tc.image == builtin,
				Docker:  d,
				Log:     slog.New(slog.DiscardHandler),
			}
			if !tc.noPull {
				e.Pull = func(context.Context, string) error {
					pulls++
					if tc.pull == nil {
						d.layers[tc.image] = []string{real}
					}
					return tc.pull
				}
			}
			if got := e.State(); got.Source != Unchecked || got.Image != tc.image {
				t.Errorf("State before Ensure = %+v", got)
			}
			ctx, cancel := context.WithCancel(context.Background())
			if tc.cancel {
				cancel()
			}
			defer cancel()
			// Twice: the second call finds what the first left, and must
			// neither pull nor build again.
			for i := range 2 {
				err := e.Ensure(ctx)
				if (err != nil) != tc.wantErr {
					t.Fatalf("Ensure #%d: %v, want error %v", i+1, err, tc.wantErr)
				}
			}
			tc.want.Image = tc.image
			if got := e.State(); got != tc.want {
				t.Errorf("State = %+v, want %+v", got, tc.want)
			}
			if pulls != tc.pulls && !tc.cancel {
				t.Errorf("pulls = %d, want %d", pulls, tc.pulls)
			}
			if d.imports != tc.imports {
				t.Errorf("imports = %d, want %d", d.imports, tc.imports)
			}
		})
	}
}

// TestEnsurerRemembersTheImage: once the image is there, later pods do not
// ask Docker for it again, until Forget says it went; then it is made
// again.
func TestEnsurerRemembersTheImage(t *testing.T) {
	d := &images{layers: map[string][]string{}}
	e := &Ensurer{Image: "berth.local/pause:1.0", Builtin: true, Docker: d, Log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	for range 3 {
		if err := e.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d.inspects != 2 || d.imports != 1 {
		t.Fatalf("three Ensures: %d inspects and %d imports, want 2 (before and after the build's lock) and 1", d.inspects, d.imports)
	}
	delete(d.layers, e.Image)
	if err := e.Ensure(ctx); err != nil || d.imports != 1 {
		t.Fatalf("Ensure before Forget: %v, %d imports; want the image taken as there", err, d.imports)
	}
	e.Forget()
	if err := e.Ensure(ctx); err != nil || d.imports != 2 {
		t.Fatalf("Ensure after Forget: %v, %d imports, want 2", err, d.imports)
	}
}

// TestEnsurerPullsOnceForConcurrentPods: pods starting together share one
// pull.
func TestEnsurerPullsOnceForConcurrentPods(t *testing.T) {
	d := &images{layers: map[string][]string{}}
	var mu sync.Mutex
	pulls := 0
	e := &Ensurer{
		Image:  "registry.example/pause:3.10",
		Docker: d,
		Log:    slog.New(slog.DiscardHandler),
		Pull: func(context.Context, string) error {
			mu.Lock()
			pulls++
			mu.Unlock()
			d.mu.Lock()
			d.layers["registry.example/pause:3.10"] = []string{"sha256:2222222222222222222222222222222222222222222222222222222222222222"}
			d.mu.Unlock()
			return nil
		},
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.Ensure(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if pulls != 1 {
		t.Errorf("pulls = %d, want 1", pulls)
	}
}
