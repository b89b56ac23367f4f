package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/metrics"
)

func TestSandboxIndex(t *testing.T) {
	s := New()
	sub := s.Subscribe("test", 10)
	s.PutSandbox(&Sandbox{ID: "abc123", Name: "k8s_POD_a", CreatedAt: 2})
	s.PutSandbox(&Sandbox{ID: "abd456", Name: "k8s_POD_b", CreatedAt: 1})
	if sb, err := s.ResolveSandbox("abc"); err != nil || sb.ID != "abc123" {
		t.Errorf("prefix: %v %v", sb, err)
	}
	if _, err := s.ResolveSandbox("ab"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := s.ResolveSandbox("zzz"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	if _, err := s.ResolveSandbox(""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("empty: %v", err)
	}
	if list := s.Sandboxes(nil); len(list) != 2 || list[0].ID != "abd456" {
		t.Errorf("oldest first: %v", list)
	}
	before, _ := s.Sandbox("abc123")
	if !s.UpdateSandbox("abc123", func(sb *Sandbox) { sb.Running = true; sb.Name = "k8s_POD_renamed" }) {
		t.Fatal("update failed")
	}
	if before.Running {
		t.Errorf("Update changed the record readers held")
	}
	if _, ok := s.SandboxByName("k8s_POD_renamed"); !ok {
		t.Errorf("byName after rename")
	}
	s.PutSandbox(&Sandbox{ID: "abc123", Name: "k8s_POD_c"})
	if _, ok := s.SandboxByName("k8s_POD_a"); ok {
		t.Errorf("old name still indexed after Put with a new name")
	}
	s.DeleteSandbox("abc123")
	if _, ok := s.SandboxByName("k8s_POD_c"); ok {
		t.Errorf("name still indexed after delete")
	}
	if s.UpdateSandbox("abc123", func(*Sandbox) {}) {
		t.Errorf("update of a deleted record succeeded")
	}
	if n := len(sub.C()); n != 5 {
		t.Errorf("%d changes notified, want 5", n)
	}
}

func TestContainersOfAndConcurrency(t *testing.T) {
	s := New()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("c%03d", i)
			s.PutContainer(&Container{ID: id, Name: "k8s_" + id, SandboxID: fmt.Sprint("s", i%5)})
			s.UpdateContainer(id, func(c *Container) { c.Pid = i })
			_ = s.Containers(nil)
		}(i)
	}
	wg.Wait()
	if n := len(s.ContainersOf("s3")); n != 10 {
		t.Errorf("ContainersOf = %d, want 10", n)
	}
}

func TestASubscriberThatStopsReadingIsToldToResync(t *testing.T) {
	s := New()
	stalled := s.Subscribe("test_stalled", 2)
	reader := s.Subscribe("test_reader", 100)
	before := testutil.ToFloat64(metrics.EventsDropped.WithLabelValues("test_stalled"))
	for i := range 5 {
		s.PutContainer(&Container{ID: fmt.Sprint("c", i), SandboxID: "sb"})
	}
	if n := testutil.ToFloat64(metrics.EventsDropped.WithLabelValues("test_stalled")) - before; n != 3 {
		t.Errorf("berth_events_dropped_total{subscriber=test_stalled} rose by %v, want 3", n)
	}
	select {
	case <-stalled.Dropped():
	default:
		t.Fatal("the stalled subscriber was not told it missed changes")
	}
	select {
	case <-stalled.Dropped():
		t.Error("told twice for one episode")
	default:
	}
	if len(stalled.C()) != 2 || len(reader.C()) != 5 {
		t.Errorf("queued %d and %d changes, want 2 (the buffer) and 5", len(stalled.C()), len(reader.C()))
	}
	select {
	case <-reader.Dropped():
		t.Error("a subscriber with room was told it missed changes")
	default:
	}
	// The subscriber resynced (drained): a later overflow tells it again.
	for len(stalled.C()) > 0 {
		<-stalled.C()
	}
	for i := range 3 {
		s.DeleteContainer(fmt.Sprint("c", i))
	}
	select {
	case <-stalled.Dropped():
	default:
		t.Error("a second overflow was not signalled")
	}
	s.Unsubscribe(stalled)
	s.DeleteContainer("c3")
	if len(stalled.C()) != 2 {
		t.Errorf("an unsubscribed subscription still gets changes")
	}
}

// BenchmarkContainersOf: PodSandboxStatus reads a pod's containers on
// every call (evented PLEG's containers_statuses), on a node of 110 pods
// with 3 containers each.
func BenchmarkContainersOf(b *testing.B) {
	s := New()
	for p := range 110 {
		for c := range 3 {
			s.PutContainer(&Container{ID: fmt.Sprintf("c%d-%d", p, c), SandboxID: fmt.Sprint("sb", p), CreatedAt: int64(c)})
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if n := len(s.ContainersOf(fmt.Sprint("sb", i%110))); n != 3 {
			b.Fatal(n)
		}
	}
}

// TestContainersOfFollowsEveryChange: the per-sandbox index agrees with a
// scan of every container after puts, updates that move a container,
// replacements and deletes.
func TestContainersOfFollowsEveryChange(t *testing.T) {
	s := New()
	scan := func(sb string) []string {
		var out []string
		for _, c := range s.Containers(func(c *Container) bool { return c.SandboxID == sb }) {
			out = append(out, c.ID)
		}
		return out
	}
	ids := func(cs []*Container) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"put", func() {
			s.PutContainer(&Container{ID: "b", SandboxID: "s1", CreatedAt: 2})
			s.PutContainer(&Container{ID: "a", SandboxID: "s1", CreatedAt: 2})
			s.PutContainer(&Container{ID: "c", SandboxID: "s1", CreatedAt: 1})
		}},
		{"update in place", func() { s.UpdateContainer("a", func(c *Container) { c.Pid = 7 }) }},
		{"update to another sandbox", func() { s.UpdateContainer("b", func(c *Container) { c.SandboxID = "s2" }) }},
		{"replace in another sandbox", func() { s.PutContainer(&Container{ID: "c", SandboxID: "s2", CreatedAt: 1}) }},
		{"delete", func() { s.DeleteContainer("a"); s.DeleteContainer("missing") }},
		{"delete the last", func() { s.DeleteContainer("b"); s.DeleteContainer("c") }},
	}
	for _, st := range steps {
		st.do()
		for _, sb := range []string{"s1", "s2", "none"} {
			if got, want := ids(s.ContainersOf(sb)), scan(sb); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("after %s: ContainersOf(%s) = %v, a scan finds %v", st.name, sb, got, want)
			}
		}
	}
	if len(s.bySandbox) != 0 {
		t.Errorf("the index keeps %v after every container went", s.bySandbox)
	}
}
