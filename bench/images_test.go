// Package bench holds Berth's benchmarks. Each measures a CRI call through
// k8s.io/cri-client (kubelet's client) against the Docker API call that does
// the same work, interleaved in one run, and reports both and their ratio.
package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/test/framework"
)

// imageCount is how many images the image benchmarks create.
const imageCount = 200

// BenchmarkImages measures ListImages and ImageStatus with 200 images in
// Docker (plus whatever else is there), against Docker's image list and
// image inspect.
//
//	go test -run '^$' -bench Images -benchtime 3s ./bench/
func BenchmarkImages(b *testing.B) {
	ctx := context.Background()
	if _, err := framework.RequireDocker(ctx); err != nil {
		b.Fatal(err)
	}
	repo := framework.UniqueName("berth-bench/img")
	start := time.Now()
	for i := range imageCount {
		// Tiny distinct images; each is removed when the benchmark ends.
		framework.BuildImage(b, "", fmt.Sprintf("%s:%03d", repo, i), framework.ImageOptions{Size: 64, User: "1000"})
	}
	b.Logf("created %d images in %v", imageCount, time.Since(start).Round(time.Millisecond))

	berth := framework.StartBerth(b, framework.Options{Args: []string{"--log-level", "info"}})
	dc, err := client.New(client.WithHost(framework.DockerHost()), client.WithAPIVersionNegotiation())
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()

	listed, err := berth.Images.ListImages(ctx, nil) // warms Berth's cache of image users
	if err != nil {
		b.Fatal(err)
	}
	if len(listed) < imageCount {
		b.Fatalf("ListImages returned %d images, want at least %d", len(listed), imageCount)
	}

	b.Run("ListImages", func(b *testing.B) {
		compare(b, func() error {
			_, err := berth.Images.ListImages(ctx, nil)
			return err
		}, func() error {
			_, err := dc.ImageList(ctx, client.ImageListOptions{})
			return err
		})
		b.ReportMetric(float64(len(listed)), "images")
	})

	ref := fmt.Sprintf("%s:%03d", repo, imageCount/2)
	b.Run("ImageStatus", func(b *testing.B) {
		compare(b, func() error {
			_, err := berth.Images.ImageStatus(ctx, runtimeImageSpec(ref), false)
			return err
		}, func() error {
			_, err := dc.ImageInspect(ctx, ref)
			return err
		})
	})
}

// compare runs berthCall and dockerCall alternately b.N times and reports
// the mean latency of each and their ratio.
func compare(b *testing.B, berthCall, dockerCall func() error) {
	b.Helper()
	var berthTime, dockerTime time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := berthCall(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := dockerCall(); err != nil {
			b.Fatal(err)
		}
		berthTime += t1.Sub(t0)
		dockerTime += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(berthTime.Nanoseconds())/n, "berth-ns/op")
	b.ReportMetric(float64(dockerTime.Nanoseconds())/n, "docker-ns/op")
	b.ReportMetric(float64(berthTime)/float64(dockerTime), "berth/docker")
}
