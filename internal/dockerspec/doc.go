// Package dockerspec translates between CRI and Docker types: sandbox and
// container create requests, statuses, container names and labels, image
// references and records, registry credentials.
// It is pure: no I/O, so every translation is tested without Docker.
package dockerspec
