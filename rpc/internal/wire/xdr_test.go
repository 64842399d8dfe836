package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// statusOfErr returns the Status an error wraps, or a sentinel that is no
// libhal status.
func statusOfErr(err error) Status {
	var st Status
	if errors.As(err, &st) {
		return st
	}
	return 0xFFFFFFFF
}

func TestXDRUint32(t *testing.T) {
	var e Encoder
	e.Uint32(0x01020304)
	e.Uint32(0)
	e.Uint32(0xFFFFFFFF)
	want := unhex("01020304 00000000 ffffffff")
	if !bytes.Equal(e.Data(), want) {
		t.Fatalf("got %x, want %x", e.Data(), want)
	}
	d := NewDecoder(want)
	if a, b, c := d.Uint32(), d.Uint32(), d.Uint32(); a != 0x01020304 || b != 0 || c != 0xFFFFFFFF {
		t.Fatalf("decoded %#x %#x %#x", a, b, c)
	}
	if err := d.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestXDRPadding(t *testing.T) {
	// The data is "abcdefgh"[:n]; written out by hand.
	want := []string{
		0: "00000000",
		1: "00000001 61000000",
		2: "00000002 61620000",
		3: "00000003 61626300",
		4: "00000004 61626364",
		5: "00000005 61626364 65000000",
		6: "00000006 61626364 65660000",
		7: "00000007 61626364 65666700",
		8: "00000008 61626364 65666768",
	}
	for n, w := range want {
		data := []byte("abcdefgh")[:n]
		var e Encoder
		e.Bytes(data)
		if !bytes.Equal(e.Data(), unhex(w)) {
			t.Errorf("len %d: encoded %x, want %s", n, e.Data(), w)
		}
		d := NewDecoder(unhex(w))
		got := d.Bytes(MaxPacket)
		if err := d.Finish(); err != nil {
			t.Errorf("len %d: %v", n, err)
		}
		if !bytes.Equal(got, data) || (n == 0) != (got == nil) {
			t.Errorf("len %d: decoded %q", n, got)
		}
	}
}

func TestXDRNonzeroPadding(t *testing.T) {
	for n := 1; n <= 3; n++ {
		for p := n; p < 4; p++ {
			b := unhex("00000000 61626300")
			b[3] = byte(n)
			b[4+p] = 0x80
			d := NewDecoder(b)
			if got := d.Bytes(MaxPacket); got != nil {
				t.Errorf("len %d, bad pad byte %d: returned %x", n, p, got)
			}
			if st := statusOfErr(d.Err()); st != StatusRPCProtocolError {
				t.Errorf("len %d, bad pad byte %d: err %v", n, p, d.Err())
			}
		}
	}
}

func TestXDRLengthOverMax(t *testing.T) {
	big := make([]byte, 4+MaxPacket+4)
	for _, tc := range []struct {
		name   string
		length uint32
		max    int
		want   Status // 0: no error
	}{
		{"at max", 4, 4, 0},
		{"over max", 5, 4, StatusRPCProtocolError},
		{"zero max", 1, 0, StatusRPCProtocolError},
		{"MaxPacket", MaxPacket, MaxPacket, 0},
		{"over MaxPacket", MaxPacket + 1, MaxPacket, StatusRPCProtocolError},
		{"over MaxPacket, larger max", MaxPacket + 1, 1 << 30, StatusRPCProtocolError},
		{"over MaxPacket, negative max", MaxPacket + 4, -1, StatusRPCProtocolError},
		{"nil marker", 0xFFFFFFFF, MaxPacket, StatusRPCProtocolError},
	} {
		binary.BigEndian.PutUint32(big, tc.length)
		d := NewDecoder(big)
		got := d.Bytes(tc.max)
		if tc.want == 0 {
			if d.Err() != nil || len(got) != int(tc.length) {
				t.Errorf("%s: len %d, err %v", tc.name, len(got), d.Err())
			}
			continue
		}
		if got != nil || statusOfErr(d.Err()) != tc.want {
			t.Errorf("%s: got %d bytes, err %v; want %v", tc.name, len(got), d.Err(), tc.want)
		}
	}
}

func TestXDRShortInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		read func(*Decoder)
	}{
		{"empty uint", "", func(d *Decoder) { d.Uint32() }},
		{"3-byte uint", "000000", func(d *Decoder) { d.Uint32() }},
		{"no length", "", func(d *Decoder) { d.Bytes(MaxPacket) }},
		{"data cut", "00000008 61626364", func(d *Decoder) { d.Bytes(MaxPacket) }},
		{"padding missing", "00000005 61626364 65", func(d *Decoder) { d.Bytes(MaxPacket) }},
		{"padding cut", "00000005 61626364 650000", func(d *Decoder) { d.Bytes(MaxPacket) }},
		{"length beyond input", "00000100 00000000", func(d *Decoder) { d.Bytes(1 << 31) }},
	} {
		d := NewDecoder(unhex(tc.in))
		tc.read(d)
		if st := statusOfErr(d.Err()); st != StatusXDRBufferOverflow {
			t.Errorf("%s: err %v, want XDR_BUFFER_OVERFLOW", tc.name, d.Err())
		}
	}
}

