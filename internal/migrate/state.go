package migrate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/berth-cri/berth/internal/kubeletcfg"
)

// stateVersion is the version of the state file's format.
const stateVersion = 1

// State is what a migration has done so far, kept on disk after every step
// so an interrupted run resumes where it stopped and --rollback knows what
// to undo.
type State struct {
	Version int    `json:"version"`
	Node    string `json:"node"`
	// From is the runtime endpoint kubelet used before the migration; To is
	// the one it was moved to (Berth's).
	From string `json:"from"`
	To   string `json:"to"`
	// WasUnschedulable records whether the node was cordoned before the
	// migration, so it is not uncordoned afterwards.
	WasUnschedulable bool `json:"wasUnschedulable"`
	// Files are the files rewritten, with their backups.
	Files []FileChange `json:"files,omitempty"`
	// Annotation is the node's kubeadm cri-socket annotation before the
	// migration; nil when the node had none (then it was left alone).
	Annotation *string `json:"annotation,omitempty"`
	// Migrated lists the migration steps done; Completed is set at the end.
	Migrated  []string `json:"migrated"`
	Completed bool     `json:"completed"`
	// RolledBack lists the rollback steps done.
	RolledBack []string `json:"rolledBack,omitempty"`
	// RestartedAt is when kubelet was last restarted by this tool.
	RestartedAt time.Time `json:"restartedAt"`
}

// FileChange is one rewritten file.
type FileChange struct {
	Path string `json:"path"`
	// Backup holds the file as it was; empty when the file was created.
	Backup string `json:"backup,omitempty"`
}

func (s *State) done(list []string, step string) bool { return slices.Contains(list, step) }

// loadState reads the state file; a missing file is a nil state.
func loadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("state file %s has version %d; this berth understands %d", path, s.Version, stateVersion)
	}
	return &s, nil
}

func saveState(path string, s *State) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return kubeletcfg.WriteFileAtomic(path, append(data, '\n'))
}
