// Package hsm is the HSM: users and PINs, the private-key operations of the
// libhal pkey API (generate, load, open, match, sign, verify, delete, export,
// import), and a keystore encrypted under the master key on the flash chip of
// an emulated board (package sim).
//
// A [Session] is an [hsmapi.Token], the contract package backup works
// against: the in-process backend; packages rpc and p11 provide the others.
//
// # Key transfer
//
// Export follows libhal: a 32-byte transit KEK from the TRNG wraps the key's
// PKCS#8 PrivateKeyInfo with AES key wrap with padding (RFC 5649), carried as
// an EncryptedPrivateKeyInfo with id-aes256-wrap-pad, and the KEK itself is
// encrypted to the destination's RSA key-encryption-key-encryption key
// (KEKEK). RSA-OAEP with SHA-256 is the default; OAEP with SHA-1 exists for
// PKCS#11 tokens that can do nothing else, and PKCS#1 v1.5, which libhal
// uses, is open to Bleichenbacher-style oracles and is used only when a
// caller asks for it by name.
//
// Every failure to recover a KEK or to unwrap a key returns the one error
// [hsmapi.ErrDecryption], whichever step failed; the PKCS#1 v1.5 path substitutes a
// random KEK for a bad padding, so that failure also surfaces only at unwrap.
//
// # What is constant-time
//
// PIN verification, the KEK decryption and the key wrap integrity check (in
// package sim). Everything else handles public data or runs inside the HSM.
// Go's big-number and key types cannot be reliably wiped, so parsed private
// keys held in memory are not zeroed; byte buffers holding secrets are.
package hsm
