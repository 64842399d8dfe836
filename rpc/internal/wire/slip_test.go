package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestSLIPAppendFrame(t *testing.T) {
	for _, tc := range []struct{ dst, payload, want string }{
		{"", "", "c0 c0"},
		{"", "61", "c0 61 c0"},
		{"", "c0", "c0 dbdc c0"},
		{"", "db", "c0 dbdd c0"},
		{"", "01 c0 02 db 03", "c0 01 dbdc 02 dbdd 03 c0"},
		{"", "db dc c0 dd", "c0 dbdd dc dbdc dd c0"},
		{"", "c0 c0 db db", "c0 dbdc dbdc dbdd dbdd c0"},
		{"aa bb", "61 62", "aa bb c0 61 62 c0"},
	} {
		dst := unhex(tc.dst)
		got := AppendFrame(dst, unhex(tc.payload))
		if !bytes.Equal(got, unhex(tc.want)) {
			t.Errorf("AppendFrame(%s, %s) = %x, want %s", tc.dst, tc.payload, got, tc.want)
		}
	}
}

// frameStep is one expected result of ReadFrame: a payload in hex, or an
// error.
type frameStep struct {
	frame string
	err   error
}

func checkFrames(t *testing.T, name string, fr *FrameReader, want []frameStep) {
	t.Helper()
	for i, w := range want {
		f, err := fr.ReadFrame()
		if w.err != nil {
			if !errors.Is(err, w.err) {
				t.Errorf("%s: read %d: got %x, %v; want %v", name, i, f, err, w.err)
			}
			continue
		}
		if err != nil || hex.EncodeToString(f) != w.frame {
			t.Errorf("%s: read %d: got %x, %v; want %s", name, i, f, err, w.frame)
		}
	}
}

func TestSLIPFrameReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int
		in   string
		want []frameStep
	}{
		{"leading END", 0, "c0 6162 c0", []frameStep{{frame: "6162"}, {err: io.EOF}}},
		{"no leading END", 0, "6162 c0", []frameStep{{frame: "6162"}, {err: io.EOF}}},
		{"empty frames skipped", 0, "c0 c0 c0 61 c0 c0 c0 c0 62 c0 c0",
			[]frameStep{{frame: "61"}, {frame: "62"}, {err: io.EOF}}},
		{"escapes", 0, "c0 dbdc dbdd 01 dbdd dc c0",
			[]frameStep{{frame: "c0db01dbdc"}, {err: io.EOF}}},
		{"empty stream", 0, "", []frameStep{{err: io.EOF}, {err: io.EOF}}},
		{"only ENDs", 0, "c0 c0 c0", []frameStep{{err: io.EOF}}},
		{"EOF mid-frame", 0, "c0 61 c0 c0 6263",
			[]frameStep{{frame: "61"}, {err: io.ErrUnexpectedEOF}, {err: io.EOF}}},
		{"EOF after ESC", 0, "c0 61 db", []frameStep{{err: io.ErrUnexpectedEOF}, {err: io.EOF}}},
		{"exactly max", 4, "c0 01020304 c0 c0 dbdc 020304 c0",
			[]frameStep{{frame: "01020304"}, {frame: "c0020304"}, {err: io.EOF}}},
		{"too long resynchronises", 4, "c0 0102030405 c0 c0 6f6b c0",
			[]frameStep{{err: ErrFrameTooLong}, {frame: "6f6b"}, {err: io.EOF}}},
		{"too long by an escape", 4, "c0 01020304 dbdc c0 6f6b c0",
			[]frameStep{{err: ErrFrameTooLong}, {frame: "6f6b"}, {err: io.EOF}}},
		{"too long skips bad escapes", 2, "c0 010203 db 01 dbdc c0 6f6b c0",
			[]frameStep{{err: ErrFrameTooLong}, {frame: "6f6b"}, {err: io.EOF}}},
		{"too long then EOF", 2, "c0 010203", []frameStep{{err: io.ErrUnexpectedEOF}, {err: io.EOF}}},
		{"bad escape resynchronises", 0, "c0 61 db 61 62 c0 c0 63 c0",
			[]frameStep{{err: ErrBadEscape}, {frame: "63"}, {err: io.EOF}}},
		{"ESC ESC", 0, "c0 61 db db dd c0 63 c0",
			[]frameStep{{err: ErrBadEscape}, {frame: "63"}, {err: io.EOF}}},
		{"ESC END", 0, "c0 61 db c0 63 c0",
			[]frameStep{{err: ErrBadEscape}, {frame: "63"}, {err: io.EOF}}},
		{"ESC at frame start", 0, "c0 db 00 c0 63 c0",
			[]frameStep{{err: ErrBadEscape}, {frame: "63"}, {err: io.EOF}}},
		{"bad escape then EOF", 0, "c0 61 db 61", []frameStep{{err: io.ErrUnexpectedEOF}, {err: io.EOF}}},
	} {
		fr := NewFrameReader(bytes.NewReader(unhex(tc.in)), tc.max)
		checkFrames(t, tc.name, fr, tc.want)
		// The same stream read one byte at a time.
		fr = NewFrameReader(iotest.OneByteReader(bytes.NewReader(unhex(tc.in))), tc.max)
		checkFrames(t, tc.name+" (one byte reads)", fr, tc.want)
		// And with the last bytes delivered together with io.EOF.
		fr = NewFrameReader(iotest.DataErrReader(bytes.NewReader(unhex(tc.in))), tc.max)
		checkFrames(t, tc.name+" (data with EOF)", fr, tc.want)
	}
}

