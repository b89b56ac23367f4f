package panics

import (
	"bytes"
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logging"
	"github.com/berth-cri/berth/internal/metrics"
)

func logCtx(buf *bytes.Buffer) context.Context {
	return logging.WithLogger(context.Background(), slog.New(slog.NewTextHandler(buf, nil)))
}

func TestCallTurnsAPanicIntoAnInternalError(t *testing.T) {
	var buf bytes.Buffer
	before := testutil.ToFloat64(metrics.Panics.WithLabelValues("test_call"))
	err := Call(logCtx(&buf), "test_call", func() error { panic("boom") })
	if !errors.Is(err, errdefs.ErrInternal) || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "test_call") {
		t.Errorf("err = %v, want an internal error naming the panic and where", err)
	}
	if !strings.Contains(buf.String(), "recovered from a panic") || !strings.Contains(buf.String(), "panics_test.go") {
		t.Errorf("the panic is not logged with its stack:\n%s", buf.String())
	}
	if n := testutil.ToFloat64(metrics.Panics.WithLabelValues("test_call")) - before; n != 1 {
		t.Errorf("berth_panics_total{where=test_call} rose by %v, want 1", n)
	}
	if err := Call(context.Background(), "test_call", func() error { return errdefs.ErrNotFound }); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("fn's own error = %v, want it returned as it is", err)
	}
}

func TestGoThenReportsAPanicToTheWaiter(t *testing.T) {
	ctx := logCtx(&bytes.Buffer{})
	done := make(chan error, 1)
	GoThen(ctx, "test_gothen", func() error { panic("boom") }, func(err error) { done <- err })
	if err := <-done; !errors.Is(err, errdefs.ErrInternal) {
		t.Errorf("done got %v, want an internal error", err)
	}
	// A panic in done itself ends only that goroutine.
	ended := make(chan struct{})
	GoThen(ctx, "test_gothen", func() error { return nil }, func(error) { defer close(ended); panic("in done") })
	<-ended
}

func TestGoSurvivesAPanic(t *testing.T) {
	before := testutil.ToFloat64(metrics.Panics.WithLabelValues("test_go"))
	Go(logCtx(&bytes.Buffer{}), "test_go", func() { panic(errors.New("boom")) })
	for testutil.ToFloat64(metrics.Panics.WithLabelValues("test_go"))-before != 1 {
		time.Sleep(time.Millisecond)
	}
}

func TestARaisedErrorIsNotCountedTwice(t *testing.T) {
	var buf bytes.Buffer
	ctx := logCtx(&buf)
	first := Call(ctx, "test_worker", func() error { panic("boom") })
	before := testutil.ToFloat64(metrics.Panics.WithLabelValues("test_rpc"))
	err := Call(ctx, "test_rpc", func() error { panic(first) })
	if err != first {
		t.Errorf("raised again: %v, want the worker's error", err)
	}
	if n := testutil.ToFloat64(metrics.Panics.WithLabelValues("test_rpc")) - before; n != 0 {
		t.Errorf("counted again under the waiter: %v", n)
	}
	if c := strings.Count(buf.String(), "recovered from a panic"); c != 1 {
		t.Errorf("logged %d times, want once:\n%s", c, buf.String())
	}
}

func TestHookInjectsAPanic(t *testing.T) {
	restore := SetHook(func(where string) {
		if where == "test_hooked" {
			panic("injected")
		}
	})
	defer restore()
	ran := false
	err := Call(logCtx(&bytes.Buffer{}), "test_hooked", func() error { ran = true; return nil })
	if ran || !errors.Is(err, errdefs.ErrInternal) {
		t.Errorf("ran=%v err=%v, want the hook's panic before fn", ran, err)
	}
	if err := Call(context.Background(), "other", func() error { return nil }); err != nil {
		t.Errorf("another kind: %v", err)
	}
	restore()
	if err := Call(context.Background(), "test_hooked", func() error { return nil }); err != nil {
		t.Errorf("after restore: %v", err)
	}
}

// TestEveryGoroutineStartsHere keeps the promise of the package doc: no
// go statement, WaitGroup.Go or timer callback in Berth's code (outside
// this package and tests) escapes the recovery.
func TestEveryGoroutineStartsHere(t *testing.T) {
	root := filepath.Join("..", "..")
	var bad []string
	for _, dir := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || filepath.Dir(path) == "." {
				return nil
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			if f.Name.Name == "panics" {
				return nil
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.GoStmt:
					bad = append(bad, fset.Position(n.Pos()).String()+": go statement (use panics.Go or panics.GoThen)")
				case *ast.CallExpr:
					sel, ok := n.Fun.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					pkg, _ := sel.X.(*ast.Ident)
					switch {
					case sel.Sel.Name == "Go" && (pkg == nil || pkg.Name != "panics"):
						bad = append(bad, fset.Position(n.Pos()).String()+": .Go (use panics.Go or panics.GoThen)")
					case sel.Sel.Name == "AfterFunc" && pkg != nil && (pkg.Name == "time" || pkg.Name == "context"):
						if lit, ok := n.Args[len(n.Args)-1].(*ast.FuncLit); ok && !defersRecover(lit) {
							bad = append(bad, fset.Position(n.Pos()).String()+": AfterFunc callback without defer panics.Recover")
						}
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range bad {
		t.Error(b)
	}
}

// defersRecover reports whether a function literal starts with
// defer panics.Recover(...).
func defersRecover(lit *ast.FuncLit) bool {
	if len(lit.Body.List) == 0 {
		return false
	}
	d, ok := lit.Body.List[0].(*ast.DeferStmt)
	if !ok {
		return false
	}
	sel, ok := d.Call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "panics" && sel.Sel.Name == "Recover"
}

// TestBERTH_TEST_PANICNeedsTheTestBuild runs this test binary again with
// BERTH_TEST_PANIC set: only a berth_testhooks build may panic on it.
func TestBERTH_TEST_PANICNeedsTheTestBuild(t *testing.T) {
	if os.Getenv("BERTH_TEST_PANIC") != "" {
		// The child: report whether the injection fired.
		if err := Call(context.Background(), RPC, func() error { return nil }); err != nil {
			os.Exit(3)
		}
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBERTH_TEST_PANICNeedsTheTestBuild$")
	cmd.Env = append(os.Environ(), "BERTH_TEST_PANIC="+RPC)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	fired := errors.As(err, &exit) && exit.ExitCode() == 3
	if err != nil && !fired {
		t.Fatalf("the child: %v\n%s", err, out)
	}
	if fired != testHooksBuilt {
		t.Errorf("BERTH_TEST_PANIC fired: %v; built with berth_testhooks: %v", fired, testHooksBuilt)
	}
}
