package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

const (
	// readSize is how much of Docker's file one read takes.
	readSize = 64 << 10
	// maxLine bounds one json-file line. Docker's lines are at most 16 KiB of
	// log, escaped (up to 6 bytes a byte), plus attributes; a longer one is
	// not Docker's and is skipped rather than buffered.
	maxLine = 1 << 20
	// flushAt is how many rendered bytes are collected before a write.
	flushAt = 64 << 10
	// turnBudget is how many bytes of Docker's log one turn of a worker
	// forwards before it lets other containers have theirs.
	turnBudget = 1 << 20
	// reopenBudget bounds the drain Reopen does into the old file; a writer
	// faster than Berth would otherwise keep it there for ever. What is left
	// goes to the new file, still exactly once and in order.
	reopenBudget = 64 << 20
)

// bufs recycles the read and write buffers of turns, so idle followers hold
// none.
var bufs = sync.Pool{New: func() any { b := make([]byte, readSize); return &b }}

// getBuf returns a buffer of length readSize.
func getBuf() *[]byte { return bufs.Get().(*[]byte) }

// putBuf recycles b unless it grew.
func putBuf(b []byte) {
	if cap(b) == readSize {
		b = b[:readSize]
		bufs.Put(&b)
	}
}

// outMark records that once out[:end] is written, every Docker entry before
// offset off of the current Docker file is in the CRI file.
type outMark struct {
	end int
	off int64
}

// follower forwards one container's Docker json log into its CRI log file.
// A worker runs its turns one at a time; Reopen, stop and the turns
// serialise on mu.
type follower struct {
	m          *Manager
	id         string
	dockerPath string
	criPath    string
	log        *slog.Logger

	mu      sync.Mutex // guards everything down to scratch
	stopped bool
	// resume is the position saved by an earlier Berth, used once by
	// reconcile.
	resume     *position
	reconciled bool

	// The Docker file being read.
	src     *os.File
	srcID   fileID
	srcOff  int64 // offset of the first entry not yet rendered
	srcHead string
	srcHLen int
	// srcRotated: Docker moved src away (and closed it first), so once
	// read to its end, the next file follows.
	srcRotated bool

	// At most one of verify and match is set while recovering.
	verify *verifier
	match  *matcher

	// The CRI file being written.
	sink    *os.File
	sinkID  fileID
	sinkOff int64 // its size, as far as Berth knows
	out     []byte
	marks   []outMark
	scratch []byte
	dec     decoder

	exitDue atomic.Bool // the grace period after the container stopped is over

	errMu     sync.Mutex // guards lastErr, lastErrAt
	lastErr   string
	lastErrAt time.Time

	posMu     sync.Mutex // guards committed, gen, seenID, seenSize, pending
	committed position
	gen       uint64 // bumped whenever committed changes
	seenID    fileID // what dockerPath was at the end of the last turn
	seenSize  int64
	pending   bool // rendered output is waiting for a write to succeed

	saveMu    sync.Mutex // serialises saves; guards savedGen, forgotten
	savedGen  uint64
	forgotten bool

	exiting bool // Exited was called; guarded by Manager.mu

	// Guarded by Manager.qmu.
	queued  bool
	running bool
}

// turn forwards up to turnBudget bytes and reports whether more is waiting.
func (f *follower) turn() (more bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	more, err := f.forward(turnBudget)
	if err != nil {
		f.reportErr(err)
	}
	f.posMu.Lock()
	f.pending = len(f.out) > 0 || len(f.marks) > 0
	f.posMu.Unlock()
	f.noteSeen()
	// Idle followers keep no buffers a burst made large.
	if cap(f.dec.buf) > 4<<10 {
		f.dec.buf = nil
	}
	if cap(f.marks) > 1<<10 && len(f.marks) == 0 {
		f.marks = nil
	}
	if f.verify == nil && f.match == nil {
		f.scratch = nil
	}
	return more
}

