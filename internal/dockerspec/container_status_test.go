package dockerspec

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// TestContainerStatusImage: kubelet creates containers by image id and
// shows the status's image as the pod's containerStatuses[].image, so a
// container created by id reports the image the user asked for.
func TestContainerStatusImage(t *testing.T) {
	const id = "sha256:b862b5644b0dd5d1823126cea6ad2444b9e0509f2dfc4b6eb20e88c551de0fec"
	for _, tc := range []struct {
		name      string
		spec      *runtimeapi.ImageSpec
		wantImage string
	}{
		{"kubelet: by id, user image", &runtimeapi.ImageSpec{Image: id, UserSpecifiedImage: "registry.k8s.io/e2e-test-images/busybox:1.37.0-2",
			Annotations: map[string]string{"a": "b"}, RuntimeHandler: "test-handler"}, "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"},
		{"by id without the user's image", &runtimeapi.ImageSpec{Image: id}, id},
		{"by bare hex id", &runtimeapi.ImageSpec{Image: id[len("sha256:"):], UserSpecifiedImage: "busybox"}, "busybox"},
		{"by name: kept", &runtimeapi.ImageSpec{Image: "berth-test/busybox:latest", UserSpecifiedImage: "busybox"}, "berth-test/busybox:latest"},
		{"no image spec", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &store.Container{ID: "c1", Image: tc.spec, ImageID: id}
			st := ContainerStatusToCRI(c)
			if got := st.GetImage().GetImage(); got != tc.wantImage {
				t.Errorf("status image %q, want %q", got, tc.wantImage)
			}
			if st.GetImage().GetUserSpecifiedImage() != tc.spec.GetUserSpecifiedImage() ||
				st.GetImage().GetRuntimeHandler() != tc.spec.GetRuntimeHandler() ||
				len(st.GetImage().GetAnnotations()) != len(tc.spec.GetAnnotations()) {
				t.Errorf("status image spec %v, want the rest of %v", st.GetImage(), tc.spec)
			}
			if st.ImageRef != id || st.ImageId != id {
				t.Errorf("image ref %q id %q, want %q", st.ImageRef, st.ImageId, id)
			}
			// ListContainers keeps the spec kubelet gave, as containerd's does.
			if got := ContainerToCRI(c).GetImage(); got != tc.spec {
				t.Errorf("list image %v, want %v", got, tc.spec)
			}
		})
	}
}
