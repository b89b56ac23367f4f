package cri

import (
	"sync"

	"google.golang.org/protobuf/proto"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/store"
)

// convCache keeps the CRI form of each index record, and its wire form once
// a list has sent it, so List calls on a busy node convert and encode only
// what changed since the last call. Records are immutable and replaced on
// every change, so a cached entry is valid exactly while its record pointer
// is the one in the index.
//
// NOTE: the cached messages are shared by concurrent responses; gRPC only
// reads them. Nothing may modify a message taken from here.
type convCache struct {
	mu         sync.Mutex // guards both maps and calls
	calls      int
	sandboxes  convMap[store.Sandbox, *runtimeapi.PodSandbox]
	containers convMap[store.Container, *runtimeapi.Container]
}

// convMap holds, by record id, the CRI message made from a record.
type convMap[R any, M proto.Message] map[string]conv[R, M]

type conv[R any, M proto.Message] struct {
	rec *R
	msg M
	enc []byte // msg's wire form, made by the first list that sends it
}

func newConvCache() *convCache {
	return &convCache{sandboxes: convMap[store.Sandbox, *runtimeapi.PodSandbox]{},
		containers: convMap[store.Container, *runtimeapi.Container]{}}
}

func (c *convCache) sandbox(sb *store.Sandbox) *runtimeapi.PodSandbox {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sandboxes.get(sb.ID, sb, dockerspec.PodSandbox)
}

func (c *convCache) container(ct *store.Container) *runtimeapi.Container {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.containers.get(ct.ID, ct, dockerspec.ContainerToCRI)
}

// encodedSandboxes returns the wire form of each item, or false when one of
// them is not a message this cache made (then the caller encodes them).
func (c *convCache) encodedSandboxes(items []*runtimeapi.PodSandbox) ([][]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sandboxes.encoded(items, (*runtimeapi.PodSandbox).GetId)
}

// encodedContainers is encodedSandboxes for containers.
func (c *convCache) encodedContainers(items []*runtimeapi.Container) ([][]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.containers.encoded(items, (*runtimeapi.Container).GetId)
}

// prune drops the entries of records no longer in the index; List calls
// run it now and then.
func (c *convCache) prune(st *store.Store) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.calls%64 != 0 {
		return
	}
	for id := range c.sandboxes {
		if _, ok := st.Sandbox(id); !ok {
			delete(c.sandboxes, id)
		}
	}
	for id := range c.containers {
		if _, ok := st.Container(id); !ok {
			delete(c.containers, id)
		}
	}
}

func (m convMap[R, M]) get(id string, rec *R, convert func(*R) M) M {
	if e, ok := m[id]; ok && e.rec == rec {
		return e.msg
	}
	msg := convert(rec)
	m[id] = conv[R, M]{rec: rec, msg: msg}
	return msg
}

func (m convMap[R, M]) encoded(items []M, id func(M) string) ([][]byte, bool) {
	out := make([][]byte, len(items))
	for i, msg := range items {
		e, ok := m[id(msg)]
		if !ok || proto.Message(e.msg) != proto.Message(msg) {
			return nil, false
		}
		if e.enc == nil {
			b, err := proto.Marshal(msg)
			if err != nil {
				return nil, false
			}
			e.enc = b
			m[id(msg)] = e
		}
		out[i] = e.enc
	}
	return out, true
}