// noteSeen records the identity and size of dockerPath, so the poller can
// tell whether anything happened since.
func (f *follower) noteSeen() {
	id, size, _ := stat(f.dockerPath)
	f.posMu.Lock()
	f.seenID, f.seenSize = id, size
	f.posMu.Unlock()
}

// changed reports whether dockerPath differs from what the last turn saw,
// or output is waiting for a retry.
func (f *follower) changed() bool {
	id, size, _ := stat(f.dockerPath)
	f.posMu.Lock()
	defer f.posMu.Unlock()
	return f.pending || id != f.seenID || size != f.seenSize
}

// hasPending reports whether output waits for a write to succeed.
func (f *follower) hasPending() bool {
	f.posMu.Lock()
	defer f.posMu.Unlock()
	return f.pending
}

func (f *follower) reportErr(err error) {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	msg := err.Error()
	if msg == f.lastErr && time.Since(f.lastErrAt) < time.Minute {
		return
	}
	f.lastErr, f.lastErrAt = msg, time.Now()
	f.log.Error("forwarding container log", "err", err)
}

// forward renders Docker's entries into the CRI file until it reaches the
// end of Docker's log or has consumed budget bytes. f.mu is held.
func (f *follower) forward(budget int64) (more bool, err error) {
	if err := f.flush(); err != nil {
		return false, err
	}
	if !f.reconciled {
		ok, err := f.reconcile()
		if err != nil || !ok {
			return false, err
		}
	}
	bufp := getBuf()
	defer func() { putBuf(*bufp) }()
	for budget > 0 {
		n, eof, err := f.readChunk(bufp)
		budget -= n
		if err != nil {
			return false, err
		}
		if !eof {
			continue
		}
		if f.srcRotated {
			switched, err := f.switchToNext()
			if err != nil {
				return false, err
			}
			if !switched {
				break
			}
			continue
		}
		rotated, err := f.checkRotated()
		if err != nil {
			return false, err
		}
		if rotated {
			// Read once more: Docker closed the file before moving it,
			// so this time the end is the end.
			f.srcRotated = true
			continue
		}
		// The end of Docker's log as it is now.
		if f.match != nil {
			f.endMatch(false, 0)
			continue
		}
		if v := f.verify; v != nil {
			f.endVerify("Docker's log ends before the CRI log file does")
			if v.isSink {
				if err := f.trimPartialLine(v.off); err != nil {
					return false, err
				}
			}
		}
		break
	}
	if err := f.flush(); err != nil {
		return false, err
	}
	return budget <= 0, nil
}

// readChunk reads from src at srcOff and handles the complete lines found.
// It returns how many bytes it consumed and whether it reached the end of
// what src holds now.
func (f *follower) readChunk(bufp *[]byte) (int64, bool, error) {
	buf := *bufp
	n, err := f.src.ReadAt(buf, f.srcOff)
	f.m.stats.reads.Add(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, false, fmt.Errorf("reading %s: %w", f.src.Name(), err)
	}
	data := buf[:n]
	start := 0
	for {
		i := bytes.IndexByte(data[start:], '\n')
		if i < 0 {
			break
		}
		line := data[start : start+i]
		start += i + 1
		if err := f.handleLine(line, f.srcOff+int64(start)); err != nil {
			f.srcOff += int64(start)
			return int64(start), false, err
		}
	}
	f.srcOff += int64(start)
	if start > 0 || n < len(buf) {
		return int64(start), n < len(buf), nil
	}
	// A full buffer without a newline: a long line.
	if len(buf) < maxLine {
		*bufp = make([]byte, 2*len(buf))
		return 0, false, nil
	}
	return f.skipLongLine(len(buf))
}

