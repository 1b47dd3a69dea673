/* keygate vendor constants. keygate uses the standard PKCS#11 3.0 headers (through the
 * pkcs11-sys crate); vendor-defined values are declared here as they are introduced. */
#ifndef KEYGATE_H
#define KEYGATE_H
/* (none yet) */
#endif
