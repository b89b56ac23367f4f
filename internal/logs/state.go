package logs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/safefile"
)

// stateVersion is the format of a position file.
const stateVersion = 1

// fileID names a file independently of its name, which Docker's and
// kubelet's rotations change.
type fileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

func (f fileID) zero() bool { return f == fileID{} }

// dockerPos is a read position in one of Docker's json-file log files.
type dockerPos struct {
	File fileID `json:"file"`
	// Off is the offset of the first entry not yet forwarded; always just
	// after a "\n".
	Off int64 `json:"off"`
	// Head is a hash of the file's first HeadLen bytes. Inode numbers are
	// reused after a file is deleted; the head tells the file Berth was
	// reading from a newer one that got the same number.
	HeadLen int    `json:"headLen,omitempty"`
	Head    string `json:"head,omitempty"`
}

// criPos is a write position in a CRI log file.
type criPos struct {
	File fileID `json:"file"`
	// Off is the size the file had when the entry before Docker.Off had
	// been written: everything after it in the file (if anything) is the
	// rendering of the entries from Docker.Off on.
	Off int64 `json:"off"`
}

// position is how far forwarding of one container got. Its invariant, on
// which crash recovery rests: the bytes of CRI file CRI.File from CRI.Off on
// are the CRI renderings of Docker's entries from Docker on, in order, and
// nothing else (possibly ending in the first part of a line when Berth died
// in the middle of a write).
type position struct {
	Version int       `json:"version"`
	Docker  dockerPos `json:"docker"`
	CRI     criPos    `json:"cri"`
	// For people reading the file; recovery does not trust names.
	DockerPath string `json:"dockerPath,omitempty"`
	CRIPath    string `json:"criPath,omitempty"`
}

var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

func checkID(id string) error {
	if !validID.MatchString(id) {
		return errdefs.InvalidArgument("container_id", "%q is not a valid container id", id)
	}
	return nil
}

// stateStore keeps one position file per container in a directory.
type stateStore struct {
	dir string
}

func openStateStore(dir string) (*stateStore, error) {
	if err := safefile.PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("log state directory: %w", err)
	}
	return &stateStore{dir: dir}, nil
}

func (s *stateStore) path(id string) string { return filepath.Join(s.dir, id+".json") }

// load returns the saved position of id, or nil if there is none. A file
// that cannot be decoded (left by a power failure, written by a future
// version) is reported and treated as absent: recovery then falls back to
// matching the CRI file's tail.
func (s *stateStore) load(id string) (*position, error) {
	f, err := safefile.Open(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading log position of %s: %w", id, err)
	}
	defer f.Close()
	var p position
	if err := json.NewDecoder(f).Decode(&p); err != nil {
		return nil, fmt.Errorf("log position of %s is unreadable: %v", id, err)
	}
	if p.Version != stateVersion {
		return nil, fmt.Errorf("log position of %s has version %d, want %d", id, p.Version, stateVersion)
	}
	return &p, nil
}

// save writes p for id atomically: a temporary file is written, then renamed
// over the old one. It is not fsynced: a process crash (the case recovery is
// built for) keeps everything written to the page cache, and a power failure
// loses the unsynced tail of the CRI file as well, which no position could
// make up for. Saving is periodic, so an fsync per container per second
// would cost more I/O than the logs themselves on a quiet node.
func (s *stateStore) save(id string, p *position) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := safefile.Write(s.path(id), data, false); err != nil {
		return fmt.Errorf("saving log position of %s: %w", id, err)
	}
	return nil
}

// remove deletes id's position file, and the temporary file a crash
// during save may have left beside it.
func (s *stateStore) remove(id string) error {
	return safefile.Remove(s.path(id))
}
