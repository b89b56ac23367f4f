package ociruntime

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/idmap"
)

func TestAddFeatures(t *testing.T) {
	in := []byte(`{"ociVersionMax":"1.3.0","linux":{"mountExtensions":{"idmap":{"enabled":true}}},"annotations":{"org.opencontainers.runc.version":"1.5.2"}}`)
	var f struct {
		Linux       map[string]any    `json:"linux"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(addFeatures(in, nil), &f); err != nil {
		t.Fatal(err)
	}
	if f.Annotations[idmap.FeatureWrapper] != idmap.WrapperVersion || f.Annotations[idmap.FeatureIDMappedRootfs] != "true" ||
		f.Annotations["org.opencontainers.runc.version"] != "1.5.2" || f.Linux["mountExtensions"] == nil {
		t.Errorf("features = %+v", f)
	}
	if err := json.Unmarshal(addFeatures([]byte(`{}`), errors.New("no lowerdir+")), &f); err != nil {
		t.Fatal(err)
	}
	if got := f.Annotations[idmap.FeatureIDMappedRootfs]; !strings.HasPrefix(got, "false: no lowerdir+") {
		t.Errorf("failed probe = %q", got)
	}
	if got := addFeatures([]byte("not json"), nil); string(got) != "not json" {
		t.Errorf("unreadable features changed: %q", got)
	}
}
