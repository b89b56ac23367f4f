package torture

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-cri/berth/test/framework"
)

// failPluginName is the CNI plugin that fails ADD on demand. It is this
// test binary itself, linked under that name: run as a plugin (CNI_COMMAND
// set), TestMain hands over to cniPluginMain.
const failPluginName = "berth-torture-fail"

// failPlugin is an on-demand failing CNI plugin at the end of a network's
// chain: ADD fails (after the plugins before it allocated an address) while
// the flag file exists, and passes the previous result on otherwise.
type failPlugin struct {
	binDir string
	flag   string
}

func newFailPlugin(t *testing.T) *failPlugin {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &failPlugin{binDir: t.TempDir(), flag: filepath.Join(t.TempDir(), "fail")}
	if err := os.Symlink(self, filepath.Join(p.binDir, failPluginName)); err != nil {
		t.Fatal(err)
	}
	return p
}

// options are the CNI options of a network whose chain ends in the plugin.
func (p *failPlugin) options() framework.CNIOptions {
	return framework.CNIOptions{
		ExtraPlugins: []map[string]any{{"type": failPluginName, "failFlag": p.flag}},
		BinDirs:      []string{p.binDir, framework.CNIBinDir},
	}
}

// set makes ADD fail (or succeed).
func (p *failPlugin) set(fail bool) error {
	if fail {
		return os.WriteFile(p.flag, nil, 0o644)
	}
	err := os.Remove(p.flag)
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// isCNIPlugin reports whether this process was started as the plugin.
func isCNIPlugin() bool {
	return filepath.Base(os.Args[0]) == failPluginName && os.Getenv("CNI_COMMAND") != ""
}

// cniPluginMain is the plugin: the CNI protocol on stdin/stdout.
func cniPluginMain() int {
	fail := func(code int, msg string) int {
		_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"cniVersion": "1.0.0", "code": code, "msg": msg})
		return 1
	}
	switch os.Getenv("CNI_COMMAND") {
	case "VERSION":
		fmt.Println(`{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}`)
		return 0
	case "ADD":
	default: // DEL, CHECK, GC, STATUS: nothing of ours to undo or check
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	}
	var conf struct {
		CNIVersion string          `json:"cniVersion"`
		FailFlag   string          `json:"failFlag"`
		PrevResult json.RawMessage `json:"prevResult"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&conf); err != nil {
		return fail(6, "decoding the configuration: "+err.Error())
	}
	if _, err := os.Stat(conf.FailFlag); err == nil {
		return fail(999, "injected failure")
	}
	if len(conf.PrevResult) == 0 {
		return fail(7, "no prevResult: "+failPluginName+" must be chained after a plugin that sets up the network")
	}
	_, _ = os.Stdout.Write(conf.PrevResult)
	return 0
}
