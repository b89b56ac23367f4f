// Package checkpoint keeps the durable record of each pod sandbox: what must
// outlive the pause container (the network Berth set up, port mappings, the
// pod's identity). Records are versioned, checksummed and written atomically
// under --root-dir; a corrupt one is quarantined, never trusted.
package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/safefile"
)

// Version is the current format of a sandbox record.
const Version = 1

// ErrCorrupt means a record failed its checksum or could not be decoded.
var ErrCorrupt = errors.New("corrupt checkpoint")

// Sandbox is the durable record of one pod sandbox.
type Sandbox struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"` // the pause container's Docker name
	PodName        string            `json:"podName"`
	PodNamespace   string            `json:"podNamespace"`
	PodUID         string            `json:"podUID"`
	Attempt        uint32            `json:"attempt"`
	Labels         map[string]string `json:"labels,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	RuntimeHandler string            `json:"runtimeHandler,omitempty"`
	LogDirectory   string            `json:"logDirectory,omitempty"`
	CreatedAt      int64             `json:"createdAt"`
	HostNetwork    bool              `json:"hostNetwork,omitempty"`
	PortMappings   []PortMapping     `json:"portMappings,omitempty"`
	// Network is the CNI attachment; nil when Berth set up no CNI network
	// (host network, Docker-bridge mode) or has not started to.
	Network *Network `json:"network,omitempty"`
}

// PortMapping is one hostPort of the pod.
type PortMapping struct {
	Protocol      string `json:"protocol"`
	ContainerPort int32  `json:"containerPort"`
	HostPort      int32  `json:"hostPort"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Network states. A record is written in StateAdding before CNI ADD runs,
// so a crash during ADD still leads to a DEL.
const (
	StateAdding = "adding" // ADD started; DEL needed
	StateUp     = "up"     // ADD succeeded; DEL needed
	StateDown   = "down"   // DEL succeeded; nothing to undo
)

// Network is what CNI DEL needs, exactly as ADD had it: the pod's CNI
// attachment, and how far ADD got. The attachment is network's own type,
// so there is one description of it and nothing to convert; its fields are
// flattened into the record's JSON beside state.
type Network struct {
	State string `json:"state"`
	network.Attachment
}

type envelope struct {
	Version  int             `json:"version"`
	Checksum string          `json:"checksum"`
	Data     json.RawMessage `json:"data"`
}

// Store reads and writes sandbox records in a directory.
type Store struct {
	dir string
}

var validID = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,128}$`)

// Open returns a Store for dir, creating it (mode 0700) if needed. dir must
// not be a symlink: Berth never follows one out of its root directory.
func Open(dir string) (*Store, error) {
	if err := safefile.PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("checkpoint directory: %w", err)
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path(id string) (string, error) {
	if !validID.MatchString(id) {
		return "", fmt.Errorf("invalid sandbox id %q for a checkpoint", id)
	}
	return filepath.Join(s.dir, id+".json"), nil
}

// Save writes rec atomically: a temporary file is written and synced, then
// renamed over the old record, and the directory is synced.
func (s *Store) Save(rec *Sandbox) error {
	p, err := s.path(rec.ID)
	if err != nil {
		return err
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	env, err := json.Marshal(envelope{Version: Version, Checksum: "sha256:" + hex.EncodeToString(sum[:]), Data: data})
	if err != nil {
		return err
	}
	if err := safefile.Write(p, env, true); err != nil {
		return fmt.Errorf("writing checkpoint %s: %w", p, err)
	}
	return nil
}

// Load reads a record. A record that fails to decode or to match its
// checksum is moved aside (quarantined) and ErrCorrupt is returned; a
// missing one is os.ErrNotExist.
func (s *Store) Load(id string) (*Sandbox, error) {
	p, err := s.path(id)
	if err != nil {
		return nil, err
	}
	f, err := safefile.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, os.ErrNotExist
	}
	if errors.Is(err, safefile.ErrNotRegular) {
		// A symbolic link or a FIFO where the record belongs: never
		// followed or read, and moved aside like any record that cannot
		// be trusted, so Stop and Remove go on without it.
		q := s.quarantine(p)
		return nil, fmt.Errorf("%w (moved to %s): %v", ErrCorrupt, q, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint %s: %w", p, err)
	}
	defer f.Close()
	raw, err := readAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint %s: %w", p, err)
	}
	rec, err := decode(raw)
	if err != nil {
		q := s.quarantine(p)
		return nil, fmt.Errorf("%w %s (moved to %s): %v", ErrCorrupt, p, q, err)
	}
	if rec.ID != id {
		q := s.quarantine(p)
		return nil, fmt.Errorf("%w %s (moved to %s): holds sandbox %q", ErrCorrupt, p, q, rec.ID)
	}
	return rec, nil
}

func decode(raw []byte) (*Sandbox, error) {
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, err
	}
	if env.Version != Version {
		return nil, fmt.Errorf("version %d is not %d", env.Version, Version)
	}
	sum := sha256.Sum256(env.Data)
	if env.Checksum != "sha256:"+hex.EncodeToString(sum[:]) {
		return nil, errors.New("checksum mismatch")
	}
	var rec Sandbox
	if err := json.Unmarshal(env.Data, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

func (s *Store) quarantine(p string) string {
	q := fmt.Sprintf("%s.corrupt-%d", p, time.Now().UnixNano())
	if err := os.Rename(p, q); err != nil {
		return "(could not move: " + err.Error() + ")"
	}
	return q
}

// Delete removes a record, and the temporary file a crash during Save may
// have left beside it; a missing one is not an error.
func (s *Store) Delete(id string) error {
	p, err := s.path(id)
	if err != nil {
		return err
	}
	if err := safefile.Remove(p); err != nil {
		return err
	}
	return safefile.SyncDir(s.dir)
}

// IDs lists the sandbox ids that have a record.
func (s *Store) IDs() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".json") {
			continue
		}
		ids = append(ids, strings.TrimSuffix(name, ".json"))
	}
	return ids, nil
}

func readAll(f *os.File) ([]byte, error) {
	const max = 16 << 20 // a record is a few KiB; refuse absurd files
	buf, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if len(buf) > max {
		return nil, fmt.Errorf("more than %d bytes is too large for a checkpoint", max)
	}
	return buf, nil
}
