package ociruntime

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"

	"github.com/berth-cri/berth/internal/idmap"
)

// features prints runc's features (`runc features`, which Docker reports
// per runtime in its info) with two annotations of the wrapper's: that
// this runtime is Berth's wrapper, and whether this kernel can id-map a
// container's root filesystem. Berth offers user namespaces only on a
// runtime that says both.
func (w *wrapper) features() int {
	cmd := exec.Command(w.runc, w.args...)
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	out, err := cmd.Output()
	if err != nil {
		_, _ = os.Stdout.Write(out)
		return w.fail(err)
	}
	_, _ = os.Stdout.Write(addFeatures(out, probe()))
	return 0
}

// addFeatures adds the wrapper's annotations to runc's features JSON; JSON
// it cannot read passes through as it is (Berth then sees no wrapper).
func addFeatures(runcFeatures []byte, probeErr error) []byte {
	dec := json.NewDecoder(bytes.NewReader(runcFeatures))
	dec.UseNumber()
	var f map[string]any
	if dec.Decode(&f) != nil || f == nil {
		return runcFeatures
	}
	ann, _ := f["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		f["annotations"] = ann
	}
	ann[idmap.FeatureWrapper] = idmap.WrapperVersion
	if probeErr != nil {
		ann[idmap.FeatureIDMappedRootfs] = "false: " + probeErr.Error()
	} else {
		ann[idmap.FeatureIDMappedRootfs] = "true"
	}
	out, err := json.Marshal(f)
	if err != nil {
		return runcFeatures
	}
	return append(out, '\n')
}
