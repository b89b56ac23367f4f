package cri

import "testing"

func TestKeyedMutexTryLock(t *testing.T) {
	k := newKeyedMutex()
	unlock, ok := k.tryLock("a")
	if !ok {
		t.Fatal("tryLock of a free key failed")
	}
	if _, ok := k.tryLock("a"); ok {
		t.Fatal("tryLock of a held key succeeded")
	}
	other, ok := k.tryLock("b")
	if !ok {
		t.Fatal("tryLock of another key failed")
	}
	other()
	unlock()
	again := k.lock("a") // free again: lock does not wait
	if _, ok := k.tryLock("a"); ok {
		t.Fatal("tryLock of a key held by lock succeeded")
	}
	again()
	if len(k.m) != 0 {
		t.Errorf("keys left: %v", k.m)
	}
}
