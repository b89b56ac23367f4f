package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/berth-cri/berth/test/framework"
)

// dockerCall is how many requests of one operation Berth sent Docker, and
// how long they took in all (berth_docker_request_duration_seconds).
type dockerCall struct {
	n   uint64
	sum float64
}

// dockerCalls reads Berth's Docker request histogram from its metrics
// listener, by operation.
func dockerCalls(b *testing.B, br *framework.Berth) map[string]dockerCall {
	b.Helper()
	out := map[string]dockerCall{}
	for _, m := range berthMetrics(b, br)["berth_docker_request_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "operation" {
				out[l.GetValue()] = dockerCall{n: m.GetHistogram().GetSampleCount(), sum: m.GetHistogram().GetSampleSum()}
			}
		}
	}
	return out
}

// berthMetrics reads Berth's metrics listener.
func berthMetrics(b *testing.B, br *framework.Berth) map[string]*dto.MetricFamily {
	b.Helper()
	text, err := br.HTTPGet("/metrics")
	if err != nil {
		b.Fatalf("berth's metrics: %v", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		b.Fatalf("parsing berth's metrics: %v", err)
	}
	return fams
}

// logDockerCalls logs, per operation, the Docker requests Berth made
// between two snapshots, divided by the pods (or calls) in between: where
// a CRI call's time goes on the daemon's side.
func logDockerCalls(b *testing.B, what string, before, after map[string]dockerCall, per int) {
	b.Helper()
	var lines []string
	var total float64
	for _, op := range slices.Sorted(maps.Keys(after)) {
		n := after[op].n - before[op].n
		if n == 0 {
			continue
		}
		sum := after[op].sum - before[op].sum
		total += sum
		lines = append(lines, fmt.Sprintf("  %-40s %6.2f calls, mean %7.2f ms, %7.2f ms each %s", op,
			float64(n)/float64(per), 1000*sum/float64(n), 1000*sum/float64(per), what))
	}
	b.Logf("Docker API requests Berth made per %s (%d):\n%s\n  total %.2f ms per %s", what, per, strings.Join(lines, "\n"), 1000*total/float64(per), what)
}
