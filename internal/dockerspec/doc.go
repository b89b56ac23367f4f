// Package dockerspec translates between CRI and Docker types: image
// references and records, registry credentials, container names and labels.
// It is pure: no I/O, so every translation is tested without Docker.
package dockerspec
