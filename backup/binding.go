package backup

import (
	"encoding/json"
	"fmt"
)

// binding returns what the tag of key i binds: every field of the bundle
// except the wrapped material itself (pkcs8, kek, tag), and i. The source HSM
// binds it under each key's transit KEK; only that KEK can make the tag, and
// only the destination's KEKEK can recover the KEK, so a change to any field
// (uuid, flags, label, a public key, a comment, the KEKEK named) or a key
// moved to another entry is refused at import.
//
// The encoding is canonical because it is made from decoded values: how the
// file was indented or its Base64 split into lines does not matter.
func (b *Bundle) binding(i int) []byte {
	type entry struct {
		Comment string `json:"comment"`
		Flags   uint32 `json:"flags"`
		Label   string `json:"label"`
		SPKI    []byte `json:"spki"`
		UUID    string `json:"uuid"`
	}
	type bound struct {
		Comment       string  `json:"comment"`
		Index         int     `json:"index"`
		KEKEncryption string  `json:"kek_encryption"`
		KEKEKPubkey   []byte  `json:"kekek_pubkey"`
		KEKEKUUID     string  `json:"kekek_uuid"`
		Keys          []entry `json:"keys"`
		Version       int     `json:"version"`
	}
	v := bound{
		Comment:       b.Comment,
		Index:         i,
		KEKEncryption: string(b.KEKEncryption),
		KEKEKPubkey:   b.KEKEKPubkey,
		KEKEKUUID:     b.KEKEKUUID,
		Version:       b.Version,
	}
	for _, k := range b.Keys {
		v.Keys = append(v.Keys, entry{k.Comment, uint32(k.Flags), k.Label, k.SPKI, k.UUID})
	}
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("backup: binding: %v", err)) // plain types: cannot fail
	}
	return append([]byte("cryptech-backup bundle binding v1\n"), data...)
}
