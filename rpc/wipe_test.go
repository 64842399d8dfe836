package rpc

import (
	"bytes"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// After a LOGIN, the Client's buffers hold no PIN.
func TestClientKeepsNoPIN(t *testing.T) {
	addr, _ := served(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pin := bytes.Clone(wheelPIN)
	if err := c.Login(ctx, hsmapi.UserWheel, pin); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(c.out[:cap(c.out)], wheelPIN) {
		t.Error("PIN left in the client's output buffer")
	}
}
