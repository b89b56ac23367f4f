package cri

import (
	"google.golang.org/grpc/encoding"
	// The proto codec registers itself; Codec builds on it.
	_ "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Codec returns the gRPC codec Berth's server uses: gRPC's proto codec,
// except that ListPodSandbox and ListContainers responses are assembled
// from the encoded records the conversion cache keeps, so a list on a busy
// node encodes only what changed since the last one (encoding was a third
// of a list's CPU at 100 records). The bytes are those proto.Marshal would
// write for the response: a repeated message field is its items' encodings,
// each behind its tag and length.
func (s *Service) Codec() encoding.CodecV2 {
	return listCodec{base: encoding.GetCodecV2("proto"), conv: s.caches.conv}
}

type listCodec struct {
	base encoding.CodecV2
	conv *convCache
}

func (c listCodec) Name() string { return c.base.Name() }

func (c listCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

func (c listCodec) Marshal(v any) (mem.BufferSlice, error) {
	var (
		items [][]byte
		ok    bool
	)
	// Both responses carry their records in field 1 and nothing else.
	switch m := v.(type) {
	case *runtimeapi.ListPodSandboxResponse:
		items, ok = c.conv.encodedSandboxes(m.GetItems())
	case *runtimeapi.ListContainersResponse:
		items, ok = c.conv.encodedContainers(m.GetContainers())
	}
	if !ok || len(items) == 0 {
		return c.base.Marshal(v)
	}
	size := 0
	for _, b := range items {
		size += protowire.SizeTag(1) + protowire.SizeBytes(len(b))
	}
	buf := make([]byte, 0, size)
	for _, b := range items {
		buf = protowire.AppendTag(buf, 1, protowire.BytesType)
		buf = protowire.AppendBytes(buf, b)
	}
	return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
}