// skipLongLine skips the line at srcOff, longer than maxLine.
func (f *follower) skipLongLine(from int) (int64, bool, error) {
	buf := make([]byte, readSize)
	pos := f.srcOff + int64(from)
	for {
		n, err := f.src.ReadAt(buf, pos)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			skipped := pos + int64(i) + 1 - f.srcOff
			f.log.Warn("skipped a line of Docker's json log longer than the limit", "file", f.src.Name(), "offset", f.srcOff, "bytes", skipped)
			f.srcOff += skipped
			f.noteEntry(nil, f.srcOff)
			return skipped, false, nil
		}
		pos += int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, true, nil
			}
			return 0, false, err
		}
	}
}

// handleLine handles one json-file line ending just before offset next.
func (f *follower) handleLine(line []byte, next int64) error {
	var e entry
	if err := f.dec.decode(line, &e); err != nil {
		f.log.Warn("skipped a line of Docker's json log that is not an entry", "file", f.src.Name(), "offset", next-int64(len(line))-1)
		return f.noteEntry(nil, next)
	}
	return f.noteEntry(&e, next)
}

// noteEntry takes the entry that ends before offset next (nil for a line
// that is skipped): compared with the CRI file while recovering, else
// rendered for writing.
func (f *follower) noteEntry(e *entry, next int64) error {
	if f.verify != nil {
		f.scratch = f.scratch[:0]
		if e != nil {
			f.scratch = appendCRI(f.scratch, e)
		}
		return f.verifyEntry(f.scratch, next)
	}
	if f.match != nil {
		f.scratch = f.scratch[:0]
		if e != nil {
			f.scratch = appendCRI(f.scratch, e)
		}
		f.matchEntry(f.scratch, next)
		return nil
	}
	if f.out == nil {
		f.out = (*getBuf())[:0]
	}
	var err error
	if e != nil {
		// Write first rather than grow the buffer.
		if need := len(e.Log) + len(e.Time) + 16; len(f.out) > 0 && len(f.out)+need > cap(f.out) {
			err = f.flush()
			if f.out == nil {
				f.out = (*getBuf())[:0]
			}
		}
		// NOTE: the entry is taken even if that write failed: the
		// caller counts it as read. It waits, with the rest, for the
		// write to be retried; one entry more is the only growth.
		f.out = appendCRI(f.out, e)
	}
	f.marks = append(f.marks, outMark{end: len(f.out), off: next})
	if err == nil && len(f.out) >= flushAt {
		err = f.flush()
	}
	return err
}

// flush writes the rendered output and commits the position of the last
// line written whole. After a failed write, what was not written stays for
// the next try: nothing is read meanwhile, so memory stays bounded.
func (f *follower) flush() error {
	if len(f.marks) == 0 {
		return nil
	}
	var n int
	var err error
	if len(f.out) > 0 {
		n, err = f.sink.Write(f.out)
	}
	k := 0
	for k < len(f.marks) && f.marks[k].end <= n {
		k++
	}
	if k > 0 {
		last := f.marks[k-1]
		f.commit(last.off, criPos{File: f.sinkID, Off: f.sinkOff + int64(last.end)})
	}
	f.sinkOff += int64(n)
	if k == len(f.marks) && n == len(f.out) {
		putBuf(f.out)
		f.out, f.marks = nil, f.marks[:0]
		return err
	}
	rest := copy(f.out, f.out[n:])
	f.out = f.out[:rest]
	m := copy(f.marks, f.marks[k:])
	f.marks = f.marks[:m]
	for i := range f.marks {
		f.marks[i].end -= n
	}
	if err == nil {
		err = io.ErrShortWrite
	}
	return fmt.Errorf("writing %s: %w", f.criPath, err)
}

