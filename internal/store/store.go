// Package store is Berth's in-memory index of the pod sandboxes and
// containers it serves: rebuilt from Docker and the checkpoints at start-up,
// kept current by Berth's own calls and Docker's event stream, and read by
// the List and Status RPCs without a Docker round trip.
package store

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Store indexes sandboxes and containers by id and Docker name.
//
// NOTE: records are immutable once stored. Get and List return pointers to
// the stored records, which callers must not modify; Update copies the
// record, lets the caller change the copy, and stores the copy. Maps and
// slices inside a record are never modified in place either.
type Store struct {
	mu         sync.RWMutex // guards sandboxes, containers and names
	sandboxes  map[string]*Sandbox
	containers map[string]*Container
	names      map[string]string // Docker name → id, for both kinds

	subsMu sync.Mutex // guards subs
	subs   map[chan<- Change]struct{}
}

// New returns an empty store.
func New() *Store {
	return &Store{
		sandboxes:  map[string]*Sandbox{},
		containers: map[string]*Container{},
		names:      map[string]string{},
		subs:       map[chan<- Change]struct{}{},
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

// Subscribe sends every later change to ch (dropping changes ch has no room
// for: subscribers must not block the store) until Unsubscribe.
func (s *Store) Subscribe(ch chan<- Change) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	s.subs[ch] = struct{}{}
}

// Unsubscribe stops sending changes to ch.
func (s *Store) Unsubscribe(ch chan<- Change) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	delete(s.subs, ch)
}

func (s *Store) notify(c Change) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- c:
		default:
		}
	}
}

// PutSandbox stores sb, replacing any record with its id.
func (s *Store) PutSandbox(sb *Sandbox) {
	s.mu.Lock()
	if old, ok := s.sandboxes[sb.ID]; ok && old.Name != sb.Name {
		delete(s.names, old.Name)
	}
	s.sandboxes[sb.ID] = sb
	if sb.Name != "" {
		s.names[sb.Name] = sb.ID
	}
	s.mu.Unlock()
	s.notify(Change{Kind: "sandbox", ID: sb.ID, Sandbox: sb})
}

// UpdateSandbox applies fn to a copy of the sandbox and stores the copy. It
// returns false if there is no such sandbox.
func (s *Store) UpdateSandbox(id string, fn func(*Sandbox)) bool {
	s.mu.Lock()
	old, ok := s.sandboxes[id]
	if !ok {
		s.mu.Unlock()
		return false
	}
	cp := *old
	fn(&cp)
	s.sandboxes[id] = &cp
	s.mu.Unlock()
	s.notify(Change{Kind: "sandbox", ID: id, Sandbox: &cp})
	return true
}

// DeleteSandbox removes a sandbox's record.
func (s *Store) DeleteSandbox(id string) {
	s.mu.Lock()
	old, ok := s.sandboxes[id]
	if ok {
		delete(s.sandboxes, id)
		if s.names[old.Name] == id {
			delete(s.names, old.Name)
		}
	}
	s.mu.Unlock()
	if ok {
		s.notify(Change{Kind: "sandbox", ID: id, Deleted: true, Sandbox: old})
	}
}

// Sandbox returns the sandbox with this exact id.
func (s *Store) Sandbox(id string) (*Sandbox, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sb, ok := s.sandboxes[id]
	return sb, ok
}

// SandboxByName returns the sandbox with this Docker name.
func (s *Store) SandboxByName(name string) (*Sandbox, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sb, ok := s.sandboxes[s.names[name]]
	return sb, ok
}

// ResolveSandbox finds a sandbox by full id or unique id prefix. It
// returns an error wrapping errdefs.ErrNotFound if none matches.
func (s *Store) ResolveSandbox(idOrPrefix string) (*Sandbox, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sb, ok := s.sandboxes[idOrPrefix]; ok {
		return sb, nil
	}
	id, err := resolvePrefix(idOrPrefix, s.sandboxes)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox %q: %w", idOrPrefix, err)
	}
	return s.sandboxes[id], nil
}

// Sandboxes returns the sandboxes keep returns true for, oldest first.
func (s *Store) Sandboxes(keep func(*Sandbox) bool) []*Sandbox {
	s.mu.RLock()
	out := make([]*Sandbox, 0, len(s.sandboxes))
	for _, sb := range s.sandboxes {
		if keep == nil || keep(sb) {
			out = append(out, sb)
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt != out[j].CreatedAt {
			return out[i].CreatedAt < out[j].CreatedAt
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// PutContainer stores c, replacing any record with its id.
func (s *Store) PutContainer(c *Container) {
	s.mu.Lock()
	if old, ok := s.containers[c.ID]; ok && old.Name != c.Name {
		delete(s.names, old.Name)
	}
	s.containers[c.ID] = c
	if c.Name != "" {
		s.names[c.Name] = c.ID
	}
	s.mu.Unlock()
	s.notify(Change{Kind: "container", ID: c.ID, Container: c})
}

// UpdateContainer applies fn to a copy of the container and stores it.
func (s *Store) UpdateContainer(id string, fn func(*Container)) bool {
	s.mu.Lock()
	old, ok := s.containers[id]
	if !ok {
		s.mu.Unlock()
		return false
	}
	cp := *old
	fn(&cp)
	s.containers[id] = &cp
	s.mu.Unlock()
	s.notify(Change{Kind: "container", ID: id, Container: &cp})
	return true
}

// DeleteContainer removes a container's record.
func (s *Store) DeleteContainer(id string) {
	s.mu.Lock()
	old, ok := s.containers[id]
	if ok {
		delete(s.containers, id)
		if s.names[old.Name] == id {
			delete(s.names, old.Name)
		}
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
	c, ok := s.containers[id]
	return c, ok
}

// ContainerByName returns the container with this Docker name.
func (s *Store) ContainerByName(name string) (*Container, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.containers[s.names[name]]
	return c, ok
}

// ResolveContainer finds a container by full id or unique id prefix.
func (s *Store) ResolveContainer(idOrPrefix string) (*Container, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c, ok := s.containers[idOrPrefix]; ok {
		return c, nil
	}
	id, err := resolvePrefix(idOrPrefix, s.containers)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", idOrPrefix, err)
	}
	return s.containers[id], nil
}

// Containers returns the containers keep returns true for, oldest first.
func (s *Store) Containers(keep func(*Container) bool) []*Container {
	s.mu.RLock()
	out := make([]*Container, 0, len(s.containers))
	for _, c := range s.containers {
		if keep == nil || keep(c) {
			out = append(out, c)
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt != out[j].CreatedAt {
			return out[i].CreatedAt < out[j].CreatedAt
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// ContainersOf returns the containers of a sandbox.
func (s *Store) ContainersOf(sandboxID string) []*Container {
	return s.Containers(func(c *Container) bool { return c.SandboxID == sandboxID })
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
