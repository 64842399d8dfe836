package rpc

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// TestServerLoad runs many clients at once, each on its own connection and
// logged in as the normal user, mixing signatures, key searches and public
// key reads. Nothing may fail, and once the clients are gone the server
// must hold no connection, login or handle, and no goroutine must be left.
func TestServerLoad(t *testing.T) {
	// About 3 s with -race on two cores: no smaller version for -short.
	const clients, ops = 64, 1000
	addr, srv := served(t)

	admin := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	key, err := admin.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken, Label: "load"})
	if err != nil {
		t.Fatal(err)
	}
	// A key the filters leave out.
	if _, err := admin.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken, Label: "other"}); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	waitStats(t, srv, Stats{})
	goroutines := runtime.NumGoroutine()

	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var requests int
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := loadClient(addr, key, w, ops)
			mu.Lock()
			defer mu.Unlock()
			requests += n
			if err != nil {
				t.Errorf("client %d, after %d requests: %v", w, n, err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d clients, %d requests in %v (%.0f/s)", clients, requests, elapsed.Round(time.Millisecond), float64(requests)/elapsed.Seconds())
	if requests < clients*ops {
		t.Errorf("%d requests, want at least %d", requests, clients*ops)
	}

	// The clients have closed their connections: everything they held on
	// the server is gone, and so are the goroutines that served them.
	waitStats(t, srv, Stats{})
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the clients came:\n%s", runtime.NumGoroutine(), goroutines, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loadClient connects, logs in as the normal user and makes ops calls, a
// third each of PKEY_SIGN (through Client.Sign), PKEY_MATCH with a filter
// (raw, and every tenth through Client.Keys) and PKEY_GET_PUBLIC_KEY. It
// checks every answer, closes the connection and returns the number of
// requests sent (not counting the three that open the key).
func loadClient(addr string, key hsmapi.KeyInfo, w, ops int) (requests int, err error) {
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	requests = 2 // GET_VERSION and the extensions' capabilities
	if err := c.Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
		return requests, err
	}
	requests++
	filter := hsmapi.Filter{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256}
	var msg [8]byte
	for i := range ops {
		switch i % 3 {
		case 0:
			binary.BigEndian.PutUint32(msg[:], uint32(w))
			binary.BigEndian.PutUint32(msg[4:], uint32(i))
			d := sha256.Sum256(msg[:])
			sig, err := c.Sign(ctx, key.UUID, d[:], crypto.SHA256)
			requests++
			if err != nil {
				return requests, err
			}
			if i%30 == 0 {
				if err := hsmapi.VerifySignature(key.PublicKey, d[:], sig, crypto.SHA256); err != nil {
					return requests, err
				}
			}
		case 1:
			if i%10 == 1 {
				keys, err := c.Keys(ctx, filter)
				// PKEY_MATCH, then flags, public key and label of the one key.
				requests += 4
				if err != nil {
					return requests, err
				}
				if len(keys) != 1 || keys[0].UUID != key.UUID || !bytes.Equal(keys[0].PublicKey, key.PublicKey) || keys[0].Label != key.Label {
					return requests, fmt.Errorf("Keys(%+v) = %+v", filter, keys)
				}
				continue
			}
			var r wire.PkeyMatchResponse
			err := c.call(wire.FuncPkeyMatch, &wire.PkeyMatchRequest{Type: uint32(filter.Type), Curve: uint32(filter.Curve),
				Max: 16, State: uint32(i), Previous: make([]byte, 16)}, &r)
			requests++
			if err != nil {
				return requests, err
			}
			if r.State != uint32(i)+1 || len(r.UUIDs) != 1 || !bytes.Equal(r.UUIDs[0], key.UUID[:]) {
				return requests, fmt.Errorf("PKEY_MATCH answered state %d, %x", r.State, r.UUIDs)
			}
		case 2:
			k, err := c.openKey(key.UUID)
			if err != nil {
				return requests, err
			}
			var r wire.PkeyGetPublicKeyResponse
			err = c.call(wire.FuncPkeyGetPublicKey, &wire.PkeyGetPublicKeyRequest{Pkey: k.handle, Max: 1024}, &r)
			requests++
			if err != nil {
				return requests, err
			}
			if !bytes.Equal(r.DER, key.PublicKey) {
				return requests, fmt.Errorf("PKEY_GET_PUBLIC_KEY answered %x", r.DER)
			}
		}
	}
	return requests, nil
}
