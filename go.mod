module github.com/hsmkit/cryptech-backup

go 1.26.0

require (
	github.com/ThalesIgnite/crypto11 v1.2.5
	github.com/cloudflare/circl v1.6.5
	github.com/miekg/pkcs11 v1.1.2
	github.com/rogpeppe/go-internal v1.16.0
	github.com/trailofbits/go-mutexasserts v0.0.0-20250514102930-c1f3d2e37561
	golang.org/x/crypto v0.59.0
	golang.org/x/sys v0.50.0
	golang.org/x/term v0.48.0
)

require (
	github.com/bwesterb/go-ristretto v1.2.4 // indirect
	github.com/pkg/errors v0.8.1 // indirect
	github.com/thales-e-security/pool v0.0.2 // indirect
	golang.org/x/tools v0.26.0 // indirect
)
