// Package backup moves keys between HSMs without their ever being in the
// clear: the three steps of libhal's cryptech_backup, written once against
// [hsmapi.Token] so that they run on any backend.
//
//  1. [Setup] on the destination finds or generates an RSA
//     key-encryption-key-encryption key (KEKEK) and describes its public half
//     in a [KEKEKFile].
//  2. [Export] on the source wraps every exportable key for that KEKEK into a
//     [Bundle].
//  3. [Import] on the destination unwraps them into its keystore, all of them
//     or none.
//
// The files are JSON in cryptech_backup's layout plus a version, the name of
// the KEK encryption and, for each private key, its public key, label and a
// tag that binds the bundle's metadata to the key's transit KEK, so that a
// change to any field is refused. docs/bundle-format.md is the specification.
// Bundles written by cryptech_backup itself (no version) import only when the
// caller allows legacy KEK encryption, because libhal encrypts KEKs with
// RSA PKCS#1 v1.5 and binds nothing.
package backup
