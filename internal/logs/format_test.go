package logs

import (
	"testing"
)

func TestAppendCRI(t *testing.T) {
	const ts = "2016-10-06T00:17:09.669794202Z"
	for _, tc := range []struct {
		name string
		e    entry
		want string
	}{
		{"full line", entry{Log: "hello\n", Stream: "stdout", Time: ts}, ts + " stdout F hello\n"},
		{"stderr", entry{Log: "oops\n", Stream: "stderr", Time: ts}, ts + " stderr F oops\n"},
		{"partial (long line split by Docker)", entry{Log: "abc", Stream: "stdout", Time: ts}, ts + " stdout P abc\n"},
		{"tty keeps carriage return", entry{Log: "prompt$ ls\r\n", Stream: "stdout", Time: ts}, ts + " stdout F prompt$ ls\r\n"},
		{"empty line", entry{Log: "\n", Stream: "stdout", Time: ts}, ts + " stdout F \n"},
		{"empty log renders nothing", entry{Log: "", Stream: "stdout", Time: ts}, ""},
		{"spaces and tabs kept", entry{Log: "  a\tb  \n", Stream: "stdout", Time: ts}, ts + " stdout F   a\tb  \n"},
		{"newline inside an entry splits it", entry{Log: "a\nb\nc", Stream: "stdout", Time: ts},
			ts + " stdout F a\n" + ts + " stdout F b\n" + ts + " stdout P c\n"},
		{"unknown stream is stdout", entry{Log: "x\n", Stream: "", Time: ts}, ts + " stdout F x\n"},
		{"timestamp with offset kept", entry{Log: "x\n", Stream: "stdout", Time: "2016-10-06T02:17:09.5+02:00"}, "2016-10-06T02:17:09.5+02:00 stdout F x\n"},
		{"bad timestamp replaced", entry{Log: "x\n", Stream: "stdout", Time: "yesterday"}, zeroTime + " stdout F x\n"},
		{"timestamp with a space replaced", entry{Log: "x\n", Stream: "stdout", Time: "2016-10-06 00:17:09Z"}, zeroTime + " stdout F x\n"},
		{"non-ASCII kept", entry{Log: "héllo ✓\n", Stream: "stdout", Time: ts}, ts + " stdout F héllo ✓\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(appendCRI([]byte("prefix:"), &tc.e))
			if got != "prefix:"+tc.want {
				t.Errorf("appendCRI = %q, want %q", got, "prefix:"+tc.want)
			}
		})
	}
}

func TestDecodeEntry(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want entry
		bad  bool
	}{
		{"docker's shape", `{"log":"hi\n","stream":"stdout","time":"2026-01-02T03:04:05.000000001Z"}`,
			entry{Log: "hi\n", Stream: "stdout", Time: "2026-01-02T03:04:05.000000001Z"}, false},
		{"with attrs", `{"log":"a\u003cb\u003e\t\"q\"\n","stream":"stderr","attrs":{"tag":"x","n":"{\"}"},"time":"2026-01-02T03:04:05Z"}`,
			entry{Log: "a<b>\t\"q\"\n", Stream: "stderr", Time: "2026-01-02T03:04:05Z"}, false},
		{"field order does not matter", `{"time":"2026-01-02T03:04:05Z","stream":"stdout","log":"x"}`,
			entry{Log: "x", Stream: "stdout", Time: "2026-01-02T03:04:05Z"}, false},
		{"truncated", `{"log":"hi\n","stream":"std`, entry{}, true},
		{"two entries glued by a crash", `{"log":"par{"log":"x\n","stream":"stdout","time":"2026-01-02T03:04:05Z"}`, entry{}, true},
		{"no time", `{"log":"hi\n","stream":"stdout"}`, entry{}, true},
		{"empty", ``, entry{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e entry
			err := decodeEntry([]byte(tc.line), &e)
			if (err != nil) != tc.bad {
				t.Fatalf("decodeEntry error = %v, want bad=%v", err, tc.bad)
			}
			if !tc.bad && e != tc.want {
				t.Errorf("decodeEntry = %+v, want %+v", e, tc.want)
			}
		})
	}
}
