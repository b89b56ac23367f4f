package cri

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/encoding"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

func codecFixture(n int) *Service {
	s := &Service{store: store.New(), caches: caches{conv: newConvCache()}}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%064d", i)
		s.store.PutSandbox(&store.Sandbox{
			ID: id, Name: fmt.Sprint("k8s_POD_", i),
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: fmt.Sprint("pod-", i), Namespace: "default", Uid: fmt.Sprint("uid-", i), Attempt: uint32(i)},
			Labels:      map[string]string{"app": "x", "io.kubernetes.pod.name": fmt.Sprint("pod-", i)},
			Annotations: map[string]string{"kubernetes.io/config.seen": "2026-11-22T21:00:00Z"},
			Running:     i%2 == 0, NetworkReady: true, IPs: []string{"10.0.0.1"}, CreatedAt: int64(i),
		})
		s.store.PutContainer(&store.Container{
			ID: fmt.Sprintf("c%063d", i), Name: fmt.Sprint("k8s_c_", i), SandboxID: id,
			Metadata: &runtimeapi.ContainerMetadata{Name: "c", Attempt: uint32(i)},
			Labels:   map[string]string{"app": "x"}, Annotations: map[string]string{"a": fmt.Sprint(i)},
			Image: &runtimeapi.ImageSpec{Image: "busybox", Annotations: map[string]string{"k": "v"}}, ImageID: "sha256:1",
			State: runtimeapi.ContainerState_CONTAINER_RUNNING, CreatedAt: int64(i),
		})
	}
	return s
}

// roundTrip encodes v with the server's codec and decodes it with plain
// protobuf into a fresh message of v's type.
func roundTrip(t *testing.T, s *Service, v proto.Message) proto.Message {
	t.Helper()
	data, err := s.Codec().Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	got := v.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(data.Materialize(), got); err != nil {
		t.Fatalf("the codec's bytes do not decode: %v", err)
	}
	return got
}

// TestCodecListResponses: list responses assembled from cached encodings
// decode to exactly the response, on the first list and the next ones, and
// after a record changes.
func TestCodecListResponses(t *testing.T) {
	s := codecFixture(20)
	for round := 0; round < 3; round++ {
		if round == 2 {
			s.store.UpdateSandbox(fmt.Sprintf("%064d", 3), func(sb *store.Sandbox) { sb.Running = !sb.Running })
			s.store.UpdateContainer(fmt.Sprintf("c%063d", 5), func(c *store.Container) { c.State = runtimeapi.ContainerState_CONTAINER_EXITED })
		}
		pods := &runtimeapi.ListPodSandboxResponse{Items: s.listSandboxes(nil)}
		if got := roundTrip(t, s, pods); !proto.Equal(got, pods) {
			t.Fatalf("round %d: pods decoded to %v, want %v", round, got, pods)
		}
		if s.caches.conv.sandboxes[fmt.Sprintf("%064d", 0)].enc == nil {
			t.Fatal("the pods' list was not assembled from cached encodings")
		}
		ctrs := &runtimeapi.ListContainersResponse{Containers: s.listContainers(nil)}
		if got := roundTrip(t, s, ctrs); !proto.Equal(got, ctrs) {
			t.Fatalf("round %d: containers decoded to %v, want %v", round, got, ctrs)
		}
	}
}

// TestCodecFallsBack: messages the cache did not make, empty lists and
// other responses are encoded by gRPC's proto codec.
func TestCodecFallsBack(t *testing.T) {
	s := codecFixture(3)
	items := s.listSandboxes(nil)
	foreign := proto.Clone(items[1]).(*runtimeapi.PodSandbox)
	foreign.Labels["extra"] = "1"
	mixed := &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{items[0], foreign, items[2]}}
	if got := roundTrip(t, s, mixed); !proto.Equal(got, mixed) {
		t.Fatalf("mixed list decoded to %v", got)
	}
	for _, v := range []proto.Message{
		&runtimeapi.ListPodSandboxResponse{},
		&runtimeapi.ListContainersResponse{},
		&runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "berth"},
	} {
		if got := roundTrip(t, s, v); !proto.Equal(got, v) {
			t.Fatalf("%T decoded to %v", v, got)
		}
	}
}

// BenchmarkCodecList100 compares encoding a list of 100 containers with
// the server's codec and with gRPC's proto codec.
func BenchmarkCodecList100(b *testing.B) {
	s := codecFixture(100)
	b.Run("berth", func(b *testing.B) { benchCodec(b, s, s.Codec()) })
	b.Run("proto", func(b *testing.B) { benchCodec(b, s, encoding.GetCodecV2("proto")) })
}

func benchCodec(b *testing.B, s *Service, codec encoding.CodecV2) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		resp := &runtimeapi.ListContainersResponse{Containers: s.listContainers(nil)}
		data, err := codec.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		data.Free()
	}
}

// TestCodecResponsesHaveOneField guards the codec's assumption: the two
// list responses it assembles hold their records in field 1 and nothing
// else. A cri-api upgrade that adds a field fails here instead of the codec
// silently dropping it.
func TestCodecResponsesHaveOneField(t *testing.T) {
	for _, m := range []proto.Message{&runtimeapi.ListPodSandboxResponse{}, &runtimeapi.ListContainersResponse{}} {
		fields := m.ProtoReflect().Descriptor().Fields()
		if fields.Len() != 1 || fields.Get(0).Number() != 1 || !fields.Get(0).IsList() {
			t.Errorf("%s has fields %v: the list codec (codec.go) writes only repeated field 1", m.ProtoReflect().Descriptor().FullName(), fields)
		}
	}
}
