package chunk

import (
	"errors"
	"reflect"
	"testing"
)

func TestSend(t *testing.T) {
	var got [][]int
	collect := func(c []int) error { got = append(got, c); return nil }
	if err := Send([]int{1, 2, 3, 4, 5}, 2, collect); err != nil {
		t.Fatal(err)
	}
	if want := [][]int{{1, 2}, {3, 4}, {5}}; !reflect.DeepEqual(got, want) {
		t.Errorf("chunks = %v, want %v", got, want)
	}
	got = nil
	if err := Send[int](nil, 2, collect); err != nil || got != nil {
		t.Errorf("empty list: err %v, chunks %v", err, got)
	}
	boom := errors.New("boom")
	calls := 0
	if err := Send([]int{1, 2, 3}, 1, func([]int) error { calls++; return boom }); err != boom || calls != 1 {
		t.Errorf("error: err %v after %d calls, want boom after 1", err, calls)
	}
}
