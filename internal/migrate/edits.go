package migrate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/berth-cri/berth/internal/kubeletcfg"
)

// BackupSuffix is appended to a file's name for the copy kept before the
// migration rewrites it.
const BackupSuffix = ".pre-berth"

// fileEdit is one kubelet file to rewrite.
type fileEdit struct {
	src      kubeletcfg.Source
	endpoint string
	// addTo is the variable (env files) that gets the flag when no line
	// sets the endpoint; "-" for a KubeletConfiguration that gets the field.
	addTo string
	drop  bool
}

func (e fileEdit) describe() string {
	var what []string
	if e.src.Endpoint != "" {
		what = append(what, fmt.Sprintf("%s → %s", e.src.Endpoint, e.endpoint))
	} else {
		what = append(what, "add "+e.endpoint)
	}
	if e.drop && len(e.src.DockershimFlags) > 0 {
		what = append(what, "remove dockershim-only flags --"+strings.Join(e.src.DockershimFlags, ", --"))
	}
	verb := "rewrite"
	if !e.src.Exists {
		verb = "create"
	}
	return fmt.Sprintf("%s %s (%s): %s, backup %s", verb, e.src.Path, e.src.Kind, strings.Join(what, ", "), e.src.Path+BackupSuffix)
}

// planEdits decides which files to rewrite: every file that sets the
// endpoint; every flags file with dockershim-only flags; and, if no file
// sets the endpoint, the KubeletConfiguration (or else kubeadm-flags.env).
func planEdits(s kubeletcfg.Settings, endpoint string, st *State) ([]fileEdit, error) {
	var edits []fileEdit
	sets := false
	for _, src := range s.Sources {
		if src.Endpoint != "" || len(src.DockershimFlags) > 0 {
			if src.Endpoint != "" {
				sets = true
			}
			if kubeletcfg.SameEndpoint(src.Endpoint, endpoint) && len(src.DockershimFlags) == 0 {
				continue
			}
			edits = append(edits, fileEdit{src: src, endpoint: endpoint, drop: true})
		}
	}
	if sets {
		return edits, nil
	}
	// Nothing names a runtime: kubelet runs on its default. Add the
	// endpoint where kubelet's own configuration lives.
	if cfg := s.Source(kubeletcfg.KindConfig); cfg != nil && cfg.Exists {
		return append(edits, fileEdit{src: *cfg, endpoint: endpoint, addTo: "-"}), nil
	}
	if kf := s.Source(kubeletcfg.KindKubeadmFlags); kf != nil && kf.Exists {
		for i := range edits {
			if edits[i].src.Path == kf.Path {
				// Already rewritten for its dockershim flags: add it there.
				edits[i].addTo = "KUBELET_KUBEADM_ARGS"
				return edits, nil
			}
		}
		return append(edits, fileEdit{src: *kf, endpoint: endpoint, addTo: "KUBELET_KUBEADM_ARGS"}), nil
	}
	// A resumed run may have already rewritten everything.
	if st != nil && len(st.Files) > 0 {
		return edits, nil
	}
	return nil, errors.New("found no kubelet configuration to point at Berth: pass --kubelet-config, --kubeadm-flags-file or --kubelet-defaults-file")
}

// apply backs the file up (once: a resumed run keeps the first backup),
// records the backup in the state (saved before the file changes, so a
// crash in between never loses the original) and rewrites the file.
func (e fileEdit) apply(st *State, save func() error) error {
	data, err := os.ReadFile(e.src.Path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var out []byte
	if e.src.Kind == kubeletcfg.KindConfig {
		out, _, err = kubeletcfg.RewriteConfig(data, e.endpoint)
	} else {
		out, _, err = kubeletcfg.RewriteEnvFile(data, kubeletcfg.EnvEdit{Endpoint: e.endpoint, DropDockershim: e.drop, AddTo: e.addTo})
	}
	if err != nil {
		return fmt.Errorf("%s: %w", e.src.Path, err)
	}
	recorded := false
	for _, f := range st.Files {
		if f.Path == e.src.Path {
			recorded = true
		}
	}
	if !recorded {
		change := FileChange{Path: e.src.Path}
		if exists {
			change.Backup = e.src.Path + BackupSuffix
			if err := kubeletcfg.WriteFileAtomic(change.Backup, data); err != nil {
				return fmt.Errorf("backing up %s: %w", e.src.Path, err)
			}
		}
		st.Files = append(st.Files, change)
		if err := save(); err != nil {
			return err
		}
	}
	return kubeletcfg.WriteFileAtomic(e.src.Path, out)
}
