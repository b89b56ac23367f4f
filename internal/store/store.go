// Package store is Berth's in-memory index of the pod sandboxes and
// containers it serves: rebuilt from Docker and the checkpoints at start-up,
// kept current by Berth's own calls and Docker's event stream, and read by
// the List and Status RPCs without a Docker round trip.
package store

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/metrics"
)

// Store indexes sandboxes and containers by id and Docker name.
//
// NOTE: records are immutable once stored. Get and List return pointers to
// the stored records, which callers must not modify; Update copies the
// record, lets the caller change the copy, and stores the copy. Maps and
// slices inside a record are never modified in place either.
type Store struct {
	mu         sync.RWMutex // guards sandboxes, containers and bySandbox
	sandboxes  table[Sandbox]
	containers table[Container]
	// bySandbox holds each sandbox's container ids: PodSandboxStatus reads
	// a pod's containers on every call (evented PLEG's containers_statuses),
	// and a scan of every container cost more than the rest of the call.
	bySandbox map[string]map[string]struct{}

	subsMu sync.Mutex // guards subs
	subs   map[*Subscription]struct{}
}

// New returns an empty store.
func New() *Store {
	return &Store{
		sandboxes: newTable(func(r *Sandbox) (string, string, int64) { return r.ID, r.Name, r.CreatedAt }),
		containers: newTable(func(r *Container) (string, string, int64) {
			return r.ID, r.Name, r.CreatedAt
		}),
		bySandbox: map[string]map[string]struct{}{},
		subs:      map[*Subscription]struct{}{},
	}
}

// Change describes one update to the store, for subscribers.
type Change struct {
	Kind      string // "sandbox" or "container"
	ID        string
	Deleted   bool
	Sandbox   *Sandbox
	Container *Container
}

// Subscription is one subscriber's feed of the index's changes.
type Subscription struct {
	name    string
	ch      chan Change
	dropped chan struct{} // holds a value while a drop is not yet handled
}

// C delivers the changes, in the order they were made.
func (sub *Subscription) C() <-chan Change { return sub.ch }

// Dropped receives a value after the store dropped one or more changes
// for lack of room in C (it holds one however many were dropped). The
// subscriber then missed changes and must resynchronise: read the current
// records of everything it follows, then carry on with C.
func (sub *Subscription) Dropped() <-chan struct{} { return sub.dropped }

// Subscribe sends every later change to a new subscription with room for
// buffer changes, until Unsubscribe. A change the subscription has no room
// for is dropped, since a subscriber must not block the store; the drop is
// counted in berth_events_dropped_total{subscriber=name}, logged, and
// signalled on Dropped. NOTE: Put, Update and Delete send while their
// caller waits, so buffer must cover the largest burst of changes (a full
// resync of a busy node) the subscriber takes to catch up with.
func (s *Store) Subscribe(name string, buffer int) *Subscription {
	sub := &Subscription{name: name, ch: make(chan Change, buffer), dropped: make(chan struct{}, 1)}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	s.subs[sub] = struct{}{}
	return sub
}

// Unsubscribe stops sending changes to sub.
func (s *Store) Unsubscribe(sub *Subscription) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	delete(s.subs, sub)
}

func (s *Store) notify(c Change) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for sub := range s.subs {
		select {
		case sub.ch <- c:
			continue
		default:
		}
		metrics.EventsDropped.WithLabelValues(sub.name).Inc()
		select {
		case sub.dropped <- struct{}{}:
			// Once per episode: until the subscriber has seen the
			// signal, later drops add nothing to what it must do.
			slog.Warn("the index dropped changes for a subscriber that fell behind; it resyncs",
				"subscriber", sub.name, "queue", cap(sub.ch), "kind", c.Kind, "id", c.ID)
		default:
		}
	}
}

