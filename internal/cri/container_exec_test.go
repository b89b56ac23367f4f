package cri

import (
	"bytes"
	"testing"
)

func TestCappedBuffers(t *testing.T) {
	budget := &outputBudget{left: 10}
	out := &cappedBuffer{max: 6, budget: budget}
	errOut := &cappedBuffer{max: 6, budget: budget}
	write := func(w *cappedBuffer, s string) {
		t.Helper()
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v: a capped buffer must accept everything", s, n, err)
		}
	}
	write(out, "abcd")
	write(errOut, "1234")
	write(out, "efgh") // 2 more fit the stream's cap, the budget has 2 left
	write(errOut, "5678")
	if !bytes.Equal(out.Bytes(), []byte("abcdef")) || !bytes.Equal(errOut.Bytes(), []byte("1234")) {
		t.Fatalf("kept %q and %q", out.Bytes(), errOut.Bytes())
	}
	if out.dropped != 2 || errOut.dropped != 4 {
		t.Fatalf("dropped %d and %d", out.dropped, errOut.dropped)
	}
}
