// The C entry points: each implemented one hands its arguments to the Go
// function of the same name with a go prefix (export.go); every other entry
// of the function lists is not_supported. Nothing else happens in C but
// what a fork()ed child does.
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "shim.h"
#include "_cgo_export.h"

// forked is set in the child of a fork() (by pthread_atfork, which every
// fork of the C library runs). Only the thread that forked lives on in the
// child, so the Go runtime there, whose threads are gone, may hang at any
// call, and the module's state (its HSM's lock, its connections) is the
// parent's. PKCS#11 has a child call C_Initialize: here it fails, and
// every other function answers CKR_CRYPTOKI_NOT_INITIALIZED without
// entering Go. A child that needs the module execs a new program.
static volatile int forked;

// The descriptors the module holds (forkfds.go): its emulated HSMs'
// files, the flash with its flock among them, and its RPC connections.
// The child closes its copies as it starts, so that it holds neither the
// lock nor a connection once the parent lets go of them: a flock belongs
// to the open file description, which lives on while any process has it
// open, and a server sees a connection end only when its last copy is
// closed. Closing the copies takes nothing from the parent. Each is known
// by device and inode too, so that the child closes a descriptor only if
// it still is the file it was. The child's handler calls only fstat(2)
// and close(2), which are async-signal-safe; the table's lock is taken
// across fork() (before_fork), so the child finds it whole.
struct owned_fd {
	int fd;
	dev_t dev;
	ino_t ino;
};
static struct owned_fd *owned;
static size_t n_owned, cap_owned;
static pthread_mutex_t owned_mu = PTHREAD_MUTEX_INITIALIZER;

int cryptech_own_fd(int fd) {
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -1;
	int rc = 0;
	pthread_mutex_lock(&owned_mu);
	if (n_owned == cap_owned) {
		size_t cap = cap_owned == 0 ? 16 : 2 * cap_owned;
		struct owned_fd *p = realloc(owned, cap * sizeof *p);
		if (p == NULL) {
			rc = -1;
		} else {
			owned = p;
			cap_owned = cap;
		}
	}
	if (rc == 0)
		owned[n_owned++] = (struct owned_fd){fd, st.st_dev, st.st_ino};
	pthread_mutex_unlock(&owned_mu);
	return rc;
}

void cryptech_disown_fd(int fd) {
	pthread_mutex_lock(&owned_mu);
	for (size_t i = 0; i < n_owned; i++) {
		if (owned[i].fd == fd) {
			owned[i] = owned[--n_owned];
			break;
		}
	}
	pthread_mutex_unlock(&owned_mu);
}

static void before_fork(void) { pthread_mutex_lock(&owned_mu); }
static void in_parent(void) { pthread_mutex_unlock(&owned_mu); }
static void in_child(void) {
	forked = 1;
	for (size_t i = 0; i < n_owned; i++) {
		struct stat st;
		if (fstat(owned[i].fd, &st) == 0 && st.st_dev == owned[i].dev && st.st_ino == owned[i].ino)
			close(owned[i].fd);
	}
	n_owned = 0;
	pthread_mutex_unlock(&owned_mu);
}
__attribute__((constructor)) static void watch_fork(void) { pthread_atfork(before_fork, in_parent, in_child); }
#define IN_PARENT if (forked) return CKR_CRYPTOKI_NOT_INITIALIZED;

// initialize_in_child is C_Initialize in a fork()ed child: CKR_GENERAL_ERROR,
// the code PKCS#11 has for what cannot be mended, said on stderr, as the
// Go side says why C_Initialize failed, when $CRYPTECH_PKCS11_DEBUG is set.
static CK_RV initialize_in_child(void) {
	const char *debug = getenv("CRYPTECH_PKCS11_DEBUG");
	if (debug != NULL && *debug != '\0')
		fputs("cryptech-pkcs11: C_Initialize: this process is a fork() of the one that loaded the module, whose Go runtime does not survive fork: exec a new program to use the module\n", stderr);
	return CKR_GENERAL_ERROR;
}

