package store

import "strings"

// ContainerMatch is the filter ListContainers and ListContainerStats share:
// the ID and the sandbox ID match by prefix when set, and every label of
// selector must be on the container.
func ContainerMatch(c *Container, idPrefix, sandboxIDPrefix string, selector map[string]string) bool {
	if idPrefix != "" && !strings.HasPrefix(c.ID, idPrefix) {
		return false
	}
	if sandboxIDPrefix != "" && !strings.HasPrefix(c.SandboxID, sandboxIDPrefix) {
		return false
	}
	return MatchLabels(c.Labels, selector)
}
