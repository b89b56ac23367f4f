//go:build !berth_testhooks

package panics

// testHooksBuilt is false: this build reads no BERTH_TEST_PANIC (testhook.go).
const testHooksBuilt = false