CK_RV C_Initialize(CK_VOID_PTR a) {
	if (forked)
		return initialize_in_child();
	return goInitialize(a);
}
CK_RV C_Finalize(CK_VOID_PTR r) { IN_PARENT return goFinalize(r); }
CK_RV C_GetInfo(CK_INFO_PTR i) { IN_PARENT return goGetInfo(i); }
CK_RV C_GetSlotList(CK_BBOOL p, CK_SLOT_ID_PTR l, CK_ULONG_PTR n) { IN_PARENT return goGetSlotList(p, l, n); }
CK_RV C_GetSlotInfo(CK_SLOT_ID s, CK_SLOT_INFO_PTR i) { IN_PARENT return goGetSlotInfo(s, i); }
CK_RV C_GetTokenInfo(CK_SLOT_ID s, CK_TOKEN_INFO_PTR i) { IN_PARENT return goGetTokenInfo(s, i); }
CK_RV C_GetMechanismList(CK_SLOT_ID s, CK_MECHANISM_TYPE_PTR l, CK_ULONG_PTR n) { IN_PARENT return goGetMechanismList(s, l, n); }
CK_RV C_GetMechanismInfo(CK_SLOT_ID s, CK_MECHANISM_TYPE m, CK_MECHANISM_INFO_PTR i) { IN_PARENT return goGetMechanismInfo(s, m, i); }
CK_RV C_OpenSession(CK_SLOT_ID s, CK_FLAGS f, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR h) { IN_PARENT return goOpenSession(s, f, h); }
CK_RV C_CloseSession(CK_SESSION_HANDLE h) { IN_PARENT return goCloseSession(h); }
CK_RV C_CloseAllSessions(CK_SLOT_ID s) { IN_PARENT return goCloseAllSessions(s); }
CK_RV C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR i) { IN_PARENT return goGetSessionInfo(h, i); }
CK_RV C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG n) { IN_PARENT return goLogin(h, u, pin, n); }
CK_RV C_Logout(CK_SESSION_HANDLE h) { IN_PARENT return goLogout(h); }

// Objects and key pair generation (export_attrs.go).
CK_RV C_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o) { IN_PARENT return goCreateObject(h, t, n, o); }
CK_RV C_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR c) { IN_PARENT return goCopyObject(h, o, t, n, c); }
CK_RV C_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o) { IN_PARENT return goDestroyObject(h, o); }
CK_RV C_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ULONG_PTR n) { IN_PARENT return goGetObjectSize(h, o, n); }
CK_RV C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) { IN_PARENT return goGetAttributeValue(h, o, t, n); }
CK_RV C_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) { IN_PARENT return goSetAttributeValue(h, o, t, n); }
CK_RV C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n) { IN_PARENT return goFindObjectsInit(h, t, n); }
CK_RV C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR n) { IN_PARENT return goFindObjects(h, o, max, n); }
CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE h) { IN_PARENT return goFindObjectsFinal(h); }
CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub, CK_ULONG npub, CK_ATTRIBUTE_PTR priv, CK_ULONG npriv, CK_OBJECT_HANDLE_PTR hpub, CK_OBJECT_HANDLE_PTR hpriv) { IN_PARENT return goGenerateKeyPair(h, m, pub, npub, priv, npriv, hpub, hpriv); }
// PINs and token initialization.
CK_RV C_InitToken(CK_SLOT_ID s, CK_UTF8CHAR_PTR pin, CK_ULONG n, CK_UTF8CHAR_PTR label) { IN_PARENT return goInitToken(s, pin, n, label); }
CK_RV C_InitPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG n) { IN_PARENT return goInitPIN(h, pin, n); }
CK_RV C_SetPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR old, CK_ULONG oldn, CK_UTF8CHAR_PTR pin, CK_ULONG n) { IN_PARENT return goSetPIN(h, old, oldn, pin, n); }

