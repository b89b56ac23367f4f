package dockerspec

import "testing"

func TestShortID(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"0123456789abcdef0123", "0123456789ab"},
		{"0123456789ab", "0123456789ab"},
		{"abc", "abc"},
		{"", ""},
	} {
		if got := ShortID(tc.id); got != tc.want {
			t.Errorf("ShortID(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}
