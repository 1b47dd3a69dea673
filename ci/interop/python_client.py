"""python-pkcs11 (PyPI) against one keygate token; every result checked with the
`cryptography` package. These are the README's "Using keygate from Python" calls.

Usage: python_client.py MODULE TOKEN_LABEL PIN
"""

import os
import sys
import threading

import pkcs11
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_ec_public_key, encode_ecdsa_signature, encode_named_curve_parameters

module, label, pin = sys.argv[1:4]
lib = pkcs11.lib(module)
token = lib.get_token(token_label=label)
data = b"python-pkcs11 through keygate"

with token.open(user_pin=pin, rw=True) as s:
    # A P-256 key pair made in the token; its ECDSA-SHA256 signature verified outside.
    params = s.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
    )
    pub, priv = params.generate_keypair(store=True, label="py-ec", id=b"\x51")
    sig = priv.sign(data, mechanism=Mechanism.ECDSA_SHA256)
    outside_pub = load_der_public_key(encode_ec_public_key(pub))
    outside_pub.verify(encode_ecdsa_signature(sig), data, ec.ECDSA(hashes.SHA256()))
    assert pub.verify(data, sig, mechanism=Mechanism.ECDSA_SHA256)
    assert not pub.verify(data + b"!", sig, mechanism=Mechanism.ECDSA_SHA256)

    # Attribute reads.
    assert priv.label == "py-ec" and priv.id == b"\x51"
    assert priv[Attribute.SENSITIVE] is True and priv[Attribute.SIGN] is True
    assert pub[Attribute.KEY_TYPE] == KeyType.EC and pub[Attribute.CLASS] == ObjectClass.PUBLIC_KEY

    # A KEK with a value known outside, and an AES key made in the token: the token wraps it
    # (RFC 3394), the outside unwraps it and checks the token's AES-GCM both ways. The key is
    # not sensitive: keygate wraps a sensitive key only under a CKA_TRUSTED key or one made in
    # the token, never under a key whose value is known outside.
    kek_value = os.urandom(32)
    kek = s.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: kek_value,
            Attribute.LABEL: "py-kek",
            Attribute.WRAP: True,
            Attribute.UNWRAP: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
        }
    )
    key = s.generate_key(
        KeyType.AES, 256, label="py-aes", store=True, template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False}
    )
    value = aes_key_unwrap(kek_value, kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP))
    nonce = os.urandom(12)
    ct = key.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, b"aad"))
    assert AESGCM(value).decrypt(nonce, bytes(ct), b"aad") == data
    outside_ct = AESGCM(value).encrypt(nonce, data, b"aad")
    assert bytes(key.decrypt(outside_ct, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, b"aad"))) == data

    # Unwrap what the outside wrapped, then use it.
    secret = os.urandom(16)
    unwrapped = kek.unwrap_key(
        ObjectClass.SECRET_KEY,
        KeyType.AES,
        aes_key_wrap(kek_value, secret),
        mechanism=Mechanism.AES_KEY_WRAP,
        label="py-unwrapped",
        store=False,
        template={Attribute.ENCRYPT: True, Attribute.DECRYPT: True},
    )
    ct = unwrapped.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce))
    assert AESGCM(secret).decrypt(nonce, bytes(ct), None) == data

    # Iteration over objects.
    assert len(list(s.get_objects({Attribute.LABEL: "py-ec"}))) == 2
    labels = {o.label for o in s.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})}
    assert {"py-kek", "py-aes", "py-unwrapped"} <= labels, labels

# Several threads at once, each with its own session: sign and verify outside. Login state is
# per application in PKCS#11 (python-pkcs11 logs out when a logged-in session closes), so one
# session stays logged in and the threads open theirs without a PIN.
errors = []


def worker(n):
    try:
        with token.open() as t:
            k = t.get_key(object_class=ObjectClass.PRIVATE_KEY, label="py-ec")
            for i in range(25):
                msg = b"thread %d message %d" % (n, i)
                s2 = k.sign(msg, mechanism=Mechanism.ECDSA_SHA256)
                outside_pub.verify(encode_ecdsa_signature(s2), msg, ec.ECDSA(hashes.SHA256()))
    except Exception as e:  # reported below
        errors.append(f"thread {n}: {e!r}")


with token.open(user_pin=pin):
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
assert not errors, errors
print("keygen, ECDSA sign/verify, AES-GCM both ways, wrap/unwrap, attributes, iteration, 4 threads x 25 signatures")
