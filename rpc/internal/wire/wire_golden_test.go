package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/rpc/internal/wiretest"
)

// goldenClient is the client handle in every golden message.
const goldenClient = 7

// A goldenCase says what one line of testdata/golden.txt holds.
type goldenCase struct {
	f      Func
	kind   string // "req", "resp" (status OK) or "err" (status only)
	status Status // for "err"
	value  Args   // the arguments or results; nil for "err"
}

var (
	uuidA   = unhex("00112233445566778899aabbccddeeff")
	uuidB   = unhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
	uuidC   = unhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")
	uuidD   = unhex("0123456789abcdeffedcba9876543210")
	abcHash = unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
	pkcs8   = unhex("30070201000402abcd")
	sig7    = unhex("01020304050607")
)

var unhex = wiretest.Unhex

// goldenCases gives the Go value of every case in testdata/golden.txt.
var goldenCases = map[string]goldenCase{
	"GET_VERSION.req":  {FuncGetVersion, "req", 0, &GetVersionRequest{}},
	"GET_VERSION.resp": {FuncGetVersion, "resp", 0, &GetVersionResponse{Version: 0x01010100}},

	"GET_RANDOM.req":  {FuncGetRandom, "req", 0, &GetRandomRequest{N: 5}},
	"GET_RANDOM.resp": {FuncGetRandom, "resp", 0, &GetRandomResponse{Data: []byte{1, 2, 3, 4, 5}}},

	"SET_PIN.req":  {FuncSetPIN, "req", 0, &SetPINRequest{User: 2, PIN: []byte("so-pin")}},
	"SET_PIN.resp": {FuncSetPIN, "resp", 0, &SetPINResponse{}},

	"LOGIN.req":  {FuncLogin, "req", 0, &LoginRequest{User: 3, PIN: []byte("fnord")}},
	"LOGIN.resp": {FuncLogin, "resp", 0, &LoginResponse{}},
	"LOGIN.err":  {FuncLogin, "err", StatusPINIncorrect, nil},

	"LOGOUT.req":      {FuncLogout, "req", 0, &LogoutRequest{}},
	"LOGOUT.resp":     {FuncLogout, "resp", 0, &LogoutResponse{}},
	"LOGOUT_ALL.req":  {FuncLogoutAll, "req", 0, &LogoutAllRequest{}},
	"LOGOUT_ALL.resp": {FuncLogoutAll, "resp", 0, &LogoutAllResponse{}},

	"IS_LOGGED_IN.req":  {FuncIsLoggedIn, "req", 0, &IsLoggedInRequest{User: 1}},
	"IS_LOGGED_IN.resp": {FuncIsLoggedIn, "resp", 0, &IsLoggedInResponse{}},
	"IS_LOGGED_IN.err":  {FuncIsLoggedIn, "err", StatusForbidden, nil},

	"HASH_GET_DIGEST_LEN.req":  {FuncHashGetDigestLen, "req", 0, &HashGetDigestLenRequest{Alg: 3}},
	"HASH_GET_DIGEST_LEN.resp": {FuncHashGetDigestLen, "resp", 0, &HashGetDigestLenResponse{Len: 32}},

	"HASH_GET_DIGEST_ALGORITHM_ID.req": {FuncHashGetDigestAlgorithmID, "req", 0,
		&HashGetDigestAlgorithmIDRequest{Alg: 3, Max: 256}},
	"HASH_GET_DIGEST_ALGORITHM_ID.resp": {FuncHashGetDigestAlgorithmID, "resp", 0,
		&HashGetDigestAlgorithmIDResponse{DER: unhex("300d06096086480165030402010500")}},

	"HASH_GET_ALGORITHM.req":  {FuncHashGetAlgorithm, "req", 0, &HashGetAlgorithmRequest{Hash: 0x11}},
	"HASH_GET_ALGORITHM.resp": {FuncHashGetAlgorithm, "resp", 0, &HashGetAlgorithmResponse{Alg: 3}},

	"HASH_INITIALIZE.req":       {FuncHashInitialize, "req", 0, &HashInitializeRequest{Session: 0, Alg: 3, HMACKey: []byte("key")}},
	"HASH_INITIALIZE.req.nokey": {FuncHashInitialize, "req", 0, &HashInitializeRequest{Session: 0, Alg: 3}},
	"HASH_INITIALIZE.resp":      {FuncHashInitialize, "resp", 0, &HashInitializeResponse{Hash: 0x11}},

	"HASH_UPDATE.req":  {FuncHashUpdate, "req", 0, &HashUpdateRequest{Hash: 0x11, Data: []byte("abc")}},
	"HASH_UPDATE.resp": {FuncHashUpdate, "resp", 0, &HashUpdateResponse{}},

	"HASH_FINALIZE.req":  {FuncHashFinalize, "req", 0, &HashFinalizeRequest{Hash: 0x11, Len: 32}},
	"HASH_FINALIZE.resp": {FuncHashFinalize, "resp", 0, &HashFinalizeResponse{Digest: abcHash}},
	"HASH_FINALIZE.err":  {FuncHashFinalize, "err", StatusBadArguments, nil},

	"PKEY_LOAD.req":  {FuncPkeyLoad, "req", 0, &PkeyLoadRequest{Session: 0, DER: unhex("3003020100"), Flags: 0x28}},
	"PKEY_LOAD.resp": {FuncPkeyLoad, "resp", 0, &PkeyLoadResponse{Pkey: 0x2a, UUID: uuidA}},

	"PKEY_OPEN.req":  {FuncPkeyOpen, "req", 0, &PkeyOpenRequest{Session: 0, UUID: uuidA}},
	"PKEY_OPEN.resp": {FuncPkeyOpen, "resp", 0, &PkeyOpenResponse{Pkey: 0x2a}},
	"PKEY_OPEN.err":  {FuncPkeyOpen, "err", StatusKeyNotFound, nil},

	"PKEY_GENERATE_RSA.req": {FuncPkeyGenerateRSA, "req", 0,
		&PkeyGenerateRSARequest{Session: 0, KeyLen: 2048, Exponent: []byte{1, 0, 1}, Flags: 9}},
	"PKEY_GENERATE_RSA.resp": {FuncPkeyGenerateRSA, "resp", 0, &PkeyGenerateRSAResponse{Pkey: 0x2b, UUID: uuidB}},

	"PKEY_GENERATE_EC.req":  {FuncPkeyGenerateEC, "req", 0, &PkeyGenerateECRequest{Session: 0, Curve: 1, Flags: 0x29}},
	"PKEY_GENERATE_EC.resp": {FuncPkeyGenerateEC, "resp", 0, &PkeyGenerateECResponse{Pkey: 0x2c, UUID: uuidC}},

	"PKEY_CLOSE.req":   {FuncPkeyClose, "req", 0, &PkeyCloseRequest{Pkey: 0x2a}},
	"PKEY_CLOSE.resp":  {FuncPkeyClose, "resp", 0, &PkeyCloseResponse{}},
	"PKEY_DELETE.req":  {FuncPkeyDelete, "req", 0, &PkeyDeleteRequest{Pkey: 0x2a}},
	"PKEY_DELETE.resp": {FuncPkeyDelete, "resp", 0, &PkeyDeleteResponse{}},
	"PKEY_DELETE.err":  {FuncPkeyDelete, "err", StatusForbidden, nil},

	"PKEY_GET_KEY_TYPE.req":        {FuncPkeyGetKeyType, "req", 0, &PkeyGetKeyTypeRequest{Pkey: 0x2a}},
	"PKEY_GET_KEY_TYPE.resp":       {FuncPkeyGetKeyType, "resp", 0, &PkeyGetKeyTypeResponse{Type: 3}},
	"PKEY_GET_KEY_FLAGS.req":       {FuncPkeyGetKeyFlags, "req", 0, &PkeyGetKeyFlagsRequest{Pkey: 0x2a}},
	"PKEY_GET_KEY_FLAGS.resp":      {FuncPkeyGetKeyFlags, "resp", 0, &PkeyGetKeyFlagsResponse{Flags: 0x29}},
	"PKEY_GET_PUBLIC_KEY_LEN.req":  {FuncPkeyGetPublicKeyLen, "req", 0, &PkeyGetPublicKeyLenRequest{Pkey: 0x2a}},
	"PKEY_GET_PUBLIC_KEY_LEN.resp": {FuncPkeyGetPublicKeyLen, "resp", 0, &PkeyGetPublicKeyLenResponse{Len: 91}},

	"PKEY_GET_PUBLIC_KEY.req":  {FuncPkeyGetPublicKey, "req", 0, &PkeyGetPublicKeyRequest{Pkey: 0x2a, Max: 91}},
	"PKEY_GET_PUBLIC_KEY.resp": {FuncPkeyGetPublicKey, "resp", 0, &PkeyGetPublicKeyResponse{DER: unhex("300403020004")}},
	"PKEY_GET_PUBLIC_KEY.err":  {FuncPkeyGetPublicKey, "err", StatusResultTooLong, nil},

	"PKEY_SIGN.req":  {FuncPkeySign, "req", 0, &PkeySignRequest{Pkey: 0x2a, Hash: 0, Data: abcHash, Max: 64}},
	"PKEY_SIGN.resp": {FuncPkeySign, "resp", 0, &PkeySignResponse{Signature: sig7}},

	"PKEY_VERIFY.req":  {FuncPkeyVerify, "req", 0, &PkeyVerifyRequest{Pkey: 0x2a, Hash: 0x11, Signature: sig7}},
	"PKEY_VERIFY.resp": {FuncPkeyVerify, "resp", 0, &PkeyVerifyResponse{}},
	"PKEY_VERIFY.err":  {FuncPkeyVerify, "err", StatusInvalidSignature, nil},

	"PKEY_MATCH.req": {FuncPkeyMatch, "req", 0, &PkeyMatchRequest{
		Session: 0, Type: 3, Curve: 1, Mask: 0x20, Flags: 0x20,
		Attributes: []Attribute{{Type: 3, Value: []byte("key1")}, {Type: 0x102, Value: []byte{1, 2}}},
		State:      0, Max: 64, Previous: make([]byte, 16),
	}},
	"PKEY_MATCH.resp": {FuncPkeyMatch, "resp", 0, &PkeyMatchResponse{State: 1, UUIDs: [][]byte{uuidA, uuidB}}},
	"PKEY_MATCH.req.noattrs": {FuncPkeyMatch, "req", 0, &PkeyMatchRequest{
		State: 1, Max: 64, Previous: uuidB,
	}},
	"PKEY_MATCH.resp.empty": {FuncPkeyMatch, "resp", 0, &PkeyMatchResponse{State: 1}},

	"PKEY_GET_KEY_CURVE.req":  {FuncPkeyGetKeyCurve, "req", 0, &PkeyGetKeyCurveRequest{Pkey: 0x2a}},
	"PKEY_GET_KEY_CURVE.resp": {FuncPkeyGetKeyCurve, "resp", 0, &PkeyGetKeyCurveResponse{Curve: 1}},

	"PKEY_SET_ATTRIBUTES.req": {FuncPkeySetAttributes, "req", 0, &PkeySetAttributesRequest{
		Pkey:       0x2a,
		Attributes: []Attribute{{Type: 3, Value: []byte("key2")}, {Type: 0x102, Absent: true}},
	}},
	"PKEY_SET_ATTRIBUTES.resp": {FuncPkeySetAttributes, "resp", 0, &PkeySetAttributesResponse{}},

	"PKEY_GET_ATTRIBUTES.req": {FuncPkeyGetAttributes, "req", 0,
		&PkeyGetAttributesRequest{Pkey: 0x2a, Types: []uint32{3, 0x102}, BufferLen: 2048}},
	"PKEY_GET_ATTRIBUTES.resp": {FuncPkeyGetAttributes, "resp", 0, &PkeyGetAttributesResponse{
		Attributes: []Attribute{{Type: 3, Value: []byte("key1")}, {Type: 0x102, Value: []byte{1, 2}}},
	}},
	"PKEY_GET_ATTRIBUTES.err": {FuncPkeyGetAttributes, "err", StatusAttributeNotFound, nil},
	"PKEY_GET_ATTRIBUTES.req.lengths": {FuncPkeyGetAttributes, "req", 0,
		&PkeyGetAttributesRequest{Pkey: 0x2a, Types: []uint32{3, 0x102}, BufferLen: 0}},
	"PKEY_GET_ATTRIBUTES.resp.lengths": {FuncPkeyGetAttributes, "resp", 0, &PkeyGetAttributesResponse{
		LengthsOnly: true,
		Attributes:  []Attribute{{Type: 3, Length: 4}, {Type: 0x102, Absent: true}},
	}},

	"PKEY_EXPORT.req": {FuncPkeyExport, "req", 0,
		&PkeyExportRequest{Pkey: 0x2a, KEKEK: 0x2b, PKCS8Max: 2560, KEKMax: 512}},
	"PKEY_EXPORT.resp": {FuncPkeyExport, "resp", 0, &PkeyExportResponse{PKCS8: pkcs8, KEK: unhex("deadbeef")}},
	"PKEY_EXPORT.err":  {FuncPkeyExport, "err", StatusForbidden, nil},

	"PKEY_IMPORT.req": {FuncPkeyImport, "req", 0,
		&PkeyImportRequest{Session: 0, KEKEK: 0x2b, PKCS8: pkcs8, KEK: unhex("deadbeef"), Flags: 0x29}},
	"PKEY_IMPORT.resp": {FuncPkeyImport, "resp", 0, &PkeyImportResponse{Pkey: 0x2d, UUID: uuidD}},

	"PKEY_GENERATE_HASHSIG.req": {FuncPkeyGenerateHashsig, "req", 0,
		&PkeyGenerateHashsigRequest{Session: 0, L: 2, LMSType: 5, LMOTSType: 3, Flags: 9}},
	"PKEY_GENERATE_HASHSIG.resp": {FuncPkeyGenerateHashsig, "resp", 0, &PkeyGenerateHashsigResponse{Pkey: 0x2e, UUID: uuidC}},
	"PKEY_GENERATE_HASHSIG.err":  {FuncPkeyGenerateHashsig, "err", StatusNotImplemented, nil},

	"BAD_FUNCTION.err": {Func(32), "err", StatusRPCBadFunction, nil},
}

