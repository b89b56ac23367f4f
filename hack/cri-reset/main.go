// Command cri-reset stops and removes every pod sandbox (and so every
// container) on a CRI endpoint, the way kubelet would, so that the runtime
// tears down their networks (CNI DEL) too:
//
//	go run ./hack/cri-reset unix:///run/berth-containerd/containerd.sock
//
// hack/setup-containerd.sh stop runs it before stopping containerd.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: cri-reset ENDPOINT")
		os.Exit(2)
	}
	if err := reset(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "cri-reset:", err)
		os.Exit(1)
	}
}

func reset(endpoint string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rt, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(endpoint).
		WithConnectionTimeout(time.Minute).WithTracerProvider(nil).Build(ctx)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{})
	if err != nil {
		return err
	}
	var failed int
	for _, p := range pods {
		if err := rt.StopPodSandbox(ctx, p.Id); err != nil {
			fmt.Fprintf(os.Stderr, "cri-reset: stopping pod %s (%s): %v\n", p.Id, p.GetMetadata().GetName(), err)
			failed++
			continue
		}
		if err := rt.RemovePodSandbox(ctx, p.Id); err != nil {
			fmt.Fprintf(os.Stderr, "cri-reset: removing pod %s (%s): %v\n", p.Id, p.GetMetadata().GetName(), err)
			failed++
		}
	}
	fmt.Fprintf(os.Stderr, "cri-reset: removed %d of %d pods at %s\n", len(pods)-failed, len(pods), endpoint)
	if failed > 0 {
		return fmt.Errorf("%d pods left", failed)
	}
	return nil
}