func TestXDRSticky(t *testing.T) {
	d := NewDecoder(unhex("00000009 61 00000001"))
	if b := d.Bytes(MaxPacket); b != nil {
		t.Fatalf("got %x", b)
	}
	first := d.Err()
	if first == nil {
		t.Fatal("no error")
	}
	if v := d.Uint32(); v != 0 {
		t.Errorf("Uint32 after an error = %d", v)
	}
	if b := d.Bytes(MaxPacket); b != nil {
		t.Errorf("Bytes after an error = %x", b)
	}
	if d.Err() != first || d.Finish() != first {
		t.Errorf("error changed: %v, then %v", first, d.Err())
	}
}

func TestXDRFinish(t *testing.T) {
	d := NewDecoder(unhex("00000001 00000002"))
	d.Uint32()
	if d.Err() != nil {
		t.Fatal(d.Err())
	}
	if st := statusOfErr(d.Finish()); st != StatusRPCProtocolError {
		t.Errorf("Finish with 4 bytes left: %v", d.Finish())
	}
}

func TestXDRNoAliasing(t *testing.T) {
	in := EncodeRequest(FuncLogin, 1, &LoginRequest{User: 1, PIN: []byte("fnord")})
	h, d, err := DecodeRequestHeader(in)
	if err != nil || h.Func != FuncLogin {
		t.Fatal(h, err)
	}
	var req LoginRequest
	if err := req.DecodeArgs(d); err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 0xEE
	}
	if string(req.PIN) != "fnord" {
		t.Errorf("decoded PIN aliases the input: %q", req.PIN)
	}
}

// TestXDRBadLengths cuts every golden message at every length, and extends
// it: a cut message runs out of input, an extended one has bytes left over.
// Neither may panic or decode.
func TestXDRBadLengths(t *testing.T) {
	for _, g := range loadGolden(t) {
		c := goldenCases[g.Name]
		for cut := range len(g.Data) {
			if err := decodeGolden(c, g.Data[:cut]); statusOfErr(err) != StatusXDRBufferOverflow {
				t.Errorf("%s cut to %d bytes: %v", g.Name, cut, err)
			}
		}
		for extra := 1; extra <= 8; extra++ {
			in := append(bytes.Clone(g.Data), make([]byte, extra)...)
			if err := decodeGolden(c, in); statusOfErr(err) != StatusRPCProtocolError {
				t.Errorf("%s with %d bytes more: %v", g.Name, extra, err)
			}
		}
	}
}

// decodeGolden decodes in as the kind of message c is.
func decodeGolden(c goldenCase, in []byte) error {
	if c.kind == "req" {
		h, d, err := DecodeRequestHeader(in)
		if err != nil {
			return err
		}
		args, ok := NewRequest(h.Func)
		if !ok {
			return StatusRPCBadFunction
		}
		args.DecodeArgs(d)
		return d.Finish()
	}
	var results Args
	if c.value != nil {
		results = freshLike(c.value)
	} else if r, ok := NewResponse(c.f); ok {
		results = r
	}
	_, _, err := DecodeResponse(in, results)
	return err
}

// TestXDRHugeCounts checks that array counts are bounded by the input left
// before anything is allocated for them.
func TestXDRHugeCounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Func
		req  bool
		in   string
	}{
		{"match attributes", FuncPkeyMatch, true,
			"00000019 00000007 00000000 00000000 00000000 00000000 00000000 40000000 00000000 00000000"},
		{"set attributes", FuncPkeySetAttributes, true,
			"0000001b 00000007 0000002a ffffffff 00000003 00000000"},
		{"get attributes types", FuncPkeyGetAttributes, true,
			"0000001c 00000007 0000002a 3fffffff 00000003 00000000"},
		{"match uuids", FuncPkeyMatch, false,
			"00000019 00000007 00000000 00000001 ffffffff 00000000"},
		{"get attributes values", FuncPkeyGetAttributes, false,
			"0000001c 00000007 00000000 20000000 00000003 00000000"},
	} {
		allocs := testing.AllocsPerRun(10, func() {
			var err error
			if tc.req {
				err = decodeGolden(goldenCase{f: tc.f, kind: "req"}, unhex(tc.in))
			} else {
				err = decodeGolden(goldenCase{f: tc.f, kind: "resp"}, unhex(tc.in))
			}
			if statusOfErr(err) != StatusXDRBufferOverflow {
				t.Errorf("%s: %v", tc.name, err)
			}
		})
		if allocs > 20 {
			t.Errorf("%s: %v allocations", tc.name, allocs)
		}
	}
}