// commit records that every entry of src before off is in CRI file c.
func (f *follower) commit(off int64, c criPos) {
	if f.srcHLen < headLen && off > int64(f.srcHLen) {
		n := headLen
		if off < int64(n) {
			n = int(off)
		}
		if h, err := headOf(f.src, n); err == nil {
			f.srcHead, f.srcHLen = h, n
		}
	}
	f.posMu.Lock()
	f.committed = position{
		Version:    stateVersion,
		Docker:     dockerPos{File: f.srcID, Off: off, HeadLen: f.srcHLen, Head: f.srcHead},
		CRI:        c,
		DockerPath: f.dockerPath,
		CRIPath:    f.criPath,
	}
	f.gen++
	f.posMu.Unlock()
}

// commitCRI changes the CRI half of the committed position only: the
// entries up to the committed Docker position are all in CRI file c, which
// holds nothing after c.Off.
func (f *follower) commitCRI(c criPos) {
	f.posMu.Lock()
	f.committed.CRI = c
	f.gen++
	f.posMu.Unlock()
}

// checkRotated reports whether Docker has moved src away from dockerPath
// (rotation). It also notices Docker 20.10 truncating the file in place
// (max-file=1), where lines that were not yet read are lost.
func (f *follower) checkRotated() (bool, error) {
	id, size, err := stat(f.dockerPath)
	if errors.Is(err, unix.ENOENT) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if id != f.srcID {
		return true, nil
	}
	if size < f.srcOff {
		f.log.Warn("Docker truncated its json log in place (max-file=1); lines written since Berth last read may be lost", "file", f.dockerPath)
		f.srcOff, f.srcHead, f.srcHLen = 0, "", 0
	}
	return false, nil
}

// switchToNext moves from src, read to its end after Docker rotated it, to
// the file Docker wrote next. It reports false if that file is not there
// yet (Docker renames, then creates).
func (f *follower) switchToNext() (bool, error) {
	if err := f.flush(); err != nil {
		return false, err
	}
	if _, size, err := fstat(f.src); err == nil && size > f.srcOff {
		f.log.Warn("Docker's rotated json log ends in an incomplete line; skipped", "file", f.src.Name(), "bytes", size-f.srcOff)
	}
	files, err := dockerFiles(f.dockerPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	cur := -1
	for _, df := range files {
		if df.id == f.srcID {
			cur = df.index
		}
	}
	var next *dockerFile
	gap := false
	switch {
	case cur == 0:
		return false, nil // not moved after all
	case cur > 0:
		for i := range files {
			if files[i].index == cur-1 {
				next = &files[i]
			}
		}
	case len(files) > 0:
		// src was deleted (rotated past max-file) or compressed; what
		// came after it is the oldest file left, unless Berth fell
		// more than max-file files behind.
		next = &files[len(files)-1]
		gap = true
		f.log.Info("Docker's json log file was rotated away after Berth read it; continuing with the oldest one left (lines are lost only if Berth fell behind by more than max-file files)", "file", next.path)
	}
	if next == nil {
		return false, nil
	}
	nf, err := os.Open(next.path)
	if err != nil {
		return false, nil // rotated meanwhile; the next event or poll retries
	}
	id, _, err := fstat(nf)
	if err != nil || id != next.id {
		nf.Close()
		return false, nil
	}
	f.setSource(nf, id, 0, next.index > 0)
	if gap && f.verify != nil {
		// Entries may be missing between the two files, so the CRI
		// file can no longer be compared entry by entry (nor
		// truncated on a mismatch: its lines may exist nowhere
		// else). Look for its end instead.
		f.endVerify("Docker's log has a gap after the saved position (rotated away while Berth was down)")
		if err := f.startMatch(); err != nil {
			return false, err
		}
	}
	// Commit the start of the new file, so a restart need not find the
	// old one again (it may be gone by then).
	switch {
	case f.verify != nil:
		f.commit(0, criPos{File: f.verify.id, Off: f.verify.off})
	case f.match == nil:
		f.commit(0, criPos{File: f.sinkID, Off: f.sinkOff})
	}
	return true, nil
}

// setSource makes nf the Docker file read from off. The old one is closed
// unless recovery may come back to it.
func (f *follower) setSource(nf *os.File, id fileID, off int64, rotated bool) {
	if f.src != nil && f.src != nf && (f.match == nil || f.src != f.match.startFile) {
		f.src.Close()
	}
	f.src, f.srcID, f.srcOff, f.srcRotated = nf, id, off, rotated
	f.srcHead, f.srcHLen = "", 0
}

// stop closes the files; the position stays as committed. Output that
// cannot be written now is dropped from memory; it is read again from
// Docker's file next time.
func (f *follower) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	if f.reconciled {
		_ = f.flush()
	}
	f.stopped = true
	if f.match != nil && f.match.startFile != nil && f.match.startFile != f.src {
		f.match.startFile.Close()
	}
	if f.verify != nil && f.verify.file != f.sink {
		f.verify.file.Close()
	}
	f.match, f.verify = nil, nil
	if f.src != nil {
		f.src.Close()
	}
	if f.sink != nil {
		f.sink.Close()
	}
	f.out, f.marks = nil, nil
}