// golden is one line of the golden file.
type golden = wiretest.Golden

func loadGolden(t testing.TB) []golden { return wiretest.Load(t) }

// freshLike returns a zero value of v's type, carrying the one field that
// is not on the wire (PkeyGetAttributesResponse.LengthsOnly).
func freshLike(v Args) Args {
	z := reflect.New(reflect.TypeOf(v).Elem()).Interface().(Args)
	if g, ok := v.(*PkeyGetAttributesResponse); ok {
		z.(*PkeyGetAttributesResponse).LengthsOnly = g.LengthsOnly
	}
	return z
}

func TestGoldenCoverage(t *testing.T) {
	goldens := loadGolden(t)
	inFile := map[string]bool{}
	for _, g := range goldens {
		inFile[g.Name] = true
		if _, ok := goldenCases[g.Name]; !ok {
			t.Errorf("golden.txt has %s but goldenCases does not", g.Name)
		}
	}
	for name := range goldenCases {
		if !inFile[name] {
			t.Errorf("goldenCases has %s but golden.txt does not", name)
		}
		if wiretest.IsRequest(name) != (goldenCases[name].kind == "req") {
			t.Errorf("wiretest.IsRequest(%s) is wrong", name)
		}
	}
	// Every function has a request and an OK response, and there are error
	// responses too.
	have := map[Func]map[string]bool{}
	for name, c := range goldenCases {
		if have[c.f] == nil {
			have[c.f] = map[string]bool{}
		}
		have[c.f][c.kind] = true
		if c.f <= FuncPkeyGenerateHashsig && !strings.HasPrefix(name, c.f.String()+".") {
			t.Errorf("case %s is for %v", name, c.f)
		}
	}
	for f := FuncGetVersion; f <= FuncPkeyGenerateHashsig; f++ {
		if !have[f]["req"] || !have[f]["resp"] {
			t.Errorf("%v: no golden request or response", f)
		}
	}
}

