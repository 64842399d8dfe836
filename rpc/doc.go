// Package rpc is the libhal RPC protocol of the Cryptech HSM: XDR (RFC 4506)
// messages in SLIP (RFC 1055) frames, the 32 functions of libhal's
// rpc_server.c with their exact layouts and status codes.
//
// [Server] puts the tokens of a frontend.Opener (an emulated HSM, package
// hsm, or any other) on listeners. It is a thin adapter over package
// frontend, which keeps each connection's client handle, session, login,
// handles and import batches; a connection is logged out when it closes,
// as the Cryptech multiplexer daemon (cryptech_muxd) does. The wire format
// is rpc/internal/wire's; one table of handlers (handlers.go) answers
// libhal's functions and the extensions alike. [Client]
// is an [hsmapi.Token] on a connection, so package backup runs over it
// unchanged, against this server or a real Cryptech HSM's multiplexer.
//
// # Extensions
//
// libhal's export and import know one KEK encryption (PKCS#1 v1.5), assign
// fresh UUIDs on import, cannot bind a bundle's metadata, and import one key
// per call. This server also answers a few functions numbered from 0x10000
// up (internal/wire/messages.go, docs/rpc.md) that carry what package backup needs: OAEP, tags,
// the source's UUIDs and labels, and an import of many keys as one keystore
// transaction. The client uses them when the server answers them, and falls
// back to the 32 libhal functions otherwise (a real Cryptech HSM answers
// RPC_BAD_FUNCTION).
//
// libhal has no secure channel: the PIN and everything else cross the
// socket in the clear. Listen on loopback or a Unix socket, or use TLS with
// client certificates (see the serve command).
package rpc
