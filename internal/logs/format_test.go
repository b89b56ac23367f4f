package logs

import (
	"encoding/json"
	"testing"
)

func TestAppendCRI(t *testing.T) {
	const ts = "2016-10-06T00:17:09.669794202Z"
	for _, tc := range []struct {
		name              string
		log, stream, time string
		want              string
	}{
		{"full line", "hello\n", "stdout", ts, ts + " stdout F hello\n"},
		{"stderr", "oops\n", "stderr", ts, ts + " stderr F oops\n"},
		{"partial (long line split by Docker)", "abc", "stdout", ts, ts + " stdout P abc\n"},
		{"tty keeps carriage return", "prompt$ ls\r\n", "stdout", ts, ts + " stdout F prompt$ ls\r\n"},
		{"empty line", "\n", "stdout", ts, ts + " stdout F \n"},
		{"empty log renders nothing", "", "stdout", ts, ""},
		{"spaces and tabs kept", "  a\tb  \n", "stdout", ts, ts + " stdout F   a\tb  \n"},
		{"newline inside an entry splits it", "a\nb\nc", "stdout", ts,
			ts + " stdout F a\n" + ts + " stdout F b\n" + ts + " stdout P c\n"},
		{"unknown stream is stdout", "x\n", "", ts, ts + " stdout F x\n"},
		{"non-ASCII kept", "héllo ✓\n", "stdout", ts, ts + " stdout F héllo ✓\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := entry{Log: []byte(tc.log), Stream: []byte(tc.stream), Time: []byte(tc.time)}
			got := string(appendCRI([]byte("prefix:"), &e))
			if got != "prefix:"+tc.want {
				t.Errorf("appendCRI = %q, want %q", got, "prefix:"+tc.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name              string
		line              string
		log, stream, time string
		bad               bool
	}{
		{name: "docker's shape", line: `{"log":"hi\n","stream":"stdout","time":"2026-01-02T03:04:05.000000001Z"}`,
			log: "hi\n", stream: "stdout", time: "2026-01-02T03:04:05.000000001Z"},
		{name: "escapes", line: `{"log":"a\u003cb\u003e\t\"q\" \\ \/ \b\f\r\u00e9\u2713 é\n","stream":"stderr","time":"2026-01-02T03:04:05Z"}`,
			log: "a<b>\t\"q\" \\ / \b\f\ré✓ é\n", stream: "stderr", time: "2026-01-02T03:04:05Z"},
		{name: "surrogate pair", line: `{"log":"\ud83d\ude00\n","stream":"stdout","time":"2026-01-02T03:04:05Z"}`,
			log: "😀\n", stream: "stdout", time: "2026-01-02T03:04:05Z"},
		{name: "with attrs", line: `{"log":"x\n","stream":"stderr","attrs":{"tag":"x","n":"{\"}"},"time":"2026-01-02T03:04:05Z"}`,
			log: "x\n", stream: "stderr", time: "2026-01-02T03:04:05Z"},
		{name: "field order does not matter", line: `{"time":"2026-01-02T03:04:05Z","stream":"stdout","log":"x"}`,
			log: "x", stream: "stdout", time: "2026-01-02T03:04:05Z"},
		{name: "timestamp with offset kept", line: `{"log":"x","stream":"stdout","time":"2016-10-06T02:17:09.5+02:00"}`,
			log: "x", stream: "stdout", time: "2016-10-06T02:17:09.5+02:00"},
		{name: "bad timestamp replaced", line: `{"log":"x","stream":"stdout","time":"yesterday"}`,
			log: "x", stream: "stdout", time: zeroTime},
		{name: "out of range timestamp replaced", line: `{"log":"x","stream":"stdout","time":"2026-02-30T03:04:05.1Z"}`,
			log: "x", stream: "stdout", time: zeroTime},
		{name: "timestamp with a space replaced", line: `{"log":"x","stream":"stdout","time":"2016-10-06 00:17:09Z"}`,
			log: "x", stream: "stdout", time: zeroTime},
		{name: "truncated", line: `{"log":"hi\n","stream":"std`, bad: true},
		{name: "two entries glued by a crash", line: `{"log":"par{"log":"x\n","stream":"stdout","time":"2026-01-02T03:04:05Z"}`, bad: true},
		{name: "no time", line: `{"log":"hi\n","stream":"stdout"}`, bad: true},
		{name: "raw control byte", line: "{\"log\":\"a\x01\",\"stream\":\"stdout\",\"time\":\"2026-01-02T03:04:05Z\"}", bad: true},
		{name: "empty", line: ``, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d decoder
			var e entry
			err := d.decode([]byte(tc.line), &e)
			if (err != nil) != tc.bad {
				t.Fatalf("decode error = %v, want bad=%v", err, tc.bad)
			}
			if !tc.bad && (string(e.Log) != tc.log || string(e.Stream) != tc.stream || string(e.Time) != tc.time) {
				t.Errorf("decode = %q %q %q, want %q %q %q", e.Log, e.Stream, e.Time, tc.log, tc.stream, tc.time)
			}
		})
	}
}

// FuzzDecode checks the fast path against encoding/json: whatever it
// accepts, encoding/json decodes to the same entry.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"log":"hi\n","stream":"stdout","time":"2026-01-02T03:04:05.000000001Z"}`,
		`{"log":"a\u003cb\u003e\t\"q\" \\ \/ é\n","stream":"stderr","time":"2026-01-02T03:04:05Z"}`,
		`{"log":"\ud83d\ude00","stream":"stdout","time":"2026-01-02T03:04:05Z"}`,
		`{"log":"\u0000\u001f\u007f","stream":"x","time":"t"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var d decoder
		var e entry
		if !d.fast(line, &e) {
			return
		}
		var j struct {
			Log    string `json:"log"`
			Stream string `json:"stream"`
			Time   string `json:"time"`
		}
		if err := json.Unmarshal(line, &j); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json: %v", line, err)
		}
		if string(e.Log) != j.Log || string(e.Stream) != j.Stream || string(e.Time) != j.Time {
			t.Fatalf("fast path %q %q %q, encoding/json %q %q %q", e.Log, e.Stream, e.Time, j.Log, j.Stream, j.Time)
		}
	})
}
