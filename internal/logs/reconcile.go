package logs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Recovery: where to go on after a restart or a crash.
//
// The saved position (Docker file, offset; CRI file, offset) is committed
// only after the lines it covers were written, and saved every second, so
// after a crash the CRI file may hold lines past the saved position. As the
// CRI rendering is a pure function of Docker's entries, those lines are
// exactly the renderings of the entries after the saved Docker offset: the
// follower re-reads those entries and compares (verifier) instead of
// writing, until it has passed the end of the CRI file. A line cut short by
// the crash is completed, not repeated.
//
// Without a usable position (none saved, or the CRI file it names is gone
// and the file at the CRI path has lines Berth did not account for), the
// follower looks for the last lines of the CRI file among Docker's entries
// (matcher) and goes on after them; if they are not found, it forwards from
// the start and says that lines may be repeated.

// reconcile picks the Docker file and offset to go on from and sets up the
// verifier or matcher. It reports false if Docker's log does not exist yet.
func (f *follower) reconcile() (bool, error) {
	files, err := dockerFiles(f.dockerPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if len(files) == 0 {
		return false, nil
	}
	st := f.resume
	trusted := false
	if st != nil {
		trusted = f.openSaved(files, st)
		if !trusted {
			f.log.Warn("the Docker log file Berth was reading when it stopped is gone (rotated away meanwhile?); forwarding from the oldest one left; lines may have been lost",
				"dockerLog", f.dockerPath)
		}
	}
	if !trusted {
		oldest := files[len(files)-1]
		file, err := os.Open(oldest.path)
		if err != nil {
			return false, nil // rotated meanwhile: the next event retries
		}
		id, _, err := fstat(file)
		if err != nil {
			file.Close()
			return false, err
		}
		f.setSource(file, id, 0, oldest.index > 0)
	}

	var cf *os.File
	var cfSize int64
	isSink := false
	if trusted {
		if f.sinkID == st.CRI.File {
			cf, cfSize, isSink = f.sink, f.sinkOff, true
		} else {
			cf, cfSize = findByID(f.criPath, st.CRI.File)
		}
	}
	switch {
	case cf != nil && cfSize >= st.CRI.Off:
		f.commit(f.srcOff, criPos{File: st.CRI.File, Off: st.CRI.Off})
		if cfSize > st.CRI.Off {
			f.verify = &verifier{file: cf, id: st.CRI.File, off: st.CRI.Off, end: cfSize, isSink: isSink}
			f.log.Info("resuming log forwarding after an unclean stop: checking lines written after the saved position",
				"bytes", cfSize-st.CRI.Off)
		} else if !isSink {
			cf.Close()
			f.commit(f.srcOff, criPos{File: f.sinkID, Off: f.sinkOff})
		}
	default:
		if cf != nil {
			f.log.Warn("the CRI log file is shorter than when Berth saved its position (lost in a power failure?)", "path", cf.Name())
			if !isSink {
				cf.Close()
			}
		}
		if f.sinkOff > 0 {
			if err := f.startMatch(); err != nil {
				return false, err
			}
		}
		if f.match == nil {
			f.commit(f.srcOff, criPos{File: f.sinkID, Off: f.sinkOff})
		}
	}
	f.reconciled, f.resume = true, nil
	return true, nil
}

// openSaved opens the Docker file of the saved position, if it is still
// there and is the same file (inode and first bytes).
func (f *follower) openSaved(files []dockerFile, st *position) bool {
	for _, df := range files {
		if df.id != st.Docker.File || df.size < st.Docker.Off {
			continue
		}
		file, err := os.Open(df.path)
		if err != nil {
			continue
		}
		id, _, err := fstat(file)
		if err == nil && id == df.id && st.Docker.HeadLen > 0 {
			var h string
			h, err = headOf(file, st.Docker.HeadLen)
			if err == nil && h != st.Docker.Head {
				err = errors.New("different file")
			}
		}
		if err != nil || id != df.id {
			file.Close()
			continue
		}
		f.setSource(file, id, st.Docker.Off, df.index > 0)
		f.srcHead, f.srcHLen = st.Docker.Head, st.Docker.HeadLen
		return true
	}
	return false
}

// findByID finds the CRI file Berth wrote before among the files next to
// criPath: kubelet renames it (<path>.<timestamp>) when it rotates.
func findByID(criPath string, id fileID) (*os.File, int64) {
	dir := filepath.Dir(criPath)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if got, _, err := lstatID(p); err != nil || got != id {
			continue
		}
		file, err := openReadOnly(p)
		if err != nil {
			return nil, 0
		}
		got, size, err := fstat(file)
		if err != nil || got != id {
			file.Close()
			return nil, 0
		}
		return file, size
	}
	return nil, 0
}