// Digests, signatures, random numbers (export_sign.go).
CK_RV C_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m) { IN_PARENT return goDigestInit(h, m); }
CK_RV C_Digest(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on) { IN_PARENT return goDigest(h, d, n, o, on); }
CK_RV C_DigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n) { IN_PARENT return goDigestUpdate(h, d, n); }
CK_RV C_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k) { IN_PARENT return goDigestKey(h, k); }
CK_RV C_DigestFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR o, CK_ULONG_PTR on) { IN_PARENT return goDigestFinal(h, o, on); }
CK_RV C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { IN_PARENT return goSignInit(h, m, k); }
CK_RV C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR s, CK_ULONG_PTR sn) { IN_PARENT return goSign(h, d, n, s, sn); }
CK_RV C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n) { IN_PARENT return goSignUpdate(h, d, n); }
CK_RV C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG_PTR sn) { IN_PARENT return goSignFinal(h, s, sn); }
CK_RV C_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { IN_PARENT return goVerifyInit(h, m, k); }
CK_RV C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR s, CK_ULONG sn) { IN_PARENT return goVerify(h, d, n, s, sn); }
CK_RV C_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n) { IN_PARENT return goVerifyUpdate(h, d, n); }
CK_RV C_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG sn) { IN_PARENT return goVerifyFinal(h, s, sn); }
CK_RV C_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG n) { IN_PARENT return goSeedRandom(h, s, n); }
CK_RV C_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR r, CK_ULONG n) { IN_PARENT return goGenerateRandom(h, r, n); }

// Secret keys, wrapping, RSA-OAEP (export_secret.go).
CK_RV C_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k) { IN_PARENT return goGenerateKey(h, m, t, n, k); }
CK_RV C_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE w, CK_OBJECT_HANDLE k, CK_BYTE_PTR o, CK_ULONG_PTR on) { IN_PARENT return goWrapKey(h, m, w, k, o, on); }
CK_RV C_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE u, CK_BYTE_PTR d, CK_ULONG n, CK_ATTRIBUTE_PTR t, CK_ULONG tn, CK_OBJECT_HANDLE_PTR k) { IN_PARENT return goUnwrapKey(h, m, u, d, n, t, tn, k); }
CK_RV C_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { IN_PARENT return goEncryptInit(h, m, k); }
CK_RV C_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on) { IN_PARENT return goEncrypt(h, d, n, o, on); }
CK_RV C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { IN_PARENT return goDecryptInit(h, m, k); }
CK_RV C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on) { IN_PARENT return goDecrypt(h, d, n, o, on); }

// not_supported stands for every function the module lacks. It is called
// through pointers of other types, which every ABI cgo targets allows for a
// function that reads no arguments and returns an integer.
static CK_RV not_supported(void) { return CKR_FUNCTION_NOT_SUPPORTED; }

static CK_FUNCTION_LIST list_2_40;
static ck_function_list_3_0 list_3_0;
static CK_INTERFACE interfaces[] = {
	{(CK_CHAR *)"PKCS 11", &list_3_0, 0},
	{(CK_CHAR *)"PKCS 11", &list_2_40, 0},
};
#define N_INTERFACES (sizeof interfaces / sizeof interfaces[0])
static pthread_once_t lists_once = PTHREAD_ONCE_INIT;

// fill points every function of the list at base (size bytes, a version
// first) at not_supported.
static void fill(void *base, size_t size) {
	size_t first = offsetof(CK_FUNCTION_LIST, C_Initialize);
	CK_RV (**f)(void) = (CK_RV (**)(void))((char *)base + first);
	for (size_t i = 0; i < (size - first) / sizeof *f; i++)
		f[i] = not_supported;
}

