package cri

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

// The goroutines of internal/cri survive a panic in their work: each
// test below panics in one kind and shows the callers get an Internal
// error (or the panic in their own goroutine, where the interceptor
// answers it) and that the next call works.

func TestADetachedRunThatPanicsFailsItsCallersAndFreesTheName(t *testing.T) {
	runs := newDetachedRuns()
	release := make(chan struct{})
	errs := make(chan error, 2)
	var started sync.WaitGroup
	started.Add(1)
	go func() {
		_, err := runs.do(context.Background(), "k8s_POD_x", func() (string, error) {
			started.Done()
			<-release
			panic("boom")
		})
		errs <- err
	}()
	started.Wait()
	go func() {
		// Joins the run in flight (kubelet's retry).
		_, err := runs.do(context.Background(), "k8s_POD_x", func() (string, error) { return "second", nil })
		errs <- err
	}()
	close(release)
	for range 2 {
		if err := <-errs; !errors.Is(err, errdefs.ErrInternal) && err != nil {
			t.Errorf("caller got %v, want an internal error", err)
		}
	}
	if runs.running("k8s_POD_x") {
		t.Fatal("the name is still held after the panic")
	}
	id, err := runs.do(context.Background(), "k8s_POD_x", func() (string, error) { return "id", nil })
	if id != "id" || err != nil {
		t.Errorf("the next run: %q, %v", id, err)
	}
}
