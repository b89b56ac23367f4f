package torture

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Row is one line of the suite's table: what a scenario did and found. A
// scenario counts every fault it injects, every operation that succeeded,
// every error it expected (a call cut off by a kill, a request refused as
// it must be) and every error it did not; then it searches for leaks. The
// test fails on any unexpected error or leak.
type Row struct {
	Name string
	t    *testing.T

	mu         sync.Mutex // guards everything below
	faults     int
	ops        int
	expected   int
	unexpected int
	leaks      int
	reported   int      // unexpected errors and leaks reported through t
	notes      []string // figures measured
}

var (
	rowsMu sync.Mutex // guards rows
	rows   []*Row
)

const maxMessages = 20

// newRow starts the row of t's scenario. Every unexpected error and leak
// it records fails t at once (the first maxMessages are also reported), so
// the berth's log is printed when the scenario ends.
func newRow(t *testing.T) *Row {
	t.Helper()
	r := &Row{Name: strings.TrimPrefix(t.Name(), "Test"), t: t}
	rowsMu.Lock()
	rows = append(rows, r)
	rowsMu.Unlock()
	return r
}

// fail fails the row's test with msg; the caller holds r.mu.
func (r *Row) fail(msg string) {
	r.reported++
	switch {
	case r.reported <= maxMessages:
		r.t.Error(msg)
	case r.reported == maxMessages+1:
		r.t.Error("more unexpected errors or leaks follow; the table counts them")
	default:
		r.t.Fail()
	}
}

// Fault counts n injected faults.
func (r *Row) Fault(n int) {
	r.mu.Lock()
	r.faults += n
	r.mu.Unlock()
}

// Op counts a successful operation.
func (r *Row) Op() {
	r.mu.Lock()
	r.ops++
	r.mu.Unlock()
}

// Expected counts an error the scenario caused on purpose.
func (r *Row) Expected() {
	r.mu.Lock()
	r.expected++
	r.mu.Unlock()
}

// Unexpected counts an error (or a wrong answer) that must not happen.
func (r *Row) Unexpected(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unexpected++
	r.fail("unexpected: " + fmt.Sprintf(format, args...))
}

// Leak counts something left behind.
func (r *Row) Leak(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leaks++
	r.fail("leak: " + fmt.Sprintf(format, args...))
}

// Leaks counts every item of a leak check's findings.
func (r *Row) Leaks(found []string) {
	for _, l := range found {
		r.Leak("%s", l)
	}
}

// Note records a measured figure for the table.
func (r *Row) Note(format string, args ...any) {
	r.mu.Lock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// Check counts an assertion: an operation when ok, else unexpected.
func (r *Row) Check(ok bool, format string, args ...any) bool {
	if ok {
		r.Op()
	} else {
		r.Unexpected(format, args...)
	}
	return ok
}

// Call counts the outcome of a CRI call: success is an operation, an error
// whose code is in expected is expected, anything else is unexpected.
func (r *Row) Call(what string, err error, expected ...codes.Code) error {
	if err == nil {
		r.Op()
		return nil
	}
	code := status.Code(err)
	for _, c := range expected {
		if code == c {
			r.Expected()
			return err
		}
	}
	r.Unexpected("%s: %v", what, err)
	return err
}

func (r *Row) counts() (faults, ops, expected, unexpected, leaks int, notes []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.faults, r.ops, r.expected, r.unexpected, r.leaks, append([]string(nil), r.notes...)
}

// printTable writes the table of every scenario that ran, and the totals.
// Every line starts with "torture:", so it survives hack/test-summary.sh.
func printTable(w io.Writer) {
	rowsMu.Lock()
	defer rowsMu.Unlock()
	if len(rows) == 0 {
		return
	}
	sorted := append([]*Row(nil), rows...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	fmt.Fprintf(w, "\ntorture: results at %s scale\n", scale.Name)
	var buf strings.Builder
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tFAULTS\tOPS\tERRORS EXPECTED\tERRORS UNEXPECTED\tLEAKS\tFIGURES")
	var tf, to, te, tu, tl int
	for _, r := range sorted {
		f, o, e, u, l, notes := r.counts()
		tf, to, te, tu, tl = tf+f, to+o, te+e, tu+u, tl+l
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", r.Name, f, o, e, u, l, strings.Join(notes, "; "))
	}
	fmt.Fprintf(tw, "TOTAL\t%d\t%d\t%d\t%d\t%d\t\n", tf, to, te, tu, tl)
	_ = tw.Flush()
	for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		fmt.Fprintln(w, "torture: "+strings.TrimRight(line, " "))
	}
}

// allClean reports whether no row has an unexpected error or a leak.
func allClean() bool {
	rowsMu.Lock()
	defer rowsMu.Unlock()
	for _, r := range rows {
		if _, _, _, u, l, _ := r.counts(); u > 0 || l > 0 {
			return false
		}
	}
	return true
}
