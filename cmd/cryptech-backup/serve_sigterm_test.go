package main

import (
	"bytes"
	"context"
	"crypto"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/rpc"
)

// TestServeStopsWhileHashsigKeysAreDeletedMidSign: as issue 9 found, a
// connection deletes an HSS key while others make its first signature since
// the HSM was opened (which builds the key's top tree first), which wedged
// the HSM; then serve gets SIGTERM in the middle of such a signature and
// must exit.
func TestServeStopsWhileHashsigKeysAreDeletedMidSign(t *testing.T) {
	ctx := context.Background()
	work := t.TempDir()
	dir := filepath.Join(work, "hsm")
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: hsmtest.PIN, SOPIN: hsmtest.PIN, UserPIN: hsmtest.PIN, Blocks: 64}, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	s := h.NewSession()
	if err := s.Login(ctx, hsmapi.UserNormal, hsmtest.PIN); err != nil {
		t.Fatal(err)
	}
	// Keys whose first signature takes a while: a 1024-leaf top tree.
	levels := []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H10, LMOTS: hashsig.LMOTS_SHA256_N32_W4}}
	var keys []hsmapi.KeyInfo
	for range 4 {
		k, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: levels,
			Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	s.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(work, "rpc.sock")
	daemon := exec.Command("cryptech-backup", "serve", "--hsm", dir, "--listen", "unix:"+sock)
	var stderr bytes.Buffer
	daemon.Stderr = &stderr
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = daemon.Wait(); close(exited) }()
	defer func() {
		daemon.Process.Signal(syscall.SIGKILL) // if still there
		<-exited
	}()
	waitFor(t, sock)
	clients := make([]*rpc.Client, 3)
	for i := range clients {
		c, err := rpc.Dial(ctx, "unix:"+sock, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(ctx, hsmapi.UserNormal, hsmtest.PIN); err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	sign := func(c *rpc.Client, id hsmapi.UUID) {
		c.Sign(ctx, id, []byte("message"), crypto.Hash(0)) // made, or refused: the key is gone
	}
	hung := false
	for round, k := range keys[:len(keys)-1] {
		// Every connection opens the key first: opening waits for a
		// signature in progress, deleting must not.
		for _, c := range clients {
			if _, err := c.Key(ctx, k.UUID); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for _, c := range clients[1:] {
			wg.Add(1)
			go func() { defer wg.Done(); sign(c, k.UUID) }()
		}
		time.Sleep(30 * time.Millisecond)
		done := make(chan struct{})
		go func() {
			if err := clients[0].DeleteKey(ctx, k.UUID); err != nil {
				t.Errorf("round %d: delete: %v", round, err)
			}
			wg.Wait()
			close(done)
		}()
		select {
		case <-done:
			continue
		case <-time.After(20 * time.Second):
			t.Errorf("round %d: delete and sign did not finish", round)
			hung = true
		}
		break
	}
	if !hung {
		// SIGTERM with a first signature in flight.
		go sign(clients[1], keys[len(keys)-1].UUID)
		time.Sleep(30 * time.Millisecond)
	}
	daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("serve exited with %v after SIGTERM; stderr:\n%s", waitErr, stderr.String())
		}
	case <-time.After(45 * time.Second):
		daemon.Process.Signal(syscall.SIGKILL)
		<-exited
		t.Errorf("serve did not exit within 45s of SIGTERM; stderr:\n%s", stderr.String())
		return
	}
	// Stopped cleanly: the deleted keys are gone, the other one is there.
	h, err = hsm.Open(dir, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s = h.NewSession()
	defer s.Close()
	if err := s.Login(ctx, hsmapi.UserNormal, hsmtest.PIN); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		_, err := s.Key(ctx, k.UUID)
		if last := i == len(keys)-1; last && err != nil || !last && err == nil {
			t.Errorf("key %d after the restart: %v", i, err)
		}
	}
}