func TestGoldenRequests(t *testing.T) {
	for _, g := range loadGolden(t) {
		c, ok := goldenCases[g.Name]
		if !ok || c.kind != "req" {
			continue
		}
		t.Run(g.Name, func(t *testing.T) {
			if got := EncodeRequest(c.f, goldenClient, c.value); !bytes.Equal(got, g.Data) {
				t.Errorf("encode:\n got %x\nwant %x", got, g.Data)
			}
			h, d, err := DecodeRequestHeader(g.Data)
			if err != nil {
				t.Fatal(err)
			}
			if h != (Header{c.f, goldenClient}) {
				t.Fatalf("header %+v", h)
			}
			args, ok := NewRequest(h.Func)
			if !ok {
				t.Fatalf("NewRequest(%v) = false", h.Func)
			}
			if reflect.TypeOf(args) != reflect.TypeOf(c.value) {
				t.Fatalf("NewRequest(%v) is %T, want %T", h.Func, args, c.value)
			}
			if err := args.DecodeArgs(d); err != nil {
				t.Fatal(err)
			}
			if err := d.Finish(); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(args, c.value) {
				t.Errorf("decode:\n got %+v\nwant %+v", args, c.value)
			}
		})
	}
}

func TestGoldenResponses(t *testing.T) {
	for _, g := range loadGolden(t) {
		c, ok := goldenCases[g.Name]
		if !ok || c.kind == "req" {
			continue
		}
		t.Run(g.Name, func(t *testing.T) {
			if c.kind == "err" {
				testGoldenError(t, c, g.Data)
				return
			}
			if got := EncodeResponse(c.f, goldenClient, StatusOK, c.value); !bytes.Equal(got, g.Data) {
				t.Errorf("encode:\n got %x\nwant %x", got, g.Data)
			}
			results, ok := NewResponse(c.f)
			if !ok {
				t.Fatalf("NewResponse(%v) = false", c.f)
			}
			if reflect.TypeOf(results) != reflect.TypeOf(c.value) {
				t.Fatalf("NewResponse(%v) is %T, want %T", c.f, results, c.value)
			}
			results = freshLike(c.value)
			h, st, err := DecodeResponse(g.Data, results)
			if err != nil {
				t.Fatal(err)
			}
			if h != (Header{c.f, goldenClient}) || st != StatusOK {
				t.Fatalf("header %+v, status %v", h, st)
			}
			if !reflect.DeepEqual(results, c.value) {
				t.Errorf("decode:\n got %+v\nwant %+v", results, c.value)
			}
		})
	}
}

