package p11

// Config names a PKCS#11 module and one of its tokens.
type Config struct {
	// Module is the path of the PKCS#11 library.
	Module string
	// TokenLabel selects the token by its label...
	TokenLabel string
	// ...or Slot by its slot ID.
	Slot *uint
}
