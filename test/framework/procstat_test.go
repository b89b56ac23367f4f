package framework

import (
	"os"
	"os/exec"
	"testing"
)

func TestProcSetMembers(t *testing.T) {
	self := os.Getpid()
	procs := readProcs()
	if _, ok := procs[self]; !ok {
		t.Fatalf("readProcs has no entry for this process (%d)", self)
	}
	parent := ProcSet{Roots: []int{os.Getppid()}, Descendants: true}
	if !parent.members(procs)[self] {
		t.Error("a root's descendants do not include its child")
	}
	if (ProcSet{Roots: []int{os.Getppid()}}).members(procs)[self] {
		t.Error("a set without descendants includes a child")
	}
	byMark := ProcSet{Marks: []string{procs[self].cmdline}, Descendants: true}
	if !byMark.members(procs)[self] {
		t.Errorf("a set marked with this process's command line %q does not include it", procs[self].cmdline)
	}
	// A marked process's children are not the set's (a shim's containers).
	child := exec.Command("sleep", "10")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	if byMark.members(readProcs())[child.Process.Pid] {
		t.Error("a marked process's child is in the set")
	}
}

func TestMemoryOfThisProcess(t *testing.T) {
	m := ProcSet{Roots: []int{os.Getpid()}}.Memory()
	if m.Procs != 1 || m.RSSMiB <= 0 || m.PSSMiB <= 0 {
		t.Errorf("this process's memory: %+v", m)
	}
}
