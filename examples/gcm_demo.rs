//! AES-256-GCM through keygate with the `cryptoki` crate, for `ci/demo` (Debian 12's
//! pkcs11-tool has no AES-GCM). Usage: gcm_demo MODULE TOKEN_LABEL PIN KEY_LABEL
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, module, token, pin, label] = &args[..] else {
        return Err("usage: gcm_demo MODULE TOKEN_LABEL PIN KEY_LABEL".into());
    };
    let p11 = Pkcs11::new(module)?;
    p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = *p11
        .get_slots_with_token()?
        .iter()
        .find(|s| p11.get_token_info(**s).is_ok_and(|i| i.label() == token))
        .ok_or("token not found")?;
    let session = p11.open_ro_session(slot)?;
    session.login(UserType::User, Some(&AuthPin::from(pin.clone())))?;
    let key = *session
        .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])?
        .first()
        .ok_or("key not found")?;
    let mut iv = session.generate_random_vec(12)?;
    let plaintext = b"attack at dawn, via keygate";
    let ct = session.encrypt(
        &Mechanism::AesGcm(GcmParams::new(&mut iv, b"demo-aad", 128.into())?),
        key,
        plaintext,
    )?;
    println!(
        "AES-GCM encrypt: {} bytes of plaintext -> {} bytes (ciphertext + tag)",
        plaintext.len(),
        ct.len()
    );
    let pt = session.decrypt(
        &Mechanism::AesGcm(GcmParams::new(&mut iv, b"demo-aad", 128.into())?),
        key,
        &ct,
    )?;
    if pt != plaintext {
        return Err("decrypted text differs".into());
    }
    println!("AES-GCM decrypt: recovered {:?}", String::from_utf8_lossy(&pt));
    let mut bad = ct.clone();
    bad[0] ^= 1;
    let tampered = session.decrypt(
        &Mechanism::AesGcm(GcmParams::new(&mut iv, b"demo-aad", 128.into())?),
        key,
        &bad,
    );
    println!(
        "AES-GCM decrypt of a tampered ciphertext: {}",
        if tampered.is_err() { "refused" } else { "ACCEPTED (bug)" }
    );
    if tampered.is_ok() {
        return Err("tampered ciphertext accepted".into());
    }
    Ok(())
}
