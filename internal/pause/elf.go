// Package pause makes Berth's pause image locally, from Berth's own code: a
// tiny static program (a few hundred bytes of machine code in an ELF file)
// that sleeps as a pod's first process, reaps the zombies it inherits and
// exits on SIGTERM or SIGINT. Nothing is downloaded; air-gapped nodes work.
package pause

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
)

// Linux x86-64 system call numbers and constants the program uses.
const (
	sysRtSigaction = 13
	sysPause       = 34
	sysExitGroup   = 231

	sigINT  = 2
	sigTERM = 15
	sigCHLD = 17

	sigIGN     = 1
	saRestorer = 0x04000000
)

// Program returns the pause program as a static ELF executable for arch (a
// GOARCH value). Only amd64 is assembled today.
func Program(arch string) ([]byte, error) {
	switch arch {
	case "amd64":
		return elf64(0x3e, amd64Code()), nil
	default:
		return nil, fmt.Errorf("Berth can build its pause program for amd64 only, not %s: set --pod-infra-container-image to a pause image for %s", arch, arch)
	}
}

// NativeProgram returns the pause program for the architecture Berth runs on.
func NativeProgram() ([]byte, error) { return Program(runtime.GOARCH) }

// amd64Code assembles the program:
//
//	_start:
//	    sub   rsp, 32                 ; room for a struct kernel_sigaction
//	    mov   rsi, rsp                ;   {handler, flags, restorer, mask}
//	    mov   qword [rsi], SIG_IGN    ; SIGCHLD ignored: the kernel reaps
//	    mov   qword [rsi+8], SA_RESTORER ;   children (and inherited orphans)
//	    lea   rax, [rel handler]      ;   as soon as they exit: no zombies
//	    mov   [rsi+16], rax           ; restorer: never used (the handler
//	    mov   qword [rsi+24], 0       ;   exits) but x86-64 requires one
//	    mov   edi, SIGCHLD
//	    xor   edx, edx                ; no old action
//	    mov   r10d, 8                 ; sizeof(sigset_t)
//	    mov   eax, SYS_rt_sigaction
//	    syscall
//	    lea   rax, [rel handler]      ; SIGTERM and SIGINT run handler: as
//	    mov   [rsi], rax              ;   PID 1 of its namespace the process
//	    mov   edi, SIGTERM            ;   would otherwise ignore them
//	    mov   eax, SYS_rt_sigaction
//	    syscall
//	    mov   edi, SIGINT
//	    mov   eax, SYS_rt_sigaction
//	    syscall
//	loop:
//	    mov   eax, SYS_pause          ; sleep until a signal arrives
//	    syscall
//	    jmp   loop
//	handler:
//	    xor   edi, edi                ; exit status 0
//	    mov   eax, SYS_exit_group
//	    syscall
//
// syscall preserves every register but rax, rcx and r11, so rsi, rdx and
// r10 keep their values between the three rt_sigaction calls.
func amd64Code() []byte {
	var c asm
	c.emit(0x48, 0x83, 0xec, 0x20)                          // sub rsp, 32
	c.emit(0x48, 0x89, 0xe6)                                // mov rsi, rsp
	c.emit(0x48, 0xc7, 0x06).u32(sigIGN)                    // mov qword [rsi], SIG_IGN
	c.emit(0x48, 0xc7, 0x46, 0x08).u32(saRestorer)          // mov qword [rsi+8], SA_RESTORER
	leaHandler1 := c.emit(0x48, 0x8d, 0x05).placeholder32() // lea rax, [rel handler]
	c.emit(0x48, 0x89, 0x46, 0x10)                          // mov [rsi+16], rax
	c.emit(0x48, 0xc7, 0x46, 0x18).u32(0)                   // mov qword [rsi+24], 0
	c.emit(0xbf).u32(sigCHLD)                               // mov edi, SIGCHLD
	c.emit(0x31, 0xd2)                                      // xor edx, edx
	c.emit(0x41, 0xba).u32(8)                               // mov r10d, 8
	c.emit(0xb8).u32(sysRtSigaction).emit(0x0f, 0x05)       // mov eax, 13; syscall
	leaHandler2 := c.emit(0x48, 0x8d, 0x05).placeholder32() // lea rax, [rel handler]
	c.emit(0x48, 0x89, 0x06)                                // mov [rsi], rax
	c.emit(0xbf).u32(sigTERM)                               // mov edi, SIGTERM
	c.emit(0xb8).u32(sysRtSigaction).emit(0x0f, 0x05)       // mov eax, 13; syscall
	c.emit(0xbf).u32(sigINT)                                // mov edi, SIGINT
	c.emit(0xb8).u32(sysRtSigaction).emit(0x0f, 0x05)       // mov eax, 13; syscall
	loop := c.pos()                                         //
	c.emit(0xb8).u32(sysPause).emit(0x0f, 0x05)             // mov eax, 34; syscall
	c.emit(0xeb, byte(int8(loop-(c.pos()+2))))              // jmp loop
	handler := c.pos()                                      //
	c.emit(0x31, 0xff)                                      // xor edi, edi
	c.emit(0xb8).u32(sysExitGroup).emit(0x0f, 0x05)         // mov eax, 231; syscall
	c.patchRel32(leaHandler1, handler)
	c.patchRel32(leaHandler2, handler)
	return c.buf.Bytes()
}

