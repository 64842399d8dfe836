package rpc

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
	"github.com/hsmkit/cryptech-backup/sim"
)

// servedWithLimits is served with other limits on what a connection holds.
func servedWithLimits(t *testing.T, lim frontend.Limits) (string, *Server) {
	t.Helper()
	// Set before Serve: no connection reads them yet.
	addr, srv, _, _ := servedHSM(t, testOptions, func(s *Server) { s.front.Limits = lim })
	return addr, srv
}

// importCost is what an EXT_IMPORT_ADD's key counts against the front
// end's limit.
func importCost(r *wire.ExtImportAddRequest, attrs []hsmapi.Attribute) int {
	req, err := importRequestOf(r, attrs, func() error { return nil })
	if err != nil {
		panic(err)
	}
	return frontend.ImportCost(req)
}

// uuidN is a UUID that is not reserved.
func uuidN(i int) []byte {
	id := bytes.Repeat([]byte{0x42}, 16)
	id[0], id[1], id[2] = byte(i>>16), byte(i>>8), byte(i)
	return id
}

// TestImportBatchNeedsLogin checks that the import batch functions are
// refused, before anything is held, to a connection not logged in as the
// normal user or wheel (as PKEY_IMPORT is), and that a logout drops the
// batches.
func TestImportBatchNeedsLogin(t *testing.T) {
	addr, srv := served(t)
	r := dialRaw(t, addr)
	add := &wire.ExtImportAddRequest{Batch: 1, UUID: uuidN(1), Label: "x", SPKI: make([]byte, 1000)}
	refused := func(who string) {
		t.Helper()
		if st := r.call(wire.FuncExtImportBegin, &wire.ExtImportBeginRequest{KEKEK: uuidN(0)}, nil); st != wire.StatusForbidden {
			t.Errorf("%s: EXT_IMPORT_BEGIN: %v, want FORBIDDEN", who, st)
		}
		if st := r.call(wire.FuncExtImportAdd, add, nil); st != wire.StatusForbidden {
			t.Errorf("%s: EXT_IMPORT_ADD: %v, want FORBIDDEN", who, st)
		}
		if st := r.call(wire.FuncExtImportCommit, &wire.ExtImportCommitRequest{Batch: 1}, nil); st != wire.StatusForbidden {
			t.Errorf("%s: EXT_IMPORT_COMMIT: %v, want FORBIDDEN", who, st)
		}
		if st := srv.Stats(); st.ImportBatches != 0 || st.ImportBytes != 0 {
			t.Errorf("%s: the server holds %+v", who, st)
		}
	}
	refused("not logged in")
	if st := r.call(wire.FuncLogin, &wire.LoginRequest{User: uint32(hsmapi.UserSO), PIN: []byte("so-pin")}, &wire.LoginResponse{}); st != wire.StatusOK {
		t.Fatalf("login as SO: %v", st)
	}
	refused("the security officer")

	// The normal user may; a logout drops what it held.
	if st := r.call(wire.FuncLogout, nil, &wire.LogoutResponse{}); st != wire.StatusOK {
		t.Fatal(st)
	}
	if st := r.call(wire.FuncLogin, &wire.LoginRequest{User: uint32(hsmapi.UserNormal), PIN: userPIN}, &wire.LoginResponse{}); st != wire.StatusOK {
		t.Fatalf("login: %v", st)
	}
	var begin wire.ExtImportBeginResponse
	if st := r.call(wire.FuncExtImportBegin, &wire.ExtImportBeginRequest{KEKEK: uuidN(0)}, &begin); st != wire.StatusOK {
		t.Fatalf("EXT_IMPORT_BEGIN logged in: %v", st)
	}
	add.Batch = begin.Batch
	if st := r.call(wire.FuncExtImportAdd, add, nil); st != wire.StatusOK {
		t.Fatalf("EXT_IMPORT_ADD logged in: %v", st)
	}
	if st := srv.Stats(); st.ImportBatches != 1 || st.ImportBytes != importCost(add, nil) {
		t.Errorf("with a batch of one key the server holds %+v, want %d bytes", st, importCost(add, nil))
	}
	if st := r.call(wire.FuncLogout, nil, &wire.LogoutResponse{}); st != wire.StatusOK {
		t.Fatal(st)
	}
	if st := srv.Stats(); st.ImportBatches != 0 || st.ImportBytes != 0 {
		t.Errorf("after LOGOUT the server holds %+v", st)
	}
	refused("logged out")
}