// save writes the committed position if it changed since the last save.
func (f *follower) save() error {
	f.saveMu.Lock()
	defer f.saveMu.Unlock()
	if f.forgotten {
		return nil
	}
	f.posMu.Lock()
	p, gen := f.committed, f.gen
	f.posMu.Unlock()
	if gen == f.savedGen {
		return nil
	}
	if err := f.m.states.save(f.id, &p); err != nil {
		return err
	}
	f.savedGen = gen
	return nil
}

// forget stops saves and deletes the position file.
func (f *follower) forget() {
	f.saveMu.Lock()
	defer f.saveMu.Unlock()
	f.forgotten = true
	if err := f.m.states.remove(f.id); err != nil {
		f.log.Warn("removing log position", "err", err)
	}
}

// reopen drains what Docker has into the current CRI file, then continues
// in a new file at criPath.
func (f *follower) reopen() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return errNotFollowed(f.id)
	}
	for {
		more, err := f.forward(reopenBudget)
		if err != nil {
			return fmt.Errorf("forwarding the log of container %s to its old file: %w: %w", f.id, err, errdefs.ErrInternal)
		}
		if !more || (f.verify == nil && f.match == nil) {
			break
		}
	}
	if f.verify != nil || f.match != nil {
		return fmt.Errorf("container %s: log forwarding is still recovering; retry: %w", f.id, errUnavailable)
	}
	// Save the exact position in the old file before anything can be
	// written to the new one: a crash in between then resumes exactly.
	if err := f.save(); err != nil {
		return fmt.Errorf("container %s: saving the log position: %w: %w", f.id, err, errdefs.ErrInternal)
	}
	nf, replaced, err := openCRI(f.criPath)
	if err != nil {
		return fmt.Errorf("container %s: %w: %w", f.id, err, errdefs.ErrInternal)
	}
	if replaced {
		f.log.Info("replaced a symbolic link at the container log path by a regular file", "path", f.criPath)
	}
	id, size, err := fstat(nf)
	if err != nil {
		nf.Close()
		return fmt.Errorf("container %s: %w: %w", f.id, err, errdefs.ErrInternal)
	}
	old, oldID, oldOff := f.sink, f.sinkID, f.sinkOff
	f.sink, f.sinkID, f.sinkOff = nf, id, size
	if f.reconciled {
		f.commitCRI(criPos{File: id, Off: size})
		if err := f.save(); err != nil {
			// Without the new position on disk, a crash would
			// repeat lines into the new file: stay with the old
			// one, which kubelet renames back.
			f.sink, f.sinkID, f.sinkOff = old, oldID, oldOff
			f.commitCRI(criPos{File: oldID, Off: oldOff})
			nf.Close()
			return fmt.Errorf("container %s: saving the log position; log not reopened: %w: %w", f.id, err, errdefs.ErrInternal)
		}
	}
	if old != nil {
		old.Close()
	}
	return nil
}