static void set_2_40(CK_FUNCTION_LIST *l, CK_BYTE major, CK_BYTE minor) {
	l->version.major = major;
	l->version.minor = minor;
	l->C_Initialize = C_Initialize;
	l->C_Finalize = C_Finalize;
	l->C_GetInfo = C_GetInfo;
	l->C_GetFunctionList = C_GetFunctionList;
	l->C_GetSlotList = C_GetSlotList;
	l->C_GetSlotInfo = C_GetSlotInfo;
	l->C_GetTokenInfo = C_GetTokenInfo;
	l->C_GetMechanismList = C_GetMechanismList;
	l->C_GetMechanismInfo = C_GetMechanismInfo;
	l->C_OpenSession = C_OpenSession;
	l->C_CloseSession = C_CloseSession;
	l->C_CloseAllSessions = C_CloseAllSessions;
	l->C_GetSessionInfo = C_GetSessionInfo;
	l->C_Login = C_Login;
	l->C_Logout = C_Logout;
	// Objects and key pair generation.
	l->C_CreateObject = C_CreateObject;
	l->C_CopyObject = C_CopyObject;
	l->C_DestroyObject = C_DestroyObject;
	l->C_GetObjectSize = C_GetObjectSize;
	l->C_GetAttributeValue = C_GetAttributeValue;
	l->C_SetAttributeValue = C_SetAttributeValue;
	l->C_FindObjectsInit = C_FindObjectsInit;
	l->C_FindObjects = C_FindObjects;
	l->C_FindObjectsFinal = C_FindObjectsFinal;
	l->C_GenerateKeyPair = C_GenerateKeyPair;
	// PINs and token initialization.
	l->C_InitToken = C_InitToken;
	l->C_InitPIN = C_InitPIN;
	l->C_SetPIN = C_SetPIN;

	// Digests, signatures, random numbers.
	l->C_DigestInit = C_DigestInit;
	l->C_Digest = C_Digest;
	l->C_DigestUpdate = C_DigestUpdate;
	l->C_DigestKey = C_DigestKey;
	l->C_DigestFinal = C_DigestFinal;
	l->C_SignInit = C_SignInit;
	l->C_Sign = C_Sign;
	l->C_SignUpdate = C_SignUpdate;
	l->C_SignFinal = C_SignFinal;
	l->C_VerifyInit = C_VerifyInit;
	l->C_Verify = C_Verify;
	l->C_VerifyUpdate = C_VerifyUpdate;
	l->C_VerifyFinal = C_VerifyFinal;
	l->C_SeedRandom = C_SeedRandom;
	l->C_GenerateRandom = C_GenerateRandom;

	// Secret keys, wrapping, RSA-OAEP.
	l->C_GenerateKey = C_GenerateKey;
	l->C_WrapKey = C_WrapKey;
	l->C_UnwrapKey = C_UnwrapKey;
	l->C_EncryptInit = C_EncryptInit;
	l->C_Encrypt = C_Encrypt;
	l->C_DecryptInit = C_DecryptInit;
	l->C_Decrypt = C_Decrypt;
}

static void build_lists(void) {
	fill(&list_2_40, sizeof list_2_40);
	set_2_40(&list_2_40, 2, 40);
	fill(&list_3_0, sizeof list_3_0);
	set_2_40(&list_3_0.v2, 3, 0);
	list_3_0.added[0] = (CK_RV (*)(void))C_GetInterfaceList;
	list_3_0.added[1] = (CK_RV (*)(void))C_GetInterface;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR pp) {
	if (pp == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_once(&lists_once, build_lists);
	*pp = &list_2_40;
	return CKR_OK;
}

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR l, CK_ULONG_PTR n) {
	if (n == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_once(&lists_once, build_lists);
	if (l == NULL) {
		*n = N_INTERFACES;
		return CKR_OK;
	}
	if (*n < N_INTERFACES) {
		*n = N_INTERFACES;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(l, interfaces, sizeof interfaces);
	*n = N_INTERFACES;
	return CKR_OK;
}

CK_RV C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR v, CK_INTERFACE_PTR_PTR pp, CK_FLAGS flags) {
	if (pp == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_once(&lists_once, build_lists);
	for (size_t i = 0; i < N_INTERFACES; i++) {
		CK_INTERFACE *it = &interfaces[i];
		CK_VERSION *have = (CK_VERSION *)it->pFunctionList;
		if (name != NULL && strcmp((const char *)name, (const char *)it->pInterfaceName) != 0)
			continue;
		if (v != NULL && (v->major != have->major || v->minor != have->minor))
			continue;
		if ((it->flags & flags) != flags)
			continue;
		*pp = it;
		return CKR_OK;
	}
	return CKR_ARGUMENTS_BAD;
}
