package bench

import runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

func runtimeImageSpec(ref string) *runtimeapi.ImageSpec {
	return &runtimeapi.ImageSpec{Image: ref}
}
