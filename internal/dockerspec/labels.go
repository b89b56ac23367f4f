package dockerspec

import (
	"encoding/json"
	"strings"
)

// Labels Berth puts on the Docker containers it creates. The first four are
// the ones dockershim and cri-dockerd use, so that containers created by
// them are recognised (adopted) and theirs by Berth.
const (
	LabelType          = "io.kubernetes.docker.type"
	TypeSandbox        = "podsandbox"
	TypeContainer      = "container"
	LabelSandboxID     = "io.kubernetes.sandbox.id"
	LabelLogPath       = "io.kubernetes.container.logpath"
	LabelContainerName = "io.kubernetes.container.name"
	// AnnotationPrefix marks a label that holds a CRI annotation.
	AnnotationPrefix = "annotation."

	// LabelSandboxMeta and LabelContainerMeta hold Berth's exact record of
	// the CRI metadata, labels and annotations as JSON: Docker labels are
	// immutable and shared with CRI labels, so this is what makes them
	// round-trip exactly.
	LabelSandboxMeta   = "io.berth.v1.sandbox"
	LabelContainerMeta = "io.berth.v1.container"
	// LabelRoot is the --root-dir of the Berth that created the container:
	// a Berth cleans up automatically only what it created itself.
	LabelRoot = "io.berth.root"
	// LabelRestore names the Docker checkpoint (CRIU images) a container
	// made by RestorePod starts from.
	LabelRestore = "io.berth.v1.restore"

	// PodInfraContainerName is the container name of the pause container.
	PodInfraContainerName = "POD"
)

// internalLabels are never reported as CRI labels.
var internalLabels = map[string]bool{
	LabelType: true, LabelSandboxID: true, LabelLogPath: true,
	LabelSandboxMeta: true, LabelContainerMeta: true, LabelRoot: true, LabelRestore: true,
}

// dockerLabels merges CRI labels and annotations into Docker labels as
// dockershim did (annotations under "annotation."), then adds extra.
func dockerLabels(labels, annotations, extra map[string]string) map[string]string {
	out := make(map[string]string, len(labels)+len(annotations)+len(extra))
	for k, v := range labels {
		out[k] = v
	}
	for k, v := range annotations {
		out[AnnotationPrefix+k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// splitLabels recovers CRI labels and annotations from Docker labels of a
// container Berth did not create (dockershim's scheme).
func splitLabels(docker map[string]string) (labels, annotations map[string]string) {
	labels, annotations = map[string]string{}, map[string]string{}
	for k, v := range docker {
		switch {
		case internalLabels[k]:
		case strings.HasPrefix(k, AnnotationPrefix):
			annotations[strings.TrimPrefix(k, AnnotationPrefix)] = v
		default:
			labels[k] = v
		}
	}
	return labels, annotations
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps of strings and plain structs are marshalled here.
		panic(err)
	}
	return string(b)
}
