package cri

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

func BenchmarkListSandboxes100(b *testing.B) {
	s := &Service{store: store.New(), caches: caches{conv: newConvCache()}}
	for i := 0; i < 100; i++ {
		s.store.PutSandbox(&store.Sandbox{
			ID: fmt.Sprintf("%064d", i), Name: fmt.Sprint("k8s_POD_", i),
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: fmt.Sprint("pod-", i), Namespace: "default", Uid: fmt.Sprint("uid-", i)},
			Labels:      map[string]string{"app": "x", "io.kubernetes.pod.name": "pod", "io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": "uid"},
			Annotations: map[string]string{"kubernetes.io/config.seen": "2026-11-22T21:00:00Z", "kubernetes.io/config.source": "api"},
			Running:     true, NetworkReady: true, IPs: []string{"10.0.0.1"},
		})
	}
	f := &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "x"}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		items := s.listSandboxes(f)
		resp := &runtimeapi.ListPodSandboxResponse{Items: items}
		if _, err := proto.Marshal(resp); err != nil {
			b.Fatal(err)
		}
	}
}
