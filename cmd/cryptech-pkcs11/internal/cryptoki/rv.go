package cryptoki

// RV is a PKCS#11 return value (CK_RV). The values are the specification's;
// the C side passes them through unchanged.
type RV uint

// The return values this module gives so far.
const (
	OK                          RV = 0x000
	SlotIDInvalid               RV = 0x003
	GeneralError                RV = 0x005
	ArgumentsBad                RV = 0x007
	CantLock                    RV = 0x00A
	FunctionNotSupported        RV = 0x054
	MechanismInvalid            RV = 0x070
	OperationNotInitialized     RV = 0x091
	PINIncorrect                RV = 0x0A0
	PINLenRange                 RV = 0x0A2
	SessionHandleInvalid        RV = 0x0B3
	SessionParallelNotSupported RV = 0x0B4
	SessionReadOnlyExists       RV = 0x0B7
	SessionReadWriteSOExists    RV = 0x0B8
	UserAlreadyLoggedIn         RV = 0x100
	UserNotLoggedIn             RV = 0x101
	UserTypeInvalid             RV = 0x103
	UserAnotherAlreadyLoggedIn  RV = 0x104
	BufferTooSmall              RV = 0x150
	CryptokiNotInitialized      RV = 0x190
	CryptokiAlreadyInitialized  RV = 0x191

	// Objects, attributes and key generation (objects*.go, attrs*.go,
	// keygen*.go).
	FunctionFailed        RV = 0x006
	AttributeReadOnly     RV = 0x010
	AttributeSensitive    RV = 0x011
	AttributeTypeInvalid  RV = 0x012
	AttributeValueInvalid RV = 0x013
	ActionProhibited      RV = 0x01B
	DeviceError           RV = 0x030
	DeviceMemory          RV = 0x031
	MechanismParamInvalid RV = 0x071
	ObjectHandleInvalid   RV = 0x082
	OperationActive       RV = 0x090
	SessionReadOnly       RV = 0x0B5
	TemplateIncomplete    RV = 0x0D0
	TemplateInconsistent  RV = 0x0D1
	CurveNotSupported     RV = 0x140
	KeySizeRange          RV = 0x062

	// PINs and token initialization (C_SetPIN, C_InitPIN, C_InitToken).
	SessionExists RV = 0x0B6

	// Mechanisms, signatures, digests and random numbers (mechanisms*.go,
	// sign*.go, digest*.go, random*.go).
	DataLenRange            RV = 0x021
	KeyHandleInvalid        RV = 0x060
	KeyTypeInconsistent     RV = 0x063
	KeyIndigestible         RV = 0x067
	KeyFunctionNotPermitted RV = 0x068
	SignatureInvalid        RV = 0x0C0
	SignatureLenRange       RV = 0x0C1
	RandomSeedNotSupported  RV = 0x120
	RandomNoRNG             RV = 0x121
	KeyExhausted            RV = 0x203 // PKCS#11 3.1: a stateful key has no signature left
)
