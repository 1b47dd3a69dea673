// JDK 17's SunPKCS11 provider against one keygate token; results checked with the JDK's own
// providers (SunEC, SunJCE). These are the README's "Using keygate from Java" calls.
//
// Usage: java KeygateClient SUNPKCS11_CONFIG PIN
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.Provider;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Security;
import java.security.Signature;
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
        System.out.println("KeyStore, EC P-256 keygen, SHA256withECDSA (verified by SunEC), AES/GCM/NoPadding (against SunJCE), stored and reloaded secret key entry");
    }
}