// verifier compares the entries after the saved position with what the CRI
// file already holds there.
type verifier struct {
	file   *os.File
	id     fileID
	off    int64 // next byte to compare
	end    int64 // the file's size when recovery began
	isSink bool  // file is the one Berth goes on writing
	win    []byte
	winOff int64
}

// read returns up to n bytes of the file from v.off, not past v.end.
func (v *verifier) read(n int) ([]byte, error) {
	if rem := v.end - v.off; int64(n) > rem {
		n = int(rem)
	}
	if v.off < v.winOff || v.off+int64(n) > v.winOff+int64(len(v.win)) {
		size := max(n, readSize)
		if rem := v.end - v.off; int64(size) > rem {
			size = int(rem)
		}
		if cap(v.win) < size {
			v.win = make([]byte, size)
		}
		v.win = v.win[:size]
		got, err := v.file.ReadAt(v.win, v.off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		v.win, v.winOff = v.win[:got], v.off
		if got < n {
			n = got
		}
	}
	s := v.off - v.winOff
	return v.win[s : s+int64(n)], nil
}

// verifyEntry compares the rendering r of the entry ending before Docker
// offset next with the CRI file.
func (f *follower) verifyEntry(r []byte, next int64) error {
	v := f.verify
	got, err := v.read(len(r))
	if err != nil {
		f.endVerify(fmt.Sprintf("cannot read the CRI log file (%v)", err))
		return f.emit(r, next)
	}
	switch {
	case bytes.Equal(got, r):
		v.off += int64(len(r))
		f.commit(next, criPos{File: v.id, Off: v.off})
		if v.off == v.end {
			f.endVerify("")
		}
		return nil
	case len(got) < len(r) && v.off+int64(len(got)) == v.end && bytes.HasPrefix(r, got):
		// The crash cut this line short: complete it in place, or
		// write it whole to the new file.
		f.log.Info("completing a log line cut short by an unclean stop")
		rest := r
		if v.isSink {
			rest = r[len(got):]
		}
		f.endVerify("")
		return f.emit(rest, next)
	default:
		if v.isSink {
			// By the position's invariant everything from v.off on
			// was rendered from the entries being read now: drop it
			// and render it again rather than leave a broken line.
			if err := f.sink.Truncate(v.off); err != nil {
				f.log.Warn("truncating the CRI log file", "err", err)
			} else {
				f.sinkOff = v.off
			}
		}
		f.endVerify("the CRI log file does not match Docker's log after the saved position")
		return f.emit(r, next)
	}
}

// endVerify ends verification; later lines are written to the sink.
func (f *follower) endVerify(problem string) {
	v := f.verify
	f.verify = nil
	if problem != "" {
		f.log.Warn(problem+"; forwarding from there (lines may appear twice)", "path", v.file.Name(), "offset", v.off)
	}
	if !v.isSink {
		v.file.Close()
	}
	f.commitCRI(criPos{File: f.sinkID, Off: f.sinkOff})
}

// trimPartialLine removes a partial line (no newline) from the end of the
// sink, not before offset floor, so the next line does not join it.
func (f *follower) trimPartialLine(floor int64) error {
	if f.sinkOff <= floor {
		return nil
	}
	n := min(f.sinkOff-floor, tailBytes)
	buf := make([]byte, n)
	if _, err := f.sink.ReadAt(buf, f.sinkOff-n); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading %s: %w", f.criPath, err)
	}
	last := bytes.LastIndexByte(buf, '\n')
	if last == len(buf)-1 || (last < 0 && n < f.sinkOff-floor) {
		return nil
	}
	cut := f.sinkOff - n + int64(last+1)
	if err := f.sink.Truncate(cut); err != nil {
		return fmt.Errorf("truncating %s: %w", f.criPath, err)
	}
	f.log.Info("removed a log line cut short by an unclean stop", "path", f.criPath, "bytes", f.sinkOff-cut)
	f.sinkOff = cut
	f.commitCRI(criPos{File: f.sinkID, Off: f.sinkOff})
	return nil
}

