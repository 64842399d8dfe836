package rpc

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// goodClient is a well-behaved client that keeps signing in the background
// while a test abuses the server on other connections.
type goodClient struct {
	t   *testing.T
	c   *Client
	key hsmapi.KeyInfo

	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	n    int
	err  error
}

func startGoodClient(t *testing.T, addr string) *goodClient {
	t.Helper()
	c := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	k, err := c.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken, Label: "good"})
	if err != nil {
		t.Fatal(err)
	}
	g := &goodClient{t: t, c: c, key: k, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for i := 0; ; i++ {
			select {
			case <-g.stop:
				return
			default:
			}
			err := g.signOnce(i)
			g.mu.Lock()
			g.n++
			if err != nil && g.err == nil {
				g.err = err
			}
			g.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return g
}

func (g *goodClient) signOnce(i int) error {
	d := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
	sig, err := g.c.Sign(ctx, g.key.UUID, d[:], crypto.SHA256)
	if err != nil {
		return err
	}
	return hsmapi.VerifySignature(g.key.PublicKey, d[:], sig, crypto.SHA256)
}

// check fails the test if the good client has failed, and signs once more
// in the foreground.
func (g *goodClient) check() {
	g.t.Helper()
	g.mu.Lock()
	err := g.err
	g.mu.Unlock()
	if err != nil {
		g.t.Fatalf("the well-behaved client noticed: %v", err)
	}
	if err := g.signOnce(-1); err != nil {
		g.t.Fatalf("the well-behaved client's sign failed: %v", err)
	}
}

// finish stops the background loop and reports how many signatures it made.
func (g *goodClient) finish() int {
	g.t.Helper()
	close(g.stop)
	<-g.done
	g.check()
	return g.n
}

// waitStats polls the server's counts until they equal want.
func waitStats(t *testing.T, srv *Server, want Stats) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := srv.Stats()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server holds %+v, want %+v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServerRobustness abuses the server on several connections while a
// well-behaved client keeps signing on its own: bad frames end only their
// connection, bad requests get a status and leave theirs usable, and
// nothing is left behind.
func TestServerRobustness(t *testing.T) {
	addr, srv := served(t)
	good := startGoodClient(t, addr)
	base := srv.Stats()
	if base.Conns != 1 || base.LoggedIn != 1 {
		t.Fatalf("with one client logged in the server holds %+v", base)
	}

	t.Run("bad escape", func(t *testing.T) {
		for _, frame := range [][]byte{
			// ESC followed by an ordinary byte, then more of the frame.
			{0xC0, 0, 0, 0, 0, 0, 0, 0, 7, 0xDB, 0x01, 0x02, 0xC0},
			// ESC followed by END.
			{0xC0, 0, 0, 0, 0, 0xDB, 0xC0},
			// ESC ESC.
			{0xC0, 0, 0, 0, 0, 0, 0, 0, 0, 0xDB, 0xDB, 0xDC, 0xC0},
		} {
			r := dialRaw(t, addr)
			r.write(frame)
			if !r.expectClosedOrStatus() {
				// Answered with a status: the connection must still work.
				var v wire.GetVersionResponse
				if st := r.call(wire.FuncGetVersion, nil, &v); st != wire.StatusOK || v.Version != Version {
					t.Fatalf("GET_VERSION after a bad frame: %v, %#x", st, v.Version)
				}
			}
			good.check()
		}
	})

	t.Run("oversized packet", func(t *testing.T) {
		// A payload of exactly MaxPacket bytes is a packet: it is answered
		// (a GET_VERSION with bytes left over is a protocol error).
		r := dialRaw(t, addr)
		full := append(wire.EncodeRequest(wire.FuncGetVersion, 0, nil), make([]byte, wire.MaxPacket-8)...)
		if st := r.checkAnswer(wire.FuncGetVersion, r.roundTrip(full), nil); st != wire.StatusRPCProtocolError {
			t.Errorf("a %d-byte GET_VERSION: %v, want RPC_PROTOCOL_ERROR", len(full), st)
		}
		good.check()
		// One byte more is not, nor is much more, nor a frame whose
		// escapes put twice MaxPacket on the wire.
		for _, payload := range [][]byte{
			append(wire.EncodeRequest(wire.FuncGetRandom, 0, &wire.GetRandomRequest{N: 16}), make([]byte, wire.MaxPacket-11)...),
			append(wire.EncodeRequest(wire.FuncGetRandom, 0, &wire.GetRandomRequest{N: 16}), make([]byte, 4*wire.MaxPacket)...),
			append(wire.EncodeRequest(wire.FuncPkeySign, 0, &wire.PkeySignRequest{Pkey: 1, Max: 64}), bytes.Repeat([]byte{0xC0}, wire.MaxPacket)...),
		} {
			r := dialRaw(t, addr)
			r.send(payload)
			if !r.expectClosedOrStatus() {
				var v wire.GetVersionResponse
				if st := r.call(wire.FuncGetVersion, nil, &v); st != wire.StatusOK {
					t.Fatalf("GET_VERSION after an oversized frame: %v", st)
				}
			}
			good.check()
		}
	})

	t.Run("unknown function", func(t *testing.T) {
		r := dialRaw(t, addr)
		// The function after the last extension, whichever that is.
		var afterExt wire.Func
		for f := range handlers {
			afterExt = max(afterExt, f+1)
		}
		for _, f := range []wire.Func{32, 99, 0xFFFF, afterExt, 0x20000, 0xFFFFFFFF} {
			if st := r.call(f, nil, nil); st != wire.StatusRPCBadFunction {
				t.Errorf("function %#x: %v, want RPC_BAD_FUNCTION", uint32(f), st)
			}
			// With arguments, too.
			payload := append(wire.EncodeRequest(f, 0, nil), 0, 0, 0, 1, 0, 0, 0, 0)
			if st := r.checkAnswer(f, r.roundTrip(payload), nil); st != wire.StatusRPCBadFunction {
				t.Errorf("function %#x with arguments: %v, want RPC_BAD_FUNCTION", uint32(f), st)
			}
		}
		var v wire.GetVersionResponse
		if st := r.call(wire.FuncGetVersion, nil, &v); st != wire.StatusOK || v.Version != Version {
			t.Fatalf("GET_VERSION after unknown functions: %v, %#x", st, v.Version)
		}
		good.check()
	})

	t.Run("truncated XDR", func(t *testing.T) {
		r := dialRaw(t, addr)
		login := wire.EncodeRequest(wire.FuncLogin, 0, &wire.LoginRequest{User: uint32(hsmapi.UserNormal), PIN: userPIN})
		sign := wire.EncodeRequest(wire.FuncPkeySign, 0, &wire.PkeySignRequest{Pkey: 1, Data: make([]byte, 32), Max: 256})
		addKey := wire.EncodeRequest(wire.FuncExtImportAdd, 0, &wire.ExtImportAddRequest{Batch: 1, UUID: make([]byte, 16), Label: "x", PKCS8: []byte{1, 2, 3}})
		load := wire.EncodeRequest(wire.FuncExtLoadSecret, 0, &wire.ExtLoadSecretRequest{
			ExtGenerateSecretRequest: wire.ExtGenerateSecretRequest{Bits: 128, Flags: 4}, Value: make([]byte, 16)})
		loadLong := wire.EncodeRequest(wire.FuncExtLoadSecret, 0, &wire.ExtLoadSecretRequest{
			ExtGenerateSecretRequest: wire.ExtGenerateSecretRequest{Bits: 264, Flags: 4}, Value: make([]byte, 33)})
		cand := wire.EncodeRequest(wire.FuncExtTrustCandidate, 0, &wire.ExtTrustCandidateRequest{Previous: make([]byte, 16)})
		candLong := wire.EncodeRequest(wire.FuncExtTrustCandidate, 0, &wire.ExtTrustCandidateRequest{Previous: make([]byte, 17)})
		refusal := wire.EncodeRequest(wire.FuncExtRefusal, 0, nil)
		backup := wire.EncodeRequest(wire.FuncExtMasterKeyBackup, 0, &wire.ExtMasterKeyBackupRequest{ID: "m", Threshold: 1, Shares: 1,
			Passphrases: [][]byte{[]byte("a long passphrase")}, KDFTime: 1, KDFMemoryKiB: 64, KDFThreads: 1})
		backupLong := wire.EncodeRequest(wire.FuncExtMasterKeyBackup, 0, &wire.ExtMasterKeyBackupRequest{ID: "m", Threshold: 1, Shares: 1,
			Passphrases: [][]byte{make([]byte, wire.MaxPassphrase+1)}})
		submit := wire.EncodeRequest(wire.FuncExtRestoreSubmit, 0, &wire.ExtRestoreSubmitRequest{Sealed: make([]byte, 100)})
		retire := wire.EncodeRequest(wire.FuncExtMasterKeyRetire, 0, &wire.ExtMasterKeyRetireRequest{CheckValue: make([]byte, 9)})
		upload := wire.EncodeRequest(wire.FuncExtUpload, 0, &wire.ExtUploadRequest{Offset: 0, Data: make([]byte, 64)})
		uploadFar := wire.EncodeRequest(wire.FuncExtUpload, 0, &wire.ExtUploadRequest{Offset: 1 << 20, Data: make([]byte, 64)})
		download := wire.EncodeRequest(wire.FuncExtDownload, 0, &wire.ExtDownloadRequest{Offset: 1})
		storeKeys := wire.EncodeRequest(wire.FuncExtStoreKeys, 0, nil)
		list := wire.EncodeRequest(wire.FuncExtListKeys, 0, &wire.ExtListKeysRequest{Type: 3,
			Attributes: []wire.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte("label")}}})
		listMany := append(wire.EncodeRequest(wire.FuncExtListKeys, 0, &wire.ExtListKeysRequest{})[:24], 0xFF, 0xFF, 0xFF, 0xFF)
		for _, tc := range []struct {
			name    string
			payload []byte
			f       wire.Func
			want    wire.Status
		}{
			{"LOGIN with the PIN cut", login[:len(login)-4], wire.FuncLogin, wire.StatusXDRBufferOverflow},
			{"LOGIN with the PIN's length cut", login[:14], wire.FuncLogin, wire.StatusXDRBufferOverflow},
			{"LOGIN without its PIN", login[:12], wire.FuncLogin, wire.StatusXDRBufferOverflow},
			{"LOGIN with no arguments", login[:8], wire.FuncLogin, wire.StatusXDRBufferOverflow},
			{"PKEY_SIGN without max", sign[:len(sign)-4], wire.FuncPkeySign, wire.StatusXDRBufferOverflow},
			{"PKEY_SIGN with max cut", sign[:len(sign)-1], wire.FuncPkeySign, wire.StatusXDRBufferOverflow},
			{"PKEY_SIGN with its data cut", sign[:30], wire.FuncPkeySign, wire.StatusXDRBufferOverflow},
			{"EXT_IMPORT_ADD cut", addKey[:len(addKey)-4], wire.FuncExtImportAdd, wire.StatusXDRBufferOverflow},
			{"EXT_LOAD_SECRET with its value cut", load[:len(load)-4], wire.FuncExtLoadSecret, wire.StatusXDRBufferOverflow},
			{"EXT_LOAD_SECRET without its value", load[:len(load)-20], wire.FuncExtLoadSecret, wire.StatusXDRBufferOverflow},
			{"EXT_LOAD_SECRET with a 33-byte value", loadLong, wire.FuncExtLoadSecret, wire.StatusRPCProtocolError},
			{"EXT_LOAD_SECRET with a byte left over", append(bytes.Clone(load), 0), wire.FuncExtLoadSecret, wire.StatusRPCProtocolError},
			{"EXT_TRUST_CANDIDATE cut", cand[:len(cand)-4], wire.FuncExtTrustCandidate, wire.StatusXDRBufferOverflow},
			{"EXT_TRUST_CANDIDATE with a 17-byte UUID", candLong, wire.FuncExtTrustCandidate, wire.StatusRPCProtocolError},
			{"EXT_REFUSAL with an argument", append(bytes.Clone(refusal), 0, 0, 0, 1), wire.FuncExtRefusal, wire.StatusRPCProtocolError},
			{"EXT_MASTERKEY_BACKUP cut", backup[:len(backup)-4], wire.FuncExtMasterKeyBackup, wire.StatusXDRBufferOverflow},
			{"EXT_MASTERKEY_BACKUP with a passphrase cut", backup[:30], wire.FuncExtMasterKeyBackup, wire.StatusXDRBufferOverflow},
			{"EXT_MASTERKEY_BACKUP with a passphrase too long", backupLong, wire.FuncExtMasterKeyBackup, wire.StatusRPCProtocolError},
			{"EXT_RESTORE_SUBMIT cut", submit[:len(submit)-4], wire.FuncExtRestoreSubmit, wire.StatusXDRBufferOverflow},
			{"EXT_RESTORE_SUBMIT with a byte left over", append(bytes.Clone(submit), 0), wire.FuncExtRestoreSubmit, wire.StatusRPCProtocolError},
			{"EXT_MASTERKEY_RETIRE with a 9-byte check value", retire, wire.FuncExtMasterKeyRetire, wire.StatusRPCProtocolError},
			{"EXT_UPLOAD cut", upload[:len(upload)-4], wire.FuncExtUpload, wire.StatusXDRBufferOverflow},
			{"EXT_UPLOAD past its end", uploadFar, wire.FuncExtUpload, wire.StatusBadArguments},
			{"EXT_DOWNLOAD past its end", download, wire.FuncExtDownload, wire.StatusBadArguments},
			{"EXT_DOWNLOAD cut", download[:len(download)-1], wire.FuncExtDownload, wire.StatusXDRBufferOverflow},
			{"EXT_STORE_KEYS with an argument", append(bytes.Clone(storeKeys), 0, 0, 0, 1), wire.FuncExtStoreKeys, wire.StatusRPCProtocolError},
			{"EXT_LIST_KEYS cut", list[:len(list)-4], wire.FuncExtListKeys, wire.StatusXDRBufferOverflow},
			{"EXT_LIST_KEYS without its attributes", list[:24], wire.FuncExtListKeys, wire.StatusXDRBufferOverflow},
			{"EXT_LIST_KEYS with 2^32-1 attributes", listMany, wire.FuncExtListKeys, wire.StatusXDRBufferOverflow},
			{"EXT_LIST_KEYS with a byte left over", append(bytes.Clone(list), 0), wire.FuncExtListKeys, wire.StatusRPCProtocolError},
			{"a header cut", login[:6], wire.FuncLogin, wire.StatusXDRBufferOverflow},
			{"LOGIN with a byte left over", append(bytes.Clone(login), 0), wire.FuncLogin, wire.StatusRPCProtocolError},
			{"LOGIN with a PIN longer than a packet", append(bytes.Clone(login[:12]), 0xFF, 0xFF, 0xFF, 0xFF), wire.FuncLogin, wire.StatusRPCProtocolError},
			{"LOGIN with nonzero padding", badlyPaddedLogin(), wire.FuncLogin, wire.StatusRPCProtocolError},
		} {
			if st := r.checkAnswer(tc.f, r.roundTrip(tc.payload), nil); st != tc.want {
				t.Errorf("%s: %v, want %v", tc.name, st, tc.want)
			}
		}
		// None of that logged the connection in, and it still works.
		if st := r.call(wire.FuncIsLoggedIn, &wire.IsLoggedInRequest{User: uint32(hsmapi.UserNormal)}, nil); st != wire.StatusForbidden {
			t.Errorf("IS_LOGGED_IN after truncated LOGINs: %v, want FORBIDDEN", st)
		}
		if st := r.call(wire.FuncLogin, &wire.LoginRequest{User: uint32(hsmapi.UserNormal), PIN: userPIN}, &wire.LoginResponse{}); st != wire.StatusOK {
			t.Fatalf("LOGIN after truncated requests: %v", st)
		}
		if st := r.call(wire.FuncIsLoggedIn, &wire.IsLoggedInRequest{User: uint32(hsmapi.UserNormal)}, &wire.IsLoggedInResponse{}); st != wire.StatusOK {
			t.Errorf("IS_LOGGED_IN after LOGIN: %v", st)
		}
		good.check()
	})

	t.Run("garbage and hang-ups", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		var wg sync.WaitGroup
		// Random bytes, with the answers to whatever frames they hold
		// read and thrown away.
		for i := range 4 {
			r := dialRaw(t, addr)
			junk := make([]byte, 64<<10)
			for j := range junk {
				junk[j] = byte(rng.Uint32())
				if i == 1 && j%97 == 0 {
					junk[j] = 0xC0 // SLIP END: many short frames
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, r.nc)
			}()
			r.write(junk)
			r.nc.Close()
		}
		// Hang up in the middle of a frame, of an escape, of a header.
		for _, part := range [][]byte{
			{0xC0, 0, 0, 0},
			{0xC0, 0, 0, 0, 3, 0, 0, 0, 1, 0xDB},
			wire.EncodeRequest(wire.FuncLogin, 0, &wire.LoginRequest{User: 1, PIN: userPIN})[:10],
			wire.AppendFrame(nil, wire.EncodeRequest(wire.FuncLogin, 0, &wire.LoginRequest{User: 1, PIN: userPIN}))[:15],
			{},
		} {
			r := dialRaw(t, addr)
			if len(part) > 0 {
				r.write(part)
			}
			r.nc.Close()
		}
		// Ask for big answers and never read them.
		r := dialRaw(t, addr)
		req := wire.AppendFrame(nil, wire.EncodeRequest(wire.FuncGetRandom, 0, &wire.GetRandomRequest{N: wire.MaxPacket - 64}))
		r.write(bytes.Repeat(req, 64))
		r.nc.Close()
		// Log in, open a hash and a key, hang up.
		r = dialRaw(t, addr)
		if st := r.call(wire.FuncLogin, &wire.LoginRequest{User: uint32(hsmapi.UserNormal), PIN: userPIN}, &wire.LoginResponse{}); st != wire.StatusOK {
			t.Fatalf("login: %v", st)
		}
		if st := r.call(wire.FuncPkeyOpen, &wire.PkeyOpenRequest{UUID: good.key.UUID[:]}, &wire.PkeyOpenResponse{}); st != wire.StatusOK {
			t.Fatalf("open: %v", st)
		}
		if st := r.call(wire.FuncHashInitialize, &wire.HashInitializeRequest{Alg: 3}, &wire.HashInitializeResponse{}); st != wire.StatusOK {
			t.Fatalf("hash: %v", st)
		}
		if st := srv.Stats(); st.LoggedIn != 2 || st.PkeyHandles != base.PkeyHandles+1 || st.HashHandles != 1 {
			t.Errorf("with a second connection logged in, holding a key and a hash: %+v", st)
		}
		r.nc.Close()
		wg.Wait()

		good.check()
		waitStats(t, srv, base)
		// And the server still takes new connections.
		c, err := Dial(ctx, addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})

	n := good.finish()
	t.Logf("the well-behaved client signed %d times meanwhile", n)
	waitStats(t, srv, base)
}

// badlyPaddedLogin is a LOGIN whose PIN's padding is not zero.
func badlyPaddedLogin() []byte {
	p := wire.EncodeRequest(wire.FuncLogin, 0, &wire.LoginRequest{User: 1, PIN: []byte("user-pin-x")})
	p[len(p)-1] = 7
	return p
}
