package kubelet

import (
	"math"
	"testing"
)

func TestHistogramQuantile(t *testing.T) {
	// 10 observations: 4 in (0, 1], 4 in (1, 2], 2 in (2, 5].
	h := histogram{bounds: []float64{1, 2, 5, math.Inf(1)}, counts: []uint64{4, 8, 10, 10}, count: 10}
	for _, tc := range []struct{ q, want float64 }{
		{0.2, 0.5},  // rank 2 of the first bucket's 4
		{0.5, 1.25}, // rank 5: the first of the second bucket's 4
		{0.9, 3.5},  // rank 9: half-way through the third
		{1, 5},
	} {
		if got := h.quantile(tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	var sum histogram
	sum.add(h)
	sum.add(h)
	if sum.count != 20 || sum.counts[1] != 16 || sum.quantile(0.5) != h.quantile(0.5) {
		t.Errorf("two histograms added: %+v", sum)
	}
}
