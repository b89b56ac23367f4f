// Package chunk sends a list in messages of at most a given number of items,
// the one loop behind the six Stream* RPCs.
package chunk

// Size is how many items one message of a Stream* RPC carries, unless the
// RPC says otherwise (StreamImages).
const Size = 100

// Send calls send with consecutive slices of items, each at most size long
// (size < 1 counts as 1), and stops at the first error. An empty list sends
// nothing.
func Send[T any](items []T, size int, send func([]T) error) error {
	size = max(size, 1)
	for len(items) > 0 {
		n := min(size, len(items))
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}
