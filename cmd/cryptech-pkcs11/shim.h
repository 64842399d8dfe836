/* The C side of the module: the platform macros pkcs11.h asks for, and the
 * parts of PKCS#11 3.0 the 2.40 headers lack. pkcs11.h, pkcs11t.h and
 * pkcs11f.h are the OASIS PKCS#11 2.40 headers (OASIS IPR Policy, see their
 * first lines), as github.com/miekg/pkcs11 v1.1.2 ships them. */
#ifndef CRYPTECH_PKCS11_SHIM_H
#define CRYPTECH_PKCS11_SHIM_H

#define CK_PTR *
#define CK_DEFINE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType (*name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType (*name)
#ifndef NULL_PTR
#define NULL_PTR 0
#endif

#include "pkcs11.h"

/* PKCS#11 3.0, section 3.6 (CK_INTERFACE). */
typedef struct CK_INTERFACE {
	CK_CHAR *pInterfaceName;
	CK_VOID_PTR pFunctionList;
	CK_FLAGS flags;
} CK_INTERFACE;
typedef CK_INTERFACE *CK_INTERFACE_PTR;
typedef CK_INTERFACE_PTR *CK_INTERFACE_PTR_PTR;

/* CK_FUNCTION_LIST_3_0 is the 2.40 list followed by the 24 functions 3.0
 * added, C_GetInterfaceList first; the 2.40 list ends with a pointer, so
 * this layout is the specification's. */
#define CK_FUNCTIONS_ADDED_3_0 24
typedef struct {
	CK_FUNCTION_LIST v2;
	CK_RV (*added[CK_FUNCTIONS_ADDED_3_0])(void);
} ck_function_list_3_0;

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);
CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
	CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);

/* The descriptors a fork()ed child closes (shim.c, forkfds.go): own
 * returns 0, or -1 when fd cannot be told to the child. Not exported from
 * the library. */
__attribute__((visibility("hidden"))) int cryptech_own_fd(int fd);
__attribute__((visibility("hidden"))) void cryptech_disown_fd(int fd);

#endif
