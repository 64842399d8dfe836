package wire

import (
	"bytes"
	"strings"
	"testing"
)

func TestGrowClearingClearsTheOldArray(t *testing.T) {
	b := make([]byte, 0, 8)
	b = append(b, "PIN-1234"...)
	old := b[:cap(b)]
	b = growClearing(b, 1)
	if string(b) != "PIN-1234" || cap(b)-len(b) < 1 {
		t.Fatalf("grown = %q, cap %d", b, cap(b))
	}
	if !bytes.Equal(old, make([]byte, len(old))) {
		t.Errorf("old array after growing = %q, want zeros", old)
	}
	same := growClearing(b, 1)
	if &same[:1][0] != &b[:1][0] {
		t.Error("grew although there was room")
	}
}

// A LOGIN frame leaves its PIN nowhere in the FrameReader once the server
// has cleared the frame, also when the PIN needs escaping.
func TestFrameReaderKeepsNoPIN(t *testing.T) {
	for _, pin := range [][]byte{
		[]byte("wheel-pin-1234"),
		append([]byte(strings.Repeat("p", 300)), 0xC0, 0xDB, 'x'),
	} {
		var stream []byte
		stream = AppendFrame(stream, EncodeRequest(FuncLogin, 0, &LoginRequest{User: 3 /* wheel */, PIN: pin}))
		stream = AppendFrame(stream, EncodeRequest(FuncGetVersion, 0, &GetVersionRequest{}))
		fr := NewFrameReader(bytes.NewReader(stream), MaxPacket)
		frame, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(frame, pin) {
			t.Fatal("the LOGIN frame does not hold the PIN")
		}
		clear(frame) // what a server does once it has answered
		if bytes.Contains(fr.buf, pin[:8]) || bytes.Contains(fr.frame[:cap(fr.frame)], pin[:8]) {
			t.Errorf("PIN of %d bytes left in the reader's buffers", len(pin))
		}
	}
}
