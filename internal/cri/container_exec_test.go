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

func TestCappedBufferManyChunks(t *testing.T) {
	data := make([]byte, 5<<19)
	for i := range data {
		data[i] = byte(i * 7)
	}
	c := &cappedBuffer{max: 2 << 20, budget: &outputBudget{left: 3 << 20}}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 100<<10+3)
		if _, err := c.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if got := c.Bytes(); !bytes.Equal(got, data[:2<<20]) {
		t.Fatalf("kept %d bytes, not the first 2 MiB written", len(got))
	}
	if c.dropped != int64(len(data)-2<<20) || len(c.chunks) < 3 {
		t.Fatalf("dropped %d in %d chunks", c.dropped, len(c.chunks))
	}
}
