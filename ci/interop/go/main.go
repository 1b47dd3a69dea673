// miekg/pkcs11 (Debian golang-github-miekg-pkcs11-dev) against one keygate token; every result
// checked with Go's standard library. These are the README's "Using keygate from Go" calls.
//
// Usage: keygate-go-client MODULE TOKEN_LABEL PIN
package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"

	"github.com/miekg/pkcs11"
)

// Not in this version of the package's constants (PKCS#11 3.0).
const (
	ckmEcEdwardsKeyPairGen = 0x1055
	ckmEddsa               = 0x1057
)

func check(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

func fail(what string) {
	fmt.Fprintln(os.Stderr, what)
	os.Exit(1)
}

func mech(m uint, param interface{}) []*pkcs11.Mechanism {
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(m, param)}
}

func attr(t uint, v interface{}) *pkcs11.Attribute { return pkcs11.NewAttribute(t, v) }

func main() {
	module, label, pin := os.Args[1], os.Args[2], os.Args[3]
	p := pkcs11.New(module)
	if p == nil {
		fail("cannot load " + module)
	}
	check(p.Initialize(), "C_Initialize")
	defer p.Destroy()
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	check(err, "C_GetSlotList")
	slot, found := uint(0), false
	for _, s := range slots {
		if ti, err := p.GetTokenInfo(s); err == nil && ti.Label == label {
			slot, found = s, true
		}
	}
	if !found {
		fail("no token " + label)
	}
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	check(err, "C_OpenSession")
	check(p.Login(sh, pkcs11.CKU_USER, pin), "C_Login")
	msg := []byte("miekg/pkcs11 through keygate")

	// P-256: a key pair made in the token, CKM_ECDSA over a SHA-256 digest, crypto/ecdsa verifies.
	p256, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})
	pub, priv, err := p.GenerateKeyPair(sh, mech(pkcs11.CKM_EC_KEY_PAIR_GEN, nil),
		[]*pkcs11.Attribute{attr(pkcs11.CKA_EC_PARAMS, p256), attr(pkcs11.CKA_TOKEN, true), attr(pkcs11.CKA_VERIFY, true), attr(pkcs11.CKA_LABEL, "go-ec")},
		[]*pkcs11.Attribute{attr(pkcs11.CKA_TOKEN, true), attr(pkcs11.CKA_SIGN, true), attr(pkcs11.CKA_SENSITIVE, true), attr(pkcs11.CKA_LABEL, "go-ec")})
	check(err, "C_GenerateKeyPair (P-256)")
	a, err := p.GetAttributeValue(sh, pub, []*pkcs11.Attribute{attr(pkcs11.CKA_EC_POINT, nil)})
	check(err, "C_GetAttributeValue (CKA_EC_POINT)")
	var point []byte
	_, err = asn1.Unmarshal(a[0].Value, &point)
	check(err, "CKA_EC_POINT is a DER OCTET STRING")
	x, y := elliptic.Unmarshal(elliptic.P256(), point)
	if x == nil {
		fail("CKA_EC_POINT is no P-256 point")
	}
	digest := sha256.Sum256(msg)
	check(p.SignInit(sh, mech(pkcs11.CKM_ECDSA, nil), priv), "C_SignInit (ECDSA)")
	sig, err := p.Sign(sh, digest[:])
	check(err, "C_Sign (ECDSA)")
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(&ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, digest[:], r, s) {
		fail("crypto/ecdsa rejects the token's signature")
	}

	// Ed25519: crypto/ed25519 verifies.
	edOid, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 101, 112})
	epub, epriv, err := p.GenerateKeyPair(sh, mech(ckmEcEdwardsKeyPairGen, nil),
		[]*pkcs11.Attribute{attr(pkcs11.CKA_EC_PARAMS, edOid), attr(pkcs11.CKA_TOKEN, true), attr(pkcs11.CKA_LABEL, "go-ed")},
		[]*pkcs11.Attribute{attr(pkcs11.CKA_TOKEN, true), attr(pkcs11.CKA_SIGN, true), attr(pkcs11.CKA_SENSITIVE, true), attr(pkcs11.CKA_LABEL, "go-ed")})
	check(err, "C_GenerateKeyPair (Ed25519)")
	a, err = p.GetAttributeValue(sh, epub, []*pkcs11.Attribute{attr(pkcs11.CKA_EC_POINT, nil)})
	check(err, "C_GetAttributeValue (Ed25519 CKA_EC_POINT)")
	var edPoint []byte
	_, err = asn1.Unmarshal(a[0].Value, &edPoint)
	check(err, "Ed25519 CKA_EC_POINT is a DER OCTET STRING")
	check(p.SignInit(sh, mech(ckmEddsa, nil), epriv), "C_SignInit (EdDSA)")
	edSig, err := p.Sign(sh, msg)
	check(err, "C_Sign (EdDSA)")
	if len(edPoint) != ed25519.PublicKeySize || !ed25519.Verify(ed25519.PublicKey(edPoint), msg, edSig) {
		fail("crypto/ed25519 rejects the token's signature")
	}

	// AES-256-GCM with a key of known value, against crypto/cipher both ways.
	keyValue := bytes.Repeat([]byte{0x42}, 32)
	k, err := p.CreateObject(sh, []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		attr(pkcs11.CKA_VALUE, keyValue), attr(pkcs11.CKA_ENCRYPT, true), attr(pkcs11.CKA_DECRYPT, true),
		attr(pkcs11.CKA_SENSITIVE, true), attr(pkcs11.CKA_EXTRACTABLE, false)})
	check(err, "C_CreateObject (AES)")
	iv, aad := bytes.Repeat([]byte{7}, 12), []byte("aad")
	block, _ := aes.NewCipher(keyValue)
	gcm, _ := cipher.NewGCM(block)
	gp := pkcs11.NewGCMParams(iv, aad, 128)
	check(p.EncryptInit(sh, mech(pkcs11.CKM_AES_GCM, gp), k), "C_EncryptInit (GCM)")
	ct, err := p.Encrypt(sh, msg)
	check(err, "C_Encrypt (GCM)")
	gp.Free()
	if pt, err := gcm.Open(nil, iv, ct, aad); err != nil || !bytes.Equal(pt, msg) {
		fail("crypto/cipher cannot open the token's AES-GCM")
	}
	gp = pkcs11.NewGCMParams(iv, aad, 128)
	check(p.DecryptInit(sh, mech(pkcs11.CKM_AES_GCM, gp), k), "C_DecryptInit (GCM)")
	pt, err := p.Decrypt(sh, gcm.Seal(nil, iv, msg, aad))
	check(err, "C_Decrypt (GCM)")
	gp.Free()
	if !bytes.Equal(pt, msg) {
		fail("the token cannot open crypto/cipher's AES-GCM")
	}

	// An AES-256 key generated in the token works.
	g, err := p.GenerateKey(sh, mech(pkcs11.CKM_AES_KEY_GEN, nil), []*pkcs11.Attribute{
		attr(pkcs11.CKA_VALUE_LEN, 32), attr(pkcs11.CKA_ENCRYPT, true), attr(pkcs11.CKA_DECRYPT, true),
		attr(pkcs11.CKA_TOKEN, true), attr(pkcs11.CKA_LABEL, "go-aes")})
	check(err, "C_GenerateKey (AES-256)")
	gp = pkcs11.NewGCMParams(iv, nil, 128)
	check(p.EncryptInit(sh, mech(pkcs11.CKM_AES_GCM, gp), g), "C_EncryptInit (generated key)")
	ct, err = p.Encrypt(sh, msg)
	check(err, "C_Encrypt (generated key)")
	gp.Free()
	gp = pkcs11.NewGCMParams(iv, nil, 128)
	check(p.DecryptInit(sh, mech(pkcs11.CKM_AES_GCM, gp), g), "C_DecryptInit (generated key)")
	pt, err = p.Decrypt(sh, ct)
	check(err, "C_Decrypt (generated key)")
	gp.Free()
	if !bytes.Equal(pt, msg) {
		fail("the generated key does not round-trip")
	}

	// AES key wrap: RFC 3394 §4.6 (256 bits of key data with a 256-bit KEK).
	kek, _ := hex.DecodeString("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	data, _ := hex.DecodeString("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
	want, _ := hex.DecodeString("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
	kh, err := p.CreateObject(sh, []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		attr(pkcs11.CKA_VALUE, kek), attr(pkcs11.CKA_WRAP, true), attr(pkcs11.CKA_SENSITIVE, true), attr(pkcs11.CKA_EXTRACTABLE, false)})
	check(err, "C_CreateObject (KEK)")
	dh, err := p.CreateObject(sh, []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		// Not sensitive: the KEK's value is known here, and keygate never wraps a sensitive key
		// under a key known outside the token.
		attr(pkcs11.CKA_VALUE, data), attr(pkcs11.CKA_SENSITIVE, false), attr(pkcs11.CKA_EXTRACTABLE, true)})
	check(err, "C_CreateObject (key data)")
	wrapped, err := p.WrapKey(sh, mech(pkcs11.CKM_AES_KEY_WRAP, nil), kh, dh)
	check(err, "C_WrapKey")
	if !bytes.Equal(wrapped, want) {
		fail("C_WrapKey differs from RFC 3394 §4.6: " + hex.EncodeToString(wrapped))
	}
	fmt.Println("P-256 ECDSA (crypto/ecdsa), Ed25519 (crypto/ed25519), AES-GCM both ways (crypto/cipher), AES-256 keygen, RFC 3394 vector")
}
