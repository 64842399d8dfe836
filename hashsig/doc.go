// Package hashsig implements the stateful hash-based signatures of RFC 8554:
// the Leighton-Micali one-time signature (LM-OTS), the Leighton-Micali
// Signature (LMS) Merkle tree of one-time keys, and the Hierarchical Signature
// System (HSS) of up to eight LMS levels, with every parameter set of RFC 8554
// and NIST SP 800-208 (SHA-256 and SHAKE256, 32- and 24-byte outputs,
// heights 5 to 25, Winternitz 1, 2, 4, 8).
//
// Public keys and signatures use the exact byte formats of RFC 8554, so they
// interoperate with other implementations; an HSS public key is u32 L
// followed by the top LMS public key.
//
// # Stateful keys
//
// A one-time key must never sign twice. A [PrivateKey] carries the range
// [next, end) of signature indexes it may still use; Sign persists the
// advanced state through the caller's [PersistFunc] before it returns the
// signature, and [PrivateKey.Split] divides the remaining range so that two
// holders of one key (two HSMs) never use the same index. See state.go.
//
// Keys are generated from a seed by the pseudorandom method of RFC 8554
// Appendix A: one-time keys are derived when needed and never stored, and the
// trees of an HSS key are rebuilt from the top seed by its first signature
// after it is loaded: seconds at height 15, minutes at height 25. Meanwhile
// only other signatures of that key wait; reading its state, splitting it
// and wiping it do not, and a key wiped meanwhile abandons the build
// without using an index. A holder that keeps the key's tree cache
// ([PrivateKey.Cache], tens of KiB, authenticated) beside its state and
// gives it back with [PrivateKey.LoadCache] skips the rebuild; the cache is
// never the state, and a damaged or foreign one is refused. See cache.go.
//
// What is not constant-time: nothing here handles secrets that depend on
// input an attacker controls, except the seed, which only ever enters hash
// inputs.
package hashsig
