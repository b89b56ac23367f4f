package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Server is what Berth's gRPC server serves: runtime.v1's RuntimeService
// and ImageService, each RPC from the package whose job it is. The
// embedded fields say which: a method of an embedded interface is served
// by the value put there; every other RuntimeService method by Service.
//
// NOTE: Service must not have a method of an embedded interface as well:
// the selector would be ambiguous, and Server would stop implementing
// RuntimeServiceServer (the assertions below fail to compile). An RPC
// left out of the interfaces falls to Service's Unimplemented fallback;
// TestServerRoutesEveryRPC catches that for the unary RPCs.
type Server struct {
	// Service is the runtime: sandboxes, containers, exec, attach,
	// port-forward, container events, status and configuration.
	*Service
	// ImageService is internal/cri/images.Service.
	ImageService
	// StatsService is internal/cri/stats.Service.
	StatsService
	// CheckpointService is internal/cri/checkpoints.Service.
	CheckpointService
}

// ImageService is the CRI ImageService (internal/cri/images).
type ImageService = runtimeapi.ImageServiceServer

// StatsService is the stats and metrics RPCs of the RuntimeService
// (internal/cri/stats).
type StatsService interface {
	ContainerStats(context.Context, *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error)
	ListContainerStats(context.Context, *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error)
	StreamContainerStats(*runtimeapi.StreamContainerStatsRequest, runtimeapi.RuntimeService_StreamContainerStatsServer) error
	PodSandboxStats(context.Context, *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error)
	ListPodSandboxStats(context.Context, *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error)
	StreamPodSandboxStats(*runtimeapi.StreamPodSandboxStatsRequest, runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error
	ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error)
	ListPodSandboxMetrics(context.Context, *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error)
	StreamPodSandboxMetrics(*runtimeapi.StreamPodSandboxMetricsRequest, runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error
}

// CheckpointService is the checkpoint and restore RPCs of the
// RuntimeService (internal/cri/checkpoints).
type CheckpointService interface {
	CheckpointContainer(context.Context, *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error)
	CheckpointPod(context.Context, *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error)
	RestorePod(context.Context, *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error)
}

var (
	_ runtimeapi.RuntimeServiceServer = (*Server)(nil)
	_ runtimeapi.ImageServiceServer   = (*Server)(nil)
)