// PutSandbox stores sb, replacing any record with its id.
func (s *Store) PutSandbox(sb *Sandbox) {
	s.mu.Lock()
	s.sandboxes.put(sb)
	s.mu.Unlock()
	s.notify(Change{Kind: "sandbox", ID: sb.ID, Sandbox: sb})
}

// UpdateSandbox applies fn to a copy of the sandbox and stores the copy. It
// returns false if there is no such sandbox.
func (s *Store) UpdateSandbox(id string, fn func(*Sandbox)) bool {
	s.mu.Lock()
	cp, ok := s.sandboxes.update(id, fn)
	s.mu.Unlock()
	if ok {
		s.notify(Change{Kind: "sandbox", ID: id, Sandbox: cp})
	}
	return ok
}

// DeleteSandbox removes a sandbox's record.
func (s *Store) DeleteSandbox(id string) {
	s.mu.Lock()
	old, ok := s.sandboxes.delete(id)
	s.mu.Unlock()
	if ok {
		s.notify(Change{Kind: "sandbox", ID: id, Deleted: true, Sandbox: old})
	}
}

// Sandbox returns the sandbox with this exact id.
func (s *Store) Sandbox(id string) (*Sandbox, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sb, ok := s.sandboxes.byID[id]
	return sb, ok
}

// SandboxByName returns the sandbox with this Docker name.
func (s *Store) SandboxByName(name string) (*Sandbox, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sandboxes.byName(name)
}

// ResolveSandbox finds a sandbox by full id or unique id prefix. It
// returns an error wrapping errdefs.ErrNotFound if none matches.
func (s *Store) ResolveSandbox(idOrPrefix string) (*Sandbox, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sandboxes.resolve("pod sandbox", idOrPrefix)
}

// Sandboxes returns the sandboxes keep returns true for, oldest first.
func (s *Store) Sandboxes(keep func(*Sandbox) bool) []*Sandbox {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sandboxes.list(keep)
}

// PutContainer stores c, replacing any record with its id.
func (s *Store) PutContainer(c *Container) {
	s.mu.Lock()
	old := s.containers.byID[c.ID]
	s.containers.put(c)
	s.reindex(old, c)
	s.mu.Unlock()
	s.notify(Change{Kind: "container", ID: c.ID, Container: c})
}

// UpdateContainer applies fn to a copy of the container and stores it.
func (s *Store) UpdateContainer(id string, fn func(*Container)) bool {
	s.mu.Lock()
	old := s.containers.byID[id]
	cp, ok := s.containers.update(id, fn)
	if ok {
		s.reindex(old, cp)
	}
	s.mu.Unlock()
	if ok {
		s.notify(Change{Kind: "container", ID: id, Container: cp})
	}
	return ok
}

// DeleteContainer removes a container's record.
func (s *Store) DeleteContainer(id string) {
	s.mu.Lock()
	old, ok := s.containers.delete(id)
	if ok {
		s.reindex(old, nil)
	}
	s.mu.Unlock()
	if ok {
		s.notify(Change{Kind: "container", ID: id, Deleted: true, Container: old})
	}
}

// Container returns the container with this exact id.
func (s *Store) Container(id string) (*Container, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.containers.byID[id]
	return c, ok
}

// ContainerByName returns the container with this Docker name.
func (s *Store) ContainerByName(name string) (*Container, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.containers.byName(name)
}

// ResolveContainer finds a container by full id or unique id prefix.
func (s *Store) ResolveContainer(idOrPrefix string) (*Container, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.containers.resolve("container", idOrPrefix)
}

// Containers returns the containers keep returns true for, oldest first.
func (s *Store) Containers(keep func(*Container) bool) []*Container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.containers.list(keep)
}

