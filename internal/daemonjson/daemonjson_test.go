package daemonjson

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const operator = `{
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m"},
  "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}},
  "x-unknown-key": [1, 2, {"a": null}]
}`

func decode(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("result is not JSON: %v\n%s", err, data)
	}
	return m
}

func TestRegisterKeepsTheOperatorsSettingsAndUnregisterRestoresThem(t *testing.T) {
	rt := Wrapper("/usr/bin/berth", "/usr/bin/runc")
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"no runtimes", `{"debug": true}`},
		{"other runtimes and unknown keys", operator},
		{"null runtimes", `{"runtimes": null, "debug": false}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := Register([]byte(tc.in), rt)
			if err != nil || !changed {
				t.Fatalf("Register = %v, %v", changed, err)
			}
			got := decode(t, out)
			want := map[string]any{"path": "/usr/bin/berth", "runtimeArgs": []any{"oci-runtime", "--runc", "/usr/bin/runc"}}
			if r := got["runtimes"].(map[string]any)["berth-userns"]; !reflect.DeepEqual(r, want) {
				t.Errorf("berth-userns = %v, want %v", r, want)
			}
			again, changed, err := Register(out, rt)
			if err != nil || changed || string(again) != string(out) {
				t.Errorf("Register again changed the file: %v, %v", changed, err)
			}
			back, changed, err := Unregister(out)
			if err != nil || !changed {
				t.Fatalf("Unregister = %v, %v", changed, err)
			}
			if strings.TrimSpace(tc.in) == "" {
				tc.in = "{}"
			}
			orig := decode(t, []byte(tc.in))
			if orig["runtimes"] == nil {
				orig["runtimes"] = map[string]any{} // kept for dockerd's reload
			}
			if g := decode(t, back); !reflect.DeepEqual(g, orig) {
				t.Errorf("after Unregister = %v, want the original %v", g, orig)
			}
		})
	}
}

func TestRegisterKeepsTheKeysOrder(t *testing.T) {
	out, _, err := Register([]byte(operator), Wrapper("/usr/bin/berth", ""))
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	order := []string{`"log-driver"`, `"log-opts"`, `"runtimes"`, `"nvidia"`, `"berth-userns"`, `"x-unknown-key"`}
	last := -1
	for _, k := range order {
		i := strings.Index(s, k)
		if i < last {
			t.Fatalf("%s moved:\n%s", k, s)
		}
		last = i
	}
}

func TestInvalidDaemonJSONIsRefusedAndLeftAlone(t *testing.T) {
	for _, in := range []string{`{"debug": true,}`, `[1]`, `{"runtimes": "runc"}`, `{} {}`, `{"a": 1`} {
		if _, _, err := Register([]byte(in), Wrapper("b", "")); !errors.Is(err, ErrInvalid) {
			t.Errorf("Register(%s) = %v, want ErrInvalid", in, err)
		}
		if _, _, err := Unregister([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("Unregister(%s) = %v, want ErrInvalid", in, err)
		}
		path := filepath.Join(t.TempDir(), "daemon.json")
		if err := os.WriteFile(path, []byte(in), 0o640); err != nil {
			t.Fatal(err)
		}
		if _, err := Edit(path, func(b []byte) ([]byte, bool, error) { return Register(b, Wrapper("b", "")) }); err == nil || !strings.Contains(err.Error(), "left unchanged") {
			t.Errorf("Edit = %v, want a refusal", err)
		}
		if b, _ := os.ReadFile(path); string(b) != in {
			t.Errorf("the file changed to %q", b)
		}
	}
}

func TestEditCreatesAMissingFileAndKeepsTheMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "daemon.json")
	reg := func(b []byte) ([]byte, bool, error) { return Register(b, Wrapper("/usr/bin/berth", "")) }
	if out, changed, err := Unregister(nil); err != nil || changed || len(out) != 0 {
		t.Fatalf("Unregister(nil) = %q, %v, %v", out, changed, err)
	}
	if changed, err := Edit(path, Unregister); err != nil || changed {
		t.Fatalf("Edit(missing, Unregister) = %v, %v", changed, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("Unregister created the file")
	}
	if changed, err := Edit(path, reg); err != nil || !changed {
		t.Fatalf("Edit(missing, Register) = %v, %v", changed, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v, want 0644", fi.Mode().Perm())
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Edit(path, Unregister); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after edit %v, want 0600 kept", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); strings.Join(strings.Fields(string(b)), "") != `{"runtimes":{}}` {
		t.Errorf("after Unregister: %s", b)
	}
}
