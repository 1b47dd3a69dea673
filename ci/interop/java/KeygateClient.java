// JDK 17's SunPKCS11 provider against one keygate token; results checked with the JDK's own
// providers (SunEC, SunJCE). These are the README's "Using keygate from Java" calls.
//
// Usage: java KeygateClient SUNPKCS11_CONFIG PIN [ENTRIES.p12]
// ENTRIES.p12 (password "interop"), made by ci/interop/java-client with openssl, holds an RSA
// and a P-384 private key with self-signed certificates, to be stored in the token's KeyStore.
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.Provider;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Security;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.cert.Certificate;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.Arrays;
import javax.crypto.Cipher;
import javax.crypto.KeyGenerator;
import javax.crypto.SecretKey;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

public class KeygateClient {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static byte[] gcm(Provider p, int mode, java.security.Key k, byte[] iv, byte[] data) throws Exception {
        Cipher c = p == null ? Cipher.getInstance("AES/GCM/NoPadding") : Cipher.getInstance("AES/GCM/NoPadding", p);
        c.init(mode, k, new GCMParameterSpec(128, iv));
        c.updateAAD("aad".getBytes());
        return c.doFinal(data);
    }

    public static void main(String[] args) throws Exception {
        Provider p = Security.getProvider("SunPKCS11").configure(args[0]);
        Security.addProvider(p);
        char[] pin = args[1].toCharArray();
        KeyStore ks = KeyStore.getInstance("PKCS11", p);
        ks.load(null, pin);
        byte[] msg = "SunPKCS11 through keygate".getBytes();

        // An EC P-256 key pair generated through the provider; SHA256withECDSA made in the
        // token, verified by the default provider.
        KeyPairGenerator kpg = KeyPairGenerator.getInstance("EC", p);
        kpg.initialize(new ECGenParameterSpec("secp256r1"));
        KeyPair kp = kpg.generateKeyPair();
        Signature signer = Signature.getInstance("SHA256withECDSA", p);
        signer.initSign(kp.getPrivate());
        signer.update(msg);
        byte[] sig = signer.sign();
        PublicKey outside = KeyFactory.getInstance("EC").generatePublic(new X509EncodedKeySpec(kp.getPublic().getEncoded()));
        Signature verifier = Signature.getInstance("SHA256withECDSA");
        check(!verifier.getProvider().getName().startsWith("SunPKCS11"), "verified outside the token");
        verifier.initVerify(outside);
        verifier.update(msg);
        check(verifier.verify(sig), "the default provider verifies the token's signature");

        // AES/GCM/NoPadding with a key generated in the token, round trip.
        KeyGenerator kg = KeyGenerator.getInstance("AES", p);
        kg.init(256);
        SecretKey generated = kg.generateKey();
        byte[] iv = new byte[12];
        new SecureRandom().nextBytes(iv);
        byte[] ct = gcm(p, Cipher.ENCRYPT_MODE, generated, iv, msg);
        check(Arrays.equals(gcm(p, Cipher.DECRYPT_MODE, generated, iv, ct), msg), "GCM round trip in the token");

        // A secret key entry of known value stored in the KeyStore (a token object), reloaded,
        // and checked against SunJCE's AES-GCM both ways. (The KeyStore, not SecretKeyFactory,
        // puts it in: SunPKCS11 offers SecretKeyFactory "AES" only with CKM_AES_CBC, which a
        // self-managed token does not have.)
        byte[] value = new byte[32];
        new SecureRandom().nextBytes(value);
        SecretKeySpec spec = new SecretKeySpec(value, "AES");
        ks.setEntry("java-aes", new KeyStore.SecretKeyEntry(spec), null);
        KeyStore again = KeyStore.getInstance("PKCS11", p);
        again.load(null, pin);
        check(again.containsAlias("java-aes") && again.isKeyEntry("java-aes"), "the stored entry is listed");
        SecretKey reloaded = (SecretKey) again.getKey("java-aes", null);
        ct = gcm(p, Cipher.ENCRYPT_MODE, reloaded, iv, msg);
        check(Arrays.equals(gcm(null, Cipher.DECRYPT_MODE, spec, iv, ct), msg), "SunJCE opens the token's GCM");
        ct = gcm(null, Cipher.ENCRYPT_MODE, spec, iv, msg);
        check(Arrays.equals(gcm(p, Cipher.DECRYPT_MODE, reloaded, iv, ct), msg), "the token opens SunJCE's GCM");

        // RSA-2048 and P-384 key pairs generated through the provider, SHA256withRSA,
        // SHA256withRSA/PSS and SHA384withECDSA made in the token and verified outside it.
        KeyPairGenerator rsaGen = KeyPairGenerator.getInstance("RSA", p);
        rsaGen.initialize(2048);
        KeyPair rsa = rsaGen.generateKeyPair();
        signedOutside(p, "SHA256withRSA", "RSA", rsa.getPrivate(), rsa.getPublic(), msg);
        KeyPairGenerator p384Gen = KeyPairGenerator.getInstance("EC", p);
        p384Gen.initialize(new ECGenParameterSpec("secp384r1"));
        KeyPair p384 = p384Gen.generateKeyPair();
        signedOutside(p, "SHA384withECDSA", "EC", p384.getPrivate(), p384.getPublic(), msg);
        String done = "KeyStore, EC P-256/P-384 and RSA-2048 keygen, SHA256withECDSA, SHA384withECDSA and SHA256withRSA (verified outside), AES/GCM/NoPadding (against SunJCE), stored and reloaded secret key entry";

        // Private key entries (RSA and P-384, with their certificates) stored in the token's
        // KeyStore, reloaded, and signing what the certificate's key verifies outside.
        if (args.length > 2) {
            KeyStore file = KeyStore.getInstance("PKCS12");
            try (java.io.FileInputStream in = new java.io.FileInputStream(args[2])) {
                file.load(in, "interop".toCharArray());
            }
            String[][] entries = {{"rsa", "SHA256withRSA", "RSA"}, {"p384", "SHA384withECDSA", "EC"}};
            for (String[] e : entries) {
                KeyStore.PrivateKeyEntry entry = (KeyStore.PrivateKeyEntry) file.getEntry(e[0], new KeyStore.PasswordProtection("interop".toCharArray()));
                ks.setEntry("java-" + e[0], entry, null);
            }
            KeyStore reloaded2 = KeyStore.getInstance("PKCS11", p);
            reloaded2.load(null, pin);
            for (String[] e : entries) {
                String alias = "java-" + e[0];
                check(reloaded2.isKeyEntry(alias), alias + " is a key entry after reloading");
                PrivateKey k = (PrivateKey) reloaded2.getKey(alias, null);
                Certificate c = reloaded2.getCertificate(alias);
                check(c != null, alias + " keeps its certificate");
                signedOutside(p, e[1], e[2], k, c.getPublicKey(), msg);
            }
            done += ", RSA and P-384 private key entries with certificates stored, reloaded and signing";
        }
        System.out.println(done);
    }

    /// Signs `msg` in the token with `alg`, verifies with the default provider and `pub`.
    static void signedOutside(Provider p, String alg, String keyAlg, PrivateKey priv, PublicKey pub, byte[] msg) throws Exception {
        Signature signer = Signature.getInstance(alg, p);
        signer.initSign(priv);
        signer.update(msg);
        byte[] sig = signer.sign();
        PublicKey outside = KeyFactory.getInstance(keyAlg).generatePublic(new X509EncodedKeySpec(pub.getEncoded()));
        Signature verifier = Signature.getInstance(alg);
        check(!verifier.getProvider().getName().startsWith("SunPKCS11"), alg + " verified outside the token");
        verifier.initVerify(outside);
        verifier.update(msg);
        check(verifier.verify(sig), "the default provider verifies the token's " + alg);
    }
}
