// Package bench measures Berth against the same work done directly on the
// Docker API (and libcni), in one run, so the ratio is not skewed by the
// machine's load. Run with `make bench`; the figures go to
// docs/performance.md.
package bench

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/berth-cri/berth/test/framework"
)

func TestMain(m *testing.M) {
	if _, err := framework.RequireDocker(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAIL:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
