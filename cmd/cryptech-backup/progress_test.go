package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The line waits out the delay, then shows at most every progressEvery,
// and end clears it once; reports after end are dropped.
func TestProgressLineThrottles(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(0, 0)
	p := newProgressLine(&out, "export", "keys", func() time.Time { return now }, progressDelay)
	step := func(d time.Duration, done int, want string) {
		t.Helper()
		now = now.Add(d)
		out.Reset()
		p.report(done, 400)
		if out.String() != want {
			t.Errorf("after %v, report(%d): wrote %q, want %q", d, done, out.String(), want)
		}
	}
	step(0, 1, "")
	step(progressDelay-time.Millisecond, 2, "")
	step(time.Millisecond, 3, "\rcryptech-backup export: 3/400 keys (0%)")
	step(progressEvery-time.Millisecond, 4, "")
	step(time.Millisecond, 200, "\rcryptech-backup export: 200/400 keys (50%)")
	out.Reset()
	p.end()
	p.end()
	if out.String() != "\r\x1b[K" {
		t.Errorf("end wrote %q, want one clear", out.String())
	}
	step(time.Hour, 400, "")

	// Work that ends before the delay leaves nothing, not even a clear.
	out.Reset()
	p = newProgressLine(&out, "export", "keys", func() time.Time { return now }, progressDelay)
	p.report(400, 400)
	p.end()
	if out.Len() != 0 {
		t.Errorf("quick work wrote %q", out.String())
	}
}

// A stderr that is a file, not a terminal, gets exactly the lines it got
// before progress was drawn: the commands that draw it on a terminal, run
// with no delay before the line would show, write no carriage return and
// no escape.
func TestProgressNotOnFiles(t *testing.T) {
	dir := t.TempDir()
	kekek, id := makeSource(t, dir)
	msg := filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, []byte("m"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"hashsig", "keygen", "--lms", "sha256-m32-h5", "--lmots", "sha256-n32-w4", "--priv", filepath.Join(dir, "k.prv"), "--pub", filepath.Join(dir, "k.pub")},
			`^cryptech-backup: HSS key with 32 signatures; keep \S+k.prv secret and never copy it to sign elsewhere$`},
		{[]string{"hashsig", "sign", "--priv", filepath.Join(dir, "k.prv"), "-i", msg, "-o", filepath.Join(dir, "k.sig")}, ``},
		{[]string{"sign", "--hsm", filepath.Join(dir, "src"), "--key", id.String(), "-i", msg, "-o", filepath.Join(dir, "hsm.sig")}, ``},
		{[]string{"export", "--hsm", filepath.Join(dir, "src"), "-i", kekek, "-o", filepath.Join(dir, "bundle.json")}, ``},
		{[]string{"import", "--hsm", filepath.Join(dir, "dst"), "-i", filepath.Join(dir, "bundle.json")}, ``},
		{[]string{"store", "--hsm", filepath.Join(dir, "src"), "--all", "-o", filepath.Join(dir, "stored.json"), "--delete"}, ``},
		{[]string{"restore", "--hsm", filepath.Join(dir, "src"), "-i", filepath.Join(dir, "stored.json")}, ``},
	} {
		stderr, err := os.Create(filepath.Join(dir, "stderr"))
		if err != nil {
			t.Fatal(err)
		}
		e := pinEnv(&bytes.Buffer{}, stderr)
		status := run(tc.args, e)
		stderr.Close()
		got, _ := os.ReadFile(stderr.Name())
		if status != 0 {
			t.Fatalf("%v: exit status %d, stderr %q", tc.args, status, got)
		}
		if tc.want == "" {
			if bytes.ContainsAny(got, "\r\x1b") {
				t.Errorf("%v: stderr %q", tc.args, got)
			}
			continue
		}
		checkOneLine(t, string(got), tc.want)
	}
}
