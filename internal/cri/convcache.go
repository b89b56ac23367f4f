package cri

import (
	"sync"

	"google.golang.org/protobuf/proto"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/store"
)

// convCache keeps the CRI form of each index record, so List calls on a
// busy node convert only what changed since the last call. Records are
// immutable and replaced on every change, so a cached entry is valid
// exactly while its record pointer is the one in the index.
//
// NOTE: the cached messages are shared by concurrent responses; gRPC only
// reads them. Nothing may modify a message taken from here.
type convCache struct {
	mu         sync.Mutex // guards both maps and calls
	calls      int
	sandboxes  map[string]sandboxConv
	containers map[string]containerConv
}

type sandboxConv struct {
	rec *store.Sandbox
	msg *runtimeapi.PodSandbox
	enc []byte // msg's wire form, made by the first list that sends it
}

type containerConv struct {
	rec *store.Container
	msg *runtimeapi.Container
	enc []byte
}

func newConvCache() *convCache {
	return &convCache{sandboxes: map[string]sandboxConv{}, containers: map[string]containerConv{}}
}

func (c *convCache) sandbox(sb *store.Sandbox) *runtimeapi.PodSandbox {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.sandboxes[sb.ID]; ok && e.rec == sb {
		return e.msg
	}
	msg := dockerspec.PodSandbox(sb)
	c.sandboxes[sb.ID] = sandboxConv{rec: sb, msg: msg}
	return msg
}

func (c *convCache) container(ct *store.Container) *runtimeapi.Container {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.containers[ct.ID]; ok && e.rec == ct {
		return e.msg
	}
	msg := dockerspec.ContainerToCRI(ct)
	c.containers[ct.ID] = containerConv{rec: ct, msg: msg}
	return msg
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

// encodedSandboxes returns the wire form of each item, or false when one of
// them is not a message this cache made (then the caller encodes them).
func (c *convCache) encodedSandboxes(items []*runtimeapi.PodSandbox) ([][]byte, bool) {
	out := make([][]byte, len(items))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range items {
		e, ok := c.sandboxes[m.GetId()]
		if !ok || e.msg != m {
			return nil, false
		}
		if e.enc == nil {
			b, err := proto.Marshal(m)
			if err != nil {
				return nil, false
			}
			e.enc = b
			c.sandboxes[m.GetId()] = e
		}
		out[i] = e.enc
	}
	return out, true
}

// encodedContainers is encodedSandboxes for containers.
func (c *convCache) encodedContainers(items []*runtimeapi.Container) ([][]byte, bool) {
	out := make([][]byte, len(items))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range items {
		e, ok := c.containers[m.GetId()]
		if !ok || e.msg != m {
			return nil, false
		}
		if e.enc == nil {
			b, err := proto.Marshal(m)
			if err != nil {
				return nil, false
			}
			e.enc = b
			c.containers[m.GetId()] = e
		}
		out[i] = e.enc
	}
	return out, true
}
