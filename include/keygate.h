/* keygate vendor constants. keygate uses the standard PKCS#11 3.0 headers (through the
 * pkcs11-sys crate); vendor-defined values are declared here as they are introduced. */
#ifndef KEYGATE_H
#define KEYGATE_H

/* CKA_KEYGATE_REVOKED (CK_ULONG): the key is revoked, for the reason held; absent while the key
 * is in service. A revoked key no longer signs, encrypts, wraps or derives
 * (CKR_KEY_FUNCTION_NOT_PERMITTED), and cannot itself be wrapped (CKR_KEY_NOT_WRAPPABLE); it
 * still verifies and decrypts what was made before. Set by `keygate revoke` or by
 * C_SetAttributeValue on a modifiable key; never in a creation template; once set, it can be
 * neither changed nor removed (CKR_ATTRIBUTE_READ_ONLY). Self-managed tokens only: no HSM
 * holds it. */
#define CKA_KEYGATE_REVOKED (CKA_VENDOR_DEFINED | 0x4B470001UL)

/* Reasons: the RFC 5280 CRLReason codes that apply to a key. */
#define KEYGATE_REVOKED_UNSPECIFIED         0UL
#define KEYGATE_REVOKED_COMPROMISED         1UL
#define KEYGATE_REVOKED_AFFILIATION_CHANGED 3UL
#define KEYGATE_REVOKED_SUPERSEDED          4UL
#define KEYGATE_REVOKED_CESSATION           5UL

#endif