// ContainersOf returns the containers of a sandbox, oldest first.
func (s *Store) ContainersOf(sandboxID string) []*Container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := s.bySandbox[sandboxID]
	if len(ids) == 0 {
		return nil
	}
	out := make([]*Container, 0, len(ids))
	for id := range ids {
		out = append(out, s.containers.byID[id])
	}
	slices.SortFunc(out, func(a, b *Container) int {
		if c := cmp.Compare(a.CreatedAt, b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// reindex moves a container in bySandbox from its old record's sandbox
// (old is nil for a new container) to its new one's (cur is nil when it
// is deleted). s.mu is held.
func (s *Store) reindex(old, cur *Container) {
	if old != nil && (cur == nil || old.SandboxID != cur.SandboxID) {
		if ids := s.bySandbox[old.SandboxID]; ids != nil {
			delete(ids, old.ID)
			if len(ids) == 0 {
				delete(s.bySandbox, old.SandboxID)
			}
		}
	}
	if cur != nil {
		ids := s.bySandbox[cur.SandboxID]
		if ids == nil {
			ids = map[string]struct{}{}
			s.bySandbox[cur.SandboxID] = ids
		}
		ids[cur.ID] = struct{}{}
	}
}

// table indexes one kind of record by id and by Docker name. The Store's
// mutex guards it.
type table[T any] struct {
	byID  map[string]*T
	names map[string]string
	// key returns a record's id, Docker name and creation time.
	key func(*T) (id, name string, created int64)
}

func newTable[T any](key func(*T) (string, string, int64)) table[T] {
	return table[T]{byID: map[string]*T{}, names: map[string]string{}, key: key}
}

func (t *table[T]) put(r *T) {
	id, name, _ := t.key(r)
	if old, ok := t.byID[id]; ok {
		if _, oldName, _ := t.key(old); oldName != name && t.names[oldName] == id {
			delete(t.names, oldName)
		}
	}
	t.byID[id] = r
	if name != "" {
		t.names[name] = id
	}
}

func (t *table[T]) update(id string, fn func(*T)) (*T, bool) {
	old, ok := t.byID[id]
	if !ok {
		return nil, false
	}
	cp := *old
	fn(&cp)
	t.put(&cp)
	return &cp, true
}

func (t *table[T]) delete(id string) (*T, bool) {
	old, ok := t.byID[id]
	if !ok {
		return nil, false
	}
	delete(t.byID, id)
	if _, name, _ := t.key(old); t.names[name] == id {
		delete(t.names, name)
	}
	return old, true
}

func (t *table[T]) byName(name string) (*T, bool) {
	r, ok := t.byID[t.names[name]]
	return r, ok
}

func (t *table[T]) resolve(what, idOrPrefix string) (*T, error) {
	if r, ok := t.byID[idOrPrefix]; ok {
		return r, nil
	}
	id, err := resolvePrefix(idOrPrefix, t.byID)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, idOrPrefix, err)
	}
	return t.byID[id], nil
}

// list returns the records keep accepts, oldest first (then by id).
func (t *table[T]) list(keep func(*T) bool) []*T {
	out := make([]*T, 0, len(t.byID))
	for _, r := range t.byID {
		if keep == nil || keep(r) {
			out = append(out, r)
		}
	}
	// Sort on keys taken once per record: List calls on a busy node sort
	// hundreds of records, and a comparator calling key twice per
	// comparison through sort.Slice's reflection was a tenth of their CPU.
	type entry struct {
		id      string
		created int64
		r       *T
	}
	entries := make([]entry, len(out))
	for i, r := range out {
		id, _, created := t.key(r)
		entries[i] = entry{id, created, r}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if c := cmp.Compare(a.created, b.created); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	for i, e := range entries {
		out[i] = e.r
	}
	return out
}

func resolvePrefix[T any](prefix string, m map[string]T) (string, error) {
	if prefix == "" {
		return "", errdefs.ErrNotFound
	}
	var found []string
	for id := range m {
		if strings.HasPrefix(id, prefix) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", errdefs.ErrNotFound
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("the id prefix matches %d objects: %w", len(found), errdefs.ErrInvalidArgument)
	}
}

// MatchLabels reports whether labels has every key/value of selector.
func MatchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