// testGoldenError checks a response that carries only a status.
func testGoldenError(t *testing.T, c goldenCase, data []byte) {
	if got := EncodeResponse(c.f, goldenClient, c.status, nil); !bytes.Equal(got, data) {
		t.Errorf("encode:\n got %x\nwant %x", got, data)
	}
	results, ok := NewResponse(c.f)
	if ok {
		// Results are never sent with a failure, even when given.
		full := goldenResultsFor(t, c.f)
		if got := EncodeResponse(c.f, goldenClient, c.status, full); !bytes.Equal(got, data) {
			t.Errorf("encode with results:\n got %x\nwant %x", got, data)
		}
	} else if c.f <= FuncPkeyGenerateHashsig {
		t.Fatalf("NewResponse(%v) = false", c.f)
	}
	h, st, err := DecodeResponse(data, results)
	if err != nil {
		t.Fatal(err)
	}
	if h != (Header{c.f, goldenClient}) || st != c.status {
		t.Fatalf("header %+v, status %v; want status %v", h, st, c.status)
	}
	if !errors.Is(st, c.status) {
		t.Errorf("errors.Is(%v, %v) = false", st, c.status)
	}
	if results != nil {
		if zero := freshLike(results); !reflect.DeepEqual(results, zero) {
			t.Errorf("results decoded from a failure: %+v", results)
		}
	}
}

// goldenResultsFor returns the OK results of f's golden response.
func goldenResultsFor(t *testing.T, f Func) Args {
	c, ok := goldenCases[f.String()+".resp"]
	if !ok {
		t.Fatalf("no %v.resp", f)
	}
	return c.value
}
