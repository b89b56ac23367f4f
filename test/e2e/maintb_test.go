package e2e

import (
	"fmt"
	"os"
	"testing"
)

// mainTB is a testing.TB for TestMain, which has none: it runs cleanups
// when the suite ends and reports errors on stderr.
type mainTB struct {
	testing.TB
	cleanups []func()
	failed   bool
}

func (m *mainTB) Helper()          {}
func (m *mainTB) Cleanup(f func()) { m.cleanups = append(m.cleanups, f) }
func (m *mainTB) Failed() bool     { return m.failed }
func (m *mainTB) TempDir() string {
	d, _ := os.MkdirTemp("", "e2e-")
	m.Cleanup(func() { os.RemoveAll(d) })
	return d
}
func (m *mainTB) Errorf(f string, a ...any) {
	m.failed = true
	fmt.Fprintf(os.Stderr, "e2e: "+f+"\n", a...)
}
func (m *mainTB) Fatalf(f string, a ...any) { m.Errorf(f, a...); panic(fmt.Sprintf(f, a...)) }
func (m *mainTB) Fatal(a ...any)            { m.Fatalf("%s", fmt.Sprint(a...)) }
func (m *mainTB) Logf(f string, a ...any)   { fmt.Fprintf(os.Stderr, "e2e: "+f+"\n", a...) }

func (m *mainTB) cleanup() {
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		m.cleanups[i]()
	}
}
