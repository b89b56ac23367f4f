//go:build berth_testhooks

package panics

import (
	"os"
	"strings"
	"sync"
)

// In a binary built with -tags berth_testhooks (only the e2e suite builds
// one, test/framework), BERTH_TEST_PANIC=where[,where...] makes the first
// Call of each named kind panic, so the suite can show a real berth serve
// surviving a panic in each kind of goroutine. A binary built without the
// tag (make build, the Debian package) has no code reading the variable:
// no environment can make it panic on purpose.
const testHooksBuilt = true

func init() {
	v := os.Getenv("BERTH_TEST_PANIC")
	if v == "" {
		return
	}
	var mu sync.Mutex // guards pending
	pending := map[string]bool{}
	for _, w := range strings.Split(v, ",") {
		pending[strings.TrimSpace(w)] = true
	}
	SetHook(func(where string) {
		mu.Lock()
		hit := pending[where]
		delete(pending, where)
		mu.Unlock()
		if hit {
			panic("injected by BERTH_TEST_PANIC=" + where)
		}
	})
}