func TestSLIPErrorsWrapStatus(t *testing.T) {
	if !errors.Is(ErrFrameTooLong, StatusRPCPacketOverflow) {
		t.Error("ErrFrameTooLong does not wrap RPC_PACKET_OVERFLOW")
	}
	if !errors.Is(ErrBadEscape, StatusRPCProtocolError) {
		t.Error("ErrBadEscape does not wrap RPC_PROTOCOL_ERROR")
	}
}

// TestSLIPFrameTooLongLarge sends a frame far over the limit, larger than
// the read buffer, between two good frames.
func TestSLIPFrameTooLongLarge(t *testing.T) {
	var stream []byte
	stream = AppendFrame(stream, []byte("first"))
	huge := bytes.Repeat([]byte{0xC0, 0xDB, 'x'}, 3*MaxPacket)
	stream = AppendFrame(stream, huge)
	stream = AppendFrame(stream, bytes.Repeat([]byte{'y'}, MaxPacket))
	stream = AppendFrame(stream, []byte("last"))
	fr := NewFrameReader(bytes.NewReader(stream), MaxPacket)
	checkFrames(t, "large", fr, []frameStep{
		{frame: hex.EncodeToString([]byte("first"))},
		{err: ErrFrameTooLong},
		{frame: hex.EncodeToString(bytes.Repeat([]byte{'y'}, MaxPacket))},
		{frame: hex.EncodeToString([]byte("last"))},
		{err: io.EOF},
	})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func TestSLIPReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	fr := NewFrameReader(io.MultiReader(bytes.NewReader(unhex("c0 61 c0 62")), errReader{boom}), 0)
	checkFrames(t, "reader error", fr, []frameStep{{frame: "61"}, {err: boom}, {err: boom}})

	fr = NewFrameReader(stuckReader{}, 0)
	if _, err := fr.ReadFrame(); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("stuck reader: %v", err)
	}
}

// randomPayload returns a payload of 1..max bytes rich in END and ESC bytes.
func randomPayload(r *rand.Rand, max int) []byte {
	n := 1 + r.IntN(max)
	if r.IntN(8) == 0 {
		n = 1 + r.IntN(8)
	}
	b := make([]byte, n)
	for i := range b {
		switch r.IntN(6) {
		case 0:
			b[i] = slipEnd
		case 1:
			b[i] = slipEsc
		case 2:
			b[i] = slipEscEnd + byte(r.IntN(2))
		default:
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

func TestSLIPRandomRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var payloads [][]byte
	var buf bytes.Buffer
	for range 2000 {
		p := randomPayload(r, MaxPacket/4)
		payloads = append(payloads, p)
		buf.Write(AppendFrame(nil, p))
		if r.IntN(10) == 0 {
			buf.Write([]byte{slipEnd, slipEnd}) // stray empty frames
		}
	}
	fr := NewFrameReader(&buf, MaxPacket)
	for i, p := range payloads {
		f, err := fr.ReadFrame()
		if err != nil || !bytes.Equal(f, p) {
			t.Fatalf("frame %d: got %d bytes, %v; want %d bytes", i, len(f), err, len(p))
		}
	}
	if _, err := fr.ReadFrame(); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
}

func TestSLIPPipeOneByteReads(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var payloads [][]byte
	for range 300 {
		payloads = append(payloads, randomPayload(r, 600))
	}
	pr, pw := io.Pipe()
	go func() {
		for _, p := range payloads {
			if _, err := pw.Write(AppendFrame(nil, p)); err != nil {
				return
			}
		}
		pw.Close()
	}()
	fr := NewFrameReader(iotest.OneByteReader(pr), MaxPacket)
	for i, p := range payloads {
		f, err := fr.ReadFrame()
		if err != nil || !bytes.Equal(f, p) {
			pr.CloseWithError(errors.New("test failed"))
			t.Fatalf("frame %d: got %x, %v; want %x", i, f, err, p)
		}
	}
	if _, err := fr.ReadFrame(); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
}

// TestSLIPCarriesMessages sends golden payloads through SLIP: a payload
// containing 0xC0 and 0xDB bytes comes out as it went in.
func TestSLIPCarriesMessages(t *testing.T) {
	msg := EncodeResponse(FuncGetRandom, 7, StatusOK, &GetRandomResponse{Data: unhex("c0 db c0 dbdc dbdd")})
	stream := AppendFrame(nil, msg)
	stream = AppendFrame(stream, EncodeRequest(FuncLogout, 0xC0C0DBDB, nil))
	fr := NewFrameReader(bytes.NewReader(stream), MaxPacket)
	f, err := fr.ReadFrame()
	if err != nil || !bytes.Equal(f, msg) {
		t.Fatalf("got %x, %v", f, err)
	}
	var res GetRandomResponse
	if _, st, err := DecodeResponse(f, &res); err != nil || st != StatusOK || !bytes.Equal(res.Data, unhex("c0 db c0 dbdc dbdd")) {
		t.Fatalf("decoded %x, %v, %v", res.Data, st, err)
	}
	f, err = fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := DecodeRequestHeader(f)
	if err != nil || h != (Header{FuncLogout, 0xC0C0DBDB}) {
		t.Fatalf("header %+v, %v", h, err)
	}
}