// TestConnectionLimits fills, on one connection, every table a connection
// may fill: the refusals have their documented status, the connection goes
// on, freeing makes room again, a well-behaved client on another connection
// notices nothing, and once the connection is closed nothing is held.
func TestConnectionLimits(t *testing.T) {
	lim := frontend.Limits{KeyHandles: 8, HashHandles: frontend.DefaultLimits.HashHandles, Batches: frontend.DefaultLimits.Batches, BatchKeys: 100, BatchBytes: 256 << 10}
	addr, srv := servedWithLimits(t, lim)
	good := startGoodClient(t, addr)
	base := srv.Stats()

	t.Run("hash handles", func(t *testing.T) {
		// Hashes need no login.
		r := dialRaw(t, addr)
		var first wire.HashInitializeResponse
		for i := range lim.HashHandles {
			var h wire.HashInitializeResponse
			if st := r.call(wire.FuncHashInitialize, &wire.HashInitializeRequest{Alg: 3}, &h); st != wire.StatusOK {
				t.Fatalf("HASH_INITIALIZE %d: %v", i, st)
			}
			if i == 0 {
				first = h
			}
		}
		if st := r.call(wire.FuncHashInitialize, &wire.HashInitializeRequest{Alg: 3, HMACKey: []byte("k")}, nil); st != wire.StatusAllocationFailure {
			t.Errorf("HASH_INITIALIZE %d: %v, want ALLOCATION_FAILURE", lim.HashHandles+1, st)
		}
		if st := srv.Stats(); st.HashHandles != lim.HashHandles {
			t.Errorf("the server holds %+v", st)
		}
		good.check()
		if st := r.call(wire.FuncHashFinalize, &wire.HashFinalizeRequest{Hash: first.Hash, Len: 32}, &wire.HashFinalizeResponse{}); st != wire.StatusOK {
			t.Fatal(st)
		}
		if st := r.call(wire.FuncHashInitialize, &wire.HashInitializeRequest{Alg: 3}, &wire.HashInitializeResponse{}); st != wire.StatusOK {
			t.Errorf("HASH_INITIALIZE after a HASH_FINALIZE: %v", st)
		}
		r.nc.Close()
		waitStats(t, srv, base)
	})

	t.Run("key handles", func(t *testing.T) {
		r := dialRaw(t, addr)
		if st := r.call(wire.FuncLogin, &wire.LoginRequest{User: uint32(hsmapi.UserNormal), PIN: userPIN}, &wire.LoginResponse{}); st != wire.StatusOK {
			t.Fatalf("login: %v", st)
		}
		var first wire.PkeyOpenResponse
		for i := range lim.KeyHandles {
			var o wire.PkeyOpenResponse
			if st := r.call(wire.FuncPkeyOpen, &wire.PkeyOpenRequest{UUID: good.key.UUID[:]}, &o); st != wire.StatusOK {
				t.Fatalf("PKEY_OPEN %d: %v", i, st)
			}
			if i == 0 {
				first = o
			}
		}
		for _, tc := range []struct {
			f    wire.Func
			args wire.Args
		}{
			{wire.FuncPkeyOpen, &wire.PkeyOpenRequest{UUID: good.key.UUID[:]}},
			{wire.FuncPkeyLoad, &wire.PkeyLoadRequest{DER: good.key.PublicKey}},
			{wire.FuncPkeyGenerateEC, &wire.PkeyGenerateECRequest{Curve: uint32(hsmapi.CurveP256), Flags: uint32(hsmapi.FlagDigitalSignature | hsmapi.FlagToken)}},
		} {
			if st := r.call(tc.f, tc.args, nil); st != wire.StatusNoKeySlotsAvailable {
				t.Errorf("%v with %d key handles open: %v, want NO_KEY_SLOTS_AVAILABLE", tc.f, lim.KeyHandles, st)
			}
		}
		// A refused PKEY_GENERATE_EC stored nothing.
		if keys, err := good.c.Keys(ctx, hsmapi.Filter{}); err != nil || len(keys) != 1 {
			t.Errorf("after the refusals the HSM holds %d keys (%v), want 1", len(keys), err)
		}
		if st := srv.Stats(); st.PkeyHandles != base.PkeyHandles+lim.KeyHandles {
			t.Errorf("the server holds %+v", st)
		}
		good.check()
		if st := r.call(wire.FuncPkeyClose, &wire.PkeyCloseRequest{Pkey: first.Pkey}, &wire.PkeyCloseResponse{}); st != wire.StatusOK {
			t.Fatal(st)
		}
		if st := r.call(wire.FuncPkeyOpen, &wire.PkeyOpenRequest{UUID: good.key.UUID[:]}, &wire.PkeyOpenResponse{}); st != wire.StatusOK {
			t.Errorf("PKEY_OPEN after a PKEY_CLOSE: %v", st)
		}
		r.nc.Close()
		waitStats(t, srv, base)
	})

	t.Run("import batches", func(t *testing.T) {
		r := dialRaw(t, addr)
		if st := r.call(wire.FuncLogin, &wire.LoginRequest{User: uint32(hsmapi.UserNormal), PIN: userPIN}, &wire.LoginResponse{}); st != wire.StatusOK {
			t.Fatalf("login: %v", st)
		}
		batches := make([]uint32, lim.Batches)
		for i := range batches {
			var b wire.ExtImportBeginResponse
			if st := r.call(wire.FuncExtImportBegin, &wire.ExtImportBeginRequest{KEKEK: uuidN(0)}, &b); st != wire.StatusOK {
				t.Fatalf("EXT_IMPORT_BEGIN %d: %v", i, st)
			}
			batches[i] = b.Batch
		}
		if st := r.call(wire.FuncExtImportBegin, &wire.ExtImportBeginRequest{KEKEK: uuidN(0)}, nil); st != wire.StatusAllocationFailure {
			t.Errorf("EXT_IMPORT_BEGIN %d: %v, want ALLOCATION_FAILURE", lim.Batches+1, st)
		}

		// Keys in one batch.
		small := &wire.ExtImportAddRequest{Batch: batches[0], Label: "small", SPKI: make([]byte, 100)}
		for i := range lim.BatchKeys {
			small.UUID = uuidN(i)
			if st := r.call(wire.FuncExtImportAdd, small, nil); st != wire.StatusOK {
				t.Fatalf("EXT_IMPORT_ADD %d: %v", i, st)
			}
		}
		small.UUID = uuidN(lim.BatchKeys)
		if st := r.call(wire.FuncExtImportAdd, small, nil); st != wire.StatusAllocationFailure {
			t.Errorf("key %d of a batch: %v, want ALLOCATION_FAILURE", lim.BatchKeys+1, st)
		}

		// Bytes in all batches: as many big keys as fit, and no more.
		held := srv.Stats().ImportBytes
		if held != lim.BatchKeys*importCost(small, nil) {
			t.Errorf("%d small keys hold %d bytes, want %d", lim.BatchKeys, held, lim.BatchKeys*importCost(small, nil))
		}
		big := &wire.ExtImportAddRequest{Batch: batches[1], SPKI: make([]byte, wire.MaxPacket-200)}
		big.UUID = uuidN(0)
		fit := (lim.BatchBytes - held) / importCost(big, nil)
		for i := range fit {
			big.UUID = uuidN(i)
			if st := r.call(wire.FuncExtImportAdd, big, nil); st != wire.StatusOK {
				t.Fatalf("big key %d of %d that fit: %v", i, fit, st)
			}
		}
		big.UUID = uuidN(fit)
		for _, b := range batches[1:] {
			big.Batch = b
			if st := r.call(wire.FuncExtImportAdd, big, nil); st != wire.StatusAllocationFailure {
				t.Errorf("a big key past %d bytes: %v, want ALLOCATION_FAILURE", lim.BatchBytes, st)
			}
		}
		st := srv.Stats()
		if st.ImportBatches != lim.Batches || st.ImportBytes != held+fit*importCost(big, nil) || st.ImportBytes > lim.BatchBytes {
			t.Errorf("the server holds %+v", st)
		}
		// The connection goes on, and so does everybody else.
		var v wire.GetVersionResponse
		if st := r.call(wire.FuncGetVersion, nil, &v); st != wire.StatusOK || v.Version != Version {
			t.Fatalf("GET_VERSION after the refusals: %v", st)
		}
		good.check()

		// A commit frees its batch, failed or not (these are no keys).
		if st := r.call(wire.FuncExtImportCommit, &wire.ExtImportCommitRequest{Batch: batches[1]}, nil); st == wire.StatusOK {
			t.Error("a batch of junk committed")
		}
		if st := srv.Stats(); st.ImportBatches != lim.Batches-1 || st.ImportBytes != held {
			t.Errorf("after a commit the server holds %+v, want %d bytes", st, held)
		}
		big.Batch = batches[2]
		if st := r.call(wire.FuncExtImportAdd, big, nil); st != wire.StatusOK {
			t.Errorf("a big key after a commit: %v", st)
		}

		// Hanging up drops the rest.
		r.nc.Close()
		waitStats(t, srv, base)
	})

	good.finish()
	waitStats(t, srv, base)
}