// emit queues rendered bytes for the sink.
func (f *follower) emit(r []byte, next int64) error {
	f.out = append(f.out, r...)
	f.marks = append(f.marks, outMark{end: len(f.out), off: next})
	if len(f.out) >= flushAt {
		return f.flush()
	}
	return nil
}

const (
	// tailBytes and tailLines bound the end of the CRI file the matcher
	// looks for: a few lines make a match unambiguous even among the
	// parts of one long line, which share their timestamp.
	tailBytes = 256 << 10
	tailLines = 8
)

type lineHash [sha256.Size]byte

// matcher looks for the last lines of the CRI file among the renderings of
// Docker's entries.
type matcher struct {
	tail   []lineHash // the CRI file's last lines, oldest first
	window []lineHash // the last len(tail) lines rendered
	seen   int
	// Where forwarding starts if the tail is not found.
	startFile    *os.File
	startID      fileID
	startOff     int64
	startRotated bool
}

// startMatch reads the end of the sink and starts looking for it.
func (f *follower) startMatch() error {
	size := f.sinkOff
	n := min(size, tailBytes)
	buf := make([]byte, n)
	if _, err := f.sink.ReadAt(buf, size-n); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading %s: %w", f.criPath, err)
	}
	// Bytes after the last newline are a line cut short by a crash:
	// remove them; the entry is written again whole.
	last := bytes.LastIndexByte(buf, '\n')
	if last < len(buf)-1 {
		if last < 0 && size > n {
			f.log.Warn("the CRI log file does not end in CRI log lines; forwarding Docker's whole log after it (lines may appear twice)", "path", f.criPath)
			return nil
		}
		cut := size - int64(len(buf)-1-last)
		if err := f.sink.Truncate(cut); err != nil {
			return fmt.Errorf("truncating %s: %w", f.criPath, err)
		}
		f.log.Info("removed a log line cut short by an unclean stop", "path", f.criPath, "bytes", size-cut)
		f.sinkOff = cut
		buf = buf[:last+1]
	}
	var lines [][]byte
	for rest := buf; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		lines = append(lines, rest[:i+1])
		rest = rest[i+1:]
	}
	if size > n && len(lines) > 0 {
		lines = lines[1:] // may start mid-line
	}
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	if len(lines) == 0 {
		return nil
	}
	mt := &matcher{startFile: f.src, startID: f.srcID, startOff: f.srcOff, startRotated: f.srcRotated}
	for _, l := range lines {
		mt.tail = append(mt.tail, sha256.Sum256(l))
	}
	f.match = mt
	return nil
}

// matchEntry takes the rendering r of the entry ending before next.
func (f *follower) matchEntry(r []byte, next int64) {
	mt := f.match
	if len(r) == 0 {
		return
	}
	for rest := r; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if len(mt.window) == len(mt.tail) {
			copy(mt.window, mt.window[1:])
			mt.window = mt.window[:len(mt.window)-1]
		}
		mt.window = append(mt.window, sha256.Sum256(rest[:i+1]))
		mt.seen++
		rest = rest[i+1:]
	}
	k := min(mt.seen, len(mt.tail))
	w := mt.window[len(mt.window)-k:]
	t := mt.tail[len(mt.tail)-k:]
	for i := range w {
		if w[i] != t[i] {
			return
		}
	}
	f.endMatch(true, next)
}

// endMatch ends the search: found at the entry ending before next, or not
// found (then forwarding starts where the search did).
func (f *follower) endMatch(found bool, next int64) {
	mt := f.match
	f.match = nil
	if found {
		if mt.startFile != f.src {
			mt.startFile.Close()
		}
		f.log.Info("resuming log forwarding after the last line already in the CRI log file")
		f.commit(next, criPos{File: f.sinkID, Off: f.sinkOff})
		return
	}
	f.log.Warn("could not find the end of the existing CRI log file in Docker's log; forwarding all of Docker's log after it (lines may appear twice)", "path", f.criPath)
	f.setSource(mt.startFile, mt.startID, mt.startOff, false)
	f.commit(f.srcOff, criPos{File: f.sinkID, Off: f.sinkOff})
}