// asm is a byte buffer with just enough help to assemble the code above.
type asm struct{ buf bytes.Buffer }

func (a *asm) pos() int { return a.buf.Len() }

func (a *asm) emit(b ...byte) *asm { a.buf.Write(b); return a }

func (a *asm) u32(v uint32) *asm {
	_ = binary.Write(&a.buf, binary.LittleEndian, v)
	return a
}

// placeholder32 reserves a rel32 operand and returns its offset.
func (a *asm) placeholder32() int {
	at := a.pos()
	a.u32(0)
	return at
}

// patchRel32 fills the rel32 at `at` so it points to target; rip-relative
// operands count from the end of the operand (the next instruction).
func (a *asm) patchRel32(at, target int) {
	rel := int32(target - (at + 4))
	binary.LittleEndian.PutUint32(a.buf.Bytes()[at:], uint32(rel))
}

// elf64 wraps code in a minimal static little-endian ELF64 executable: the
// ELF header, one PT_LOAD program header mapping the whole file read+exec
// at a fixed address, and the code, which is the entry point.
func elf64(machine uint16, code []byte) []byte {
	const (
		base    = 0x400000
		ehSize  = 64
		phSize  = 56
		codeOff = ehSize + phSize
	)
	total := uint64(codeOff + len(code))
	var b bytes.Buffer
	le := binary.LittleEndian
	w := func(v any) { _ = binary.Write(&b, le, v) }
	// e_ident: magic, 64-bit, little-endian, version 1, System V ABI.
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	w(uint16(2))              // e_type: ET_EXEC
	w(machine)                // e_machine
	w(uint32(1))              // e_version
	w(uint64(base + codeOff)) // e_entry
	w(uint64(ehSize))         // e_phoff
	w(uint64(0))              // e_shoff: no sections
	w(uint32(0))              // e_flags
	w(uint16(ehSize))         // e_ehsize
	w(uint16(phSize))         // e_phentsize
	w(uint16(1))              // e_phnum
	w(uint16(0))              // e_shentsize
	w(uint16(0))              // e_shnum
	w(uint16(0))              // e_shstrndx
	w(uint32(1))              // p_type: PT_LOAD
	w(uint32(5))              // p_flags: R+X
	w(uint64(0))              // p_offset
	w(uint64(base))           // p_vaddr
	w(uint64(base))           // p_paddr
	w(total)                  // p_filesz
	w(total)                  // p_memsz
	w(uint64(0x1000))         // p_align
	b.Write(code)
	return b.Bytes()
}