// TestWrongPINsTakeTurns sends wrong PINs on several connections at once:
// the HSM checks them one at a time, each with its delay, so they take as
// long as one after the other. Shutdown does not wait out the queue: the
// logins still waiting give up (NOT_READY, or the connection closes).
func TestWrongPINsTakeTurns(t *testing.T) {
	const conns, delay = 4, 100 * time.Millisecond
	addr, srv, _, _ := servedHSM(t, hsm.Options{WrongPINDelay: delay, PINIterations: 1000})
	wrong := &wire.LoginRequest{User: uint32(hsmapi.UserNormal), PIN: []byte("wrong-pin")}

	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		r := dialRaw(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st := r.call(wire.FuncLogin, wrong, nil); st != wire.StatusPINIncorrect {
				t.Errorf("a wrong PIN: %v, want PIN_INCORRECT", st)
			}
		}()
	}
	wg.Wait()
	if elapsed := time.Since(start); elapsed < conns*delay {
		t.Errorf("%d wrong PINs on %d connections took %v, less than %d delays of %v", conns, conns, elapsed, conns, delay)
	}

	// Queue many, then shut down.
	const queued = 20
	answered := make(chan wire.Status, queued)
	for range queued {
		r := dialRaw(t, addr)
		r.send(wire.EncodeRequest(wire.FuncLogin, 0, wrong))
		go func() {
			r.nc.SetReadDeadline(time.Now().Add(ioTimeout))
			frame, err := r.fr.ReadFrame()
			if err != nil {
				answered <- wire.StatusRPCTransport // closed without an answer
				return
			}
			_, st, _ := wire.DecodeResponse(frame, nil)
			answered <- st
		}()
	}
	time.Sleep(delay / 2)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start = time.Now()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > queued*delay/2 {
		t.Errorf("Shutdown took %v with %d wrong PINs queued", elapsed, queued)
	}
	for range queued {
		switch st := <-answered; st {
		case wire.StatusPINIncorrect, wire.StatusNotReady, wire.StatusRPCTransport:
		default:
			t.Errorf("a queued wrong PIN at shutdown: %v", st)
		}
	}
}

// The bounds of the extension messages hold what the front end and the
// emulator may send: a batch the front end lets a client fill, a label, a
// list of damaged blocks.
func TestBatchLimitFitsTheWire(t *testing.T) {
	if frontend.DefaultLimits.BatchKeys > wire.MaxImportBatch {
		t.Errorf("a batch holds %d keys, EXT_IMPORT_COMMIT answers for %d", frontend.DefaultLimits.BatchKeys, wire.MaxImportBatch)
	}
	if hsmapi.MaxRawLabelLength > wire.MaxLabel {
		t.Errorf("a label has up to %d bytes, EXT_IMPORT_ADD carries %d", hsmapi.MaxRawLabelLength, wire.MaxLabel)
	}
	if sim.MaxBlocks > wire.MaxDamagedBlocks {
		t.Errorf("a flash has up to %d blocks, EXT_DAMAGED tells of %d", sim.MaxBlocks, wire.MaxDamagedBlocks)
	}
}
