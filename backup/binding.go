package backup

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// bindingPrefix starts every binding; it names the format so a binding can
// never be mistaken for anything else.
const bindingPrefix = "cryptech-backup bundle binding v1\n"

// metadataDigest hashes every field of the bundle except the wrapped
// material itself (pkcs8, kek, tag). The source HSM binds it, with each
// key's index, under that key's transit KEK; only that KEK can make the tag,
// and only the destination's KEKEK can recover the KEK, so a change to any
// field (uuid, flags, label or label_hex, attributes, a public key, a
// comment, the KEKEK named) or a key moved to another entry is refused at
// import.
//
// The encoding is canonical because it is made from decoded values: how the
// file was indented or its Base64 split into lines does not matter. It is
// computed once per bundle, so binding n keys costs O(n).
func (b *Bundle) metadataDigest() [sha256.Size]byte {
	// Attributes and label_hex are left out when a key has none, so that
	// bundles without them (all bundles before they existed, and those for
	// or from a Cryptech HSM) bind what they always bound.
	type entry struct {
		Attributes Attributes `json:"attributes,omitempty"`
		Comment    string     `json:"comment"`
		Flags      uint32     `json:"flags"`
		Label      string     `json:"label"`
		LabelHex   string     `json:"label_hex,omitempty"`
		SPKI       []byte     `json:"spki"`
		UUID       string     `json:"uuid"`
	}
	type bound struct {
		Comment       string  `json:"comment"`
		KEKEncryption string  `json:"kek_encryption"`
		KEKEKPubkey   []byte  `json:"kekek_pubkey"`
		KEKEKUUID     string  `json:"kekek_uuid"`
		Keys          []entry `json:"keys"`
		Version       int     `json:"version"`
	}
	v := bound{
		Comment:       b.Comment,
		KEKEncryption: string(b.KEKEncryption),
		KEKEKPubkey:   b.KEKEKPubkey,
		KEKEKUUID:     b.KEKEKUUID,
		Keys:          make([]entry, 0, len(b.Keys)),
		Version:       b.Version,
	}
	for _, k := range b.Keys {
		v.Keys = append(v.Keys, entry{k.Attributes, k.Comment, uint32(k.Flags), k.Label, k.LabelHex, k.SPKI, k.UUID})
	}
	h := sha256.New()
	if err := json.NewEncoder(h).Encode(v); err != nil {
		panic(fmt.Sprintf("backup: binding: %v", err)) // plain types: cannot fail
	}
	return [sha256.Size]byte(h.Sum(nil))
}

// binding is what the tag of key i binds: the bundle's metadata digest and i.
func binding(digest [sha256.Size]byte, i int) []byte {
	b := append([]byte(bindingPrefix), digest[:]...)
	return binary.BigEndian.AppendUint32(b, uint32(i))
}
