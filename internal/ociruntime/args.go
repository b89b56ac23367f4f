package ociruntime

import (
	"fmt"
	"strings"
)

// invocation is what the wrapper needs from runc's command line: the
// global options Docker's shim passes, the command, and its bundle or
// container id. The arguments themselves go to runc unchanged.
type invocation struct {
	root      string // --root: runc's state directory
	log       string // --log: where runc (and the wrapper) log
	logFormat string // --log-format: "text" or "json"
	command   string // create, start, delete, features, …; "" for none
	bundle    string // create/run: --bundle, else the working directory
	id        string // the container id: the command's last argument
	force     bool   // delete --force
}

// runcValueFlags are runc's global flags that take a value (runc 1.1 to
// 1.5): their value is not the command.
var runcValueFlags = map[string]bool{"root": true, "log": true, "log-format": true, "criu": true, "rootless": true}

// parseInvocation reads runc's command line (without the program name).
// It understands only what it needs and never refuses: a command line it
// cannot read goes to runc, which reports the error.
func parseInvocation(args []string) invocation {
	inv := invocation{root: "/run/runc", logFormat: "text"}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !runcValueFlags[name] {
			continue
		}
		if !hasValue && i+1 < len(args) {
			i++
			value = args[i]
		}
		switch name {
		case "root":
			inv.root = value
		case "log":
			inv.log = value
		case "log-format":
			inv.logFormat = value
		}
	}
	if i >= len(args) {
		return inv
	}
	inv.command = args[i]
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(rest[j], "-"), "=")
		if !strings.HasPrefix(rest[j], "-") {
			inv.id = rest[j]
			continue
		}
		switch name {
		case "bundle", "b":
			if !hasValue && j+1 < len(rest) {
				j++
				value = rest[j]
			}
			inv.bundle = value
		case "force", "f":
			inv.force = true
		case "console-socket", "pid-file", "pidfd-socket", "preserve-fds", "criu", "image-path", "work-path", "parent-path", "page-server", "manage-cgroups-mode", "empty-ns", "status-fd", "lazy-pages":
			if !hasValue && j+1 < len(rest) {
				j++
			}
		}
	}
	return inv
}

// String is for messages.
func (inv invocation) String() string {
	return fmt.Sprintf("runc %s %s", inv.command, inv.id)
}
