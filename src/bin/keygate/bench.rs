//! `keygate bench`: named workloads against any PKCS#11 module (keygate itself, SoftHSM2, an
//! operator's own HSM), each first checked for correctness by an independent implementation
//! (the RustCrypto crates), then timed for a fixed duration with one session per thread.
//! Reports ops/s, p50/p99 latency and MB/s where it applies.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::{AuthPin, Ulong};

/// Every workload, in the order they run.
pub const WORKLOADS: &[&str] = &[
    "ecdsa-sign",
    "ecdsa-verify",
    "ed25519-sign",
    "ed25519-verify",
    "aes-gcm-64",
    "aes-gcm-64-token",
    "aes-gcm-4k",
    "aes-gcm-1m",
    "aes-wrap",
    "p384-sign",
    "rsa2048-sign",
    "rsa2048-verify",
    "rsa3072-sign",
    "rsa3072-verify",
    "aes-cbc-4k",
    "hmac-sha256-64",
    "sha256-64",
    "random-32",
    "aes-keygen",
    "aes-keygen-destroy",
    "p256-keygen",
    "find-10k",
    "login-logout",
    "open-login-10k",
    "cold-sign",
];

/// Objects `find-10k` looks among.
const FIND_OBJECTS: usize = 10_000;

pub struct Options {
    pub module: std::path::PathBuf,
    pub token: String,
    pub pin: String,
    pub seconds: f64,
    pub threads: usize,
    pub workloads: Vec<String>,
}

/// One workload's result.
pub struct Outcome {
    pub workload: String,
    pub threads: usize,
    pub ops: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub bytes_per_op: usize,
    /// `open-login-10k`: the median C_Login alone, and one Argon2id with keygate's default
    /// parameters, in microseconds.
    pub login: Option<(f64, f64)>,
}

impl Outcome {
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
    pub fn mb_per_s(&self) -> Option<f64> {
        (self.bytes_per_op > 0).then(|| self.ops_per_s() * self.bytes_per_op as f64 / 1e6)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "workload": self.workload, "threads": self.threads, "ops": self.ops,
            "seconds": self.seconds, "ops_per_s": self.ops_per_s(),
            "p50_us": self.p50_us, "p99_us": self.p99_us, "mb_per_s": self.mb_per_s(),
            "login_p50_us": self.login.map(|l| l.0), "argon2id_us": self.login.map(|l| l.1),
        })
    }
}

pub(crate) type BenchResult<T> = Result<T, String>;

/// Generates a 256-bit AES token key labelled `label`.
fn aes_token_key(t: &Session, label: &[u8]) -> BenchResult<cryptoki::object::ObjectHandle> {
    ck(
        t.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(Ulong::from(32)),
                Attribute::Token(true),
                Attribute::Sensitive(true),
                Attribute::Encrypt(true),
                Attribute::Label(label.to_vec()),
            ],
        ),
        "C_GenerateKey",
    )
}

pub(crate) fn ck<T>(r: cryptoki::error::Result<T>, what: &str) -> BenchResult<T> {
    r.map_err(|e| format!("{what}: {e}"))
}

const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// What one thread does per operation, given its session and its index of operation.
pub(crate) type Step<'a> = Box<dyn Fn(&Session, u64) -> BenchResult<()> + Send + Sync + 'a>;

pub(crate) struct Prepared<'a> {
    pub(crate) step: Step<'a>,
    pub(crate) bytes_per_op: usize,
    /// Workloads whose state is per application (login) run on one thread only.
    pub(crate) single_thread: bool,
}

/// Runs every workload of `o`, reporting each as it finishes: its result, or why it could not
/// run (the module refused a step, or a result was wrong). Fails only if the module cannot be
/// used at all.
pub fn run(o: &Options, mut report: impl FnMut(&str, BenchResult<Outcome>)) -> BenchResult<()> {
    let p = ck(Pkcs11::new(&o.module), "loading the module")?;
    ck(
        p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)),
        "C_Initialize",
    )?;
    let slot = find_slot(&p, &o.token)?;
    let admin = ck(p.open_rw_session(slot), "C_OpenSession")?;
    ck(
        admin.login(UserType::User, Some(&AuthPin::from(o.pin.clone()))),
        "C_Login",
    )?;
    for w in &o.workloads {
        if w == "open-login-10k" || w == "cold-sign" {
            report(w, open_login(o, &admin, w));
            continue;
        }
        let outcome = prepare(&admin, w, &o.pin).and_then(|prepared| {
            let threads = if prepared.single_thread { 1 } else { o.threads };
            time(&p, slot, w, threads, o.seconds, &prepared)
        });
        if w == "aes-keygen" {
            // The keys it made, untimed.
            for k in admin
                .find_objects(&[Attribute::Label(b"bench-keygen".to_vec())])
                .unwrap_or_default()
            {
                let _ = admin.destroy_object(k);
            }
        }
        report(w, outcome);
    }
    drop(admin);
    let _ = p.finalize();
    Ok(())
}

/// `keygate bench --raw`: every workload of `o` with its primitive called directly
/// (`bench_raw.rs`), reported like [`run`]'s.
pub fn run_raw(o: &Options, mut report: impl FnMut(&str, BenchResult<Outcome>)) {
    for w in &o.workloads {
        report(
            w,
            super::bench_raw::prepare(w)
                .and_then(|(step, bytes)| measure(w, o.threads, o.seconds, bytes, || Ok(&step))),
        );
    }
}

fn find_slot(p: &Pkcs11, label: &str) -> BenchResult<Slot> {
    // A slot whose token cannot answer (another token of the module, broken) is not the one.
    let mut unreadable = 0;
    for s in ck(p.get_slots_with_token(), "C_GetSlotList")? {
        match p.get_token_info(s) {
            Ok(info) if info.label().trim_end() == label => return Ok(s),
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
    }
    Err(format!(
        "no token labelled {label:?}{}",
        if unreadable > 0 {
            format!(" ({unreadable} slots did not answer C_GetTokenInfo)")
        } else {
            String::new()
        }
    ))
}

fn p256_pair(s: &Session) -> BenchResult<(ObjectHandle, ObjectHandle)> {
    ck(
        s.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(P256_OID.to_vec()), Attribute::Verify(true)],
            &[Attribute::Sign(true), Attribute::Sensitive(true)],
        ),
        "C_GenerateKeyPair (P-256)",
    )
}

fn point(s: &Session, public: ObjectHandle) -> BenchResult<Vec<u8>> {
    match ck(s.get_attributes(public, &[AttributeType::EcPoint]), "CKA_EC_POINT")?.as_slice() {
        [Attribute::EcPoint(v)] if v.len() > 2 && v[0] == 0x04 => Ok(v[2..].to_vec()),
        _ => Err("CKA_EC_POINT is not a DER OCTET STRING".into()),
    }
}

pub(crate) fn aes_key(s: &Session, value: &[u8], extra: &[Attribute]) -> BenchResult<ObjectHandle> {
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Value(value.to_vec()),
    ];
    if !extra.iter().any(|a| matches!(a, Attribute::Sensitive(_))) {
        t.push(Attribute::Sensitive(true));
    }
    t.extend_from_slice(extra);
    ck(s.create_object(&t), "C_CreateObject (AES)")
}

fn gcm_iv(i: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[4..].copy_from_slice(&i.to_be_bytes());
    iv
}

/// Makes a workload's objects in the admin session, checks one operation against an
/// independent implementation, and returns the timed step.
/// A workload step of no particular byte count that may run on several threads.
pub(crate) fn plain(step: Step<'_>) -> Prepared<'_> {
    Prepared {
        step,
        bytes_per_op: 0,
        single_thread: false,
    }
}

fn prepare<'a>(s: &Session, w: &str, pin: &str) -> BenchResult<Prepared<'a>> {
    Ok(match w {
        "ecdsa-sign" | "ecdsa-verify" => prepare_ecdsa(s, w)?,
        "ed25519-sign" | "ed25519-verify" => prepare_ed25519(s, w)?,
        "aes-gcm-64" | "aes-gcm-64-token" | "aes-gcm-4k" | "aes-gcm-1m" => prepare_gcm(s, w)?,
        "p384-sign" => super::bench_mechanisms::p384_sign(s)?,
        "rsa2048-sign" => super::bench_mechanisms::rsa(s, 2048, false)?,
        "rsa2048-verify" => super::bench_mechanisms::rsa(s, 2048, true)?,
        "rsa3072-sign" => super::bench_mechanisms::rsa(s, 3072, false)?,
        "rsa3072-verify" => super::bench_mechanisms::rsa(s, 3072, true)?,
        "aes-cbc-4k" => super::bench_mechanisms::aes_cbc_4k(s)?,
        "hmac-sha256-64" => super::bench_mechanisms::hmac_sha256_64(s)?,
        "aes-wrap" => {
            let kek_value = [0x11u8; 32];
            let target_value = [0x22u8; 32];
            let kek = aes_key(s, &kek_value, &[Attribute::Wrap(true), Attribute::Extractable(false)])?;
            // Not sensitive: a sensitive key is never wrapped under a key known outside.
            let target = aes_key(
                s,
                &target_value,
                &[Attribute::Extractable(true), Attribute::Sensitive(false)],
            )?;
            let wrapped = ck(s.wrap_key(&Mechanism::AesKeyWrap, kek, target), "C_WrapKey")?;
            let outside = aes_kw::KekAes256::from(kek_value);
            if outside.unwrap_vec(&wrapped).ok().as_deref() != Some(&target_value[..]) {
                return Err("C_WrapKey is not RFC 3394".into());
            }
            plain(Box::new(move |t, _| {
                ck(t.wrap_key(&Mechanism::AesKeyWrap, kek, target), "C_WrapKey").map(drop)
            }))
        }
        "sha256-64" => {
            let data = [0x61u8; 64];
            let d = ck(s.digest(&Mechanism::Sha256, &data), "C_Digest")?;
            if d != <sha2::Sha256 as sha2::Digest>::digest(data).to_vec() {
                return Err("C_Digest is not SHA-256".into());
            }
            Prepared {
                step: Box::new(move |t, _| ck(t.digest(&Mechanism::Sha256, &data), "C_Digest").map(drop)),
                bytes_per_op: 64,
                single_thread: false,
            }
        }
        "random-32" => {
            let a = ck(s.generate_random_vec(32), "C_GenerateRandom")?;
            let b = ck(s.generate_random_vec(32), "C_GenerateRandom")?;
            if a == b || a == [0u8; 32] {
                return Err("C_GenerateRandom repeats itself".into());
            }
            plain(Box::new(|t, _| {
                ck(t.generate_random_vec(32), "C_GenerateRandom").map(drop)
            }))
        }
        // A token object: durable once C_GenerateKey returns.
        "aes-keygen" => plain(Box::new(|t, _| aes_token_key(t, b"bench-keygen").map(drop))),
        // A token object made and destroyed: two durable changes of the token.
        "aes-keygen-destroy" => plain(Box::new(|t, _| {
            let k = aes_token_key(t, b"bench-destroy")?;
            ck(t.destroy_object(k), "C_DestroyObject")
        })),
        "p256-keygen" => plain(Box::new(|t, _| {
            let (a, b) = p256_pair(t)?;
            let _ = (t.destroy_object(a), t.destroy_object(b));
            Ok(())
        })),
        "find-10k" => {
            ensure_objects(s)?;
            plain(Box::new(|t, i| {
                let label = format!("bench-find-{}", (i * 7919) % FIND_OBJECTS as u64);
                let found = ck(t.find_objects(&[Attribute::Label(label.into_bytes())]), "C_FindObjects")?;
                if found.len() != 1 {
                    return Err(format!("found {} objects for one label", found.len()));
                }
                Ok(())
            }))
        }
        "login-logout" => {
            // Login state belongs to the application: one thread, and the admin session is
            // logged in again at the end of each step like every other.
            let pin = AuthPin::from(pin.to_string());
            Prepared {
                step: Box::new(move |t, _| {
                    ck(t.logout(), "C_Logout")?;
                    ck(t.login(UserType::User, Some(&pin)), "C_Login")
                }),
                bytes_per_op: 0,
                single_thread: true,
            }
        }
        other => return Err(format!("no workload {other:?} (known: {})", WORKLOADS.join(", "))),
    })
}

/// The `"ecdsa-sign" | "ecdsa-verify"` workloads.
fn prepare_ecdsa<'a>(s: &Session, w: &str) -> BenchResult<Prepared<'a>> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let (public, private) = p256_pair(s)?;
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point(s, public)?).map_err(|e| e.to_string())?;
    let digest = [0x5au8; 32];
    let sig = ck(s.sign(&Mechanism::Ecdsa, private, &digest), "C_Sign (ECDSA)")?;
    let parsed = p256::ecdsa::Signature::from_slice(&sig).map_err(|e| e.to_string())?;
    vk.verify_prehash(&digest, &parsed)
        .map_err(|_| "the ECDSA signature does not verify".to_string())?;
    Ok(if w == "ecdsa-sign" {
        plain(Box::new(move |t, _| {
            ck(t.sign(&Mechanism::Ecdsa, private, &digest), "C_Sign").map(drop)
        }))
    } else {
        plain(Box::new(move |t, _| {
            ck(t.verify(&Mechanism::Ecdsa, public, &digest, &sig), "C_Verify")
        }))
    })
}

/// The `"ed25519-sign" | "ed25519-verify"` workloads.
fn prepare_ed25519<'a>(s: &Session, w: &str) -> BenchResult<Prepared<'a>> {
    let (public, private) = ck(
        s.generate_key_pair(
            &Mechanism::EccEdwardsKeyPairGen,
            &[Attribute::EcParams(ED25519_OID.to_vec()), Attribute::Verify(true)],
            &[Attribute::Sign(true), Attribute::Sensitive(true)],
        ),
        "C_GenerateKeyPair (Ed25519)",
    )?;
    let raw: [u8; 32] = point(s, public)?
        .try_into()
        .map_err(|_| "an Ed25519 point is 32 bytes".to_string())?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|e| e.to_string())?;
    let msg = [0x33u8; 64];
    let m = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
    let sig = ck(s.sign(&m, private, &msg), "C_Sign (EdDSA)")?;
    let parsed = ed25519_dalek::Signature::from_slice(&sig).map_err(|e| e.to_string())?;
    vk.verify_strict(&msg, &parsed)
        .map_err(|_| "the Ed25519 signature does not verify".to_string())?;
    Ok(if w == "ed25519-sign" {
        plain(Box::new(move |t, _| {
            let m = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
            ck(t.sign(&m, private, &msg), "C_Sign").map(drop)
        }))
    } else {
        plain(Box::new(move |t, _| {
            let m = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
            ck(t.verify(&m, public, &msg, &sig), "C_Verify")
        }))
    })
}

/// The `"aes-gcm-64" | "aes-gcm-4k" | "aes-gcm-1m"` workloads with a session key, and
/// `"aes-gcm-64-token"` with a token key (sealed in the store: each operation unseals it unless
/// the token's `key_cache` is on).
fn prepare_gcm<'a>(s: &Session, w: &str) -> BenchResult<Prepared<'a>> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let len = match w {
        "aes-gcm-64" | "aes-gcm-64-token" => 64,
        "aes-gcm-4k" => 4096,
        _ => 1 << 20,
    };
    let value = [0x42u8; 32];
    let token = w == "aes-gcm-64-token";
    let key = aes_key(
        s,
        &value,
        &[
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Token(token),
        ],
    )?;
    let data = vec![0x17u8; len];
    let mut iv = gcm_iv(0);
    let ct = ck(
        s.encrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv, &[], 128.into()).map_err(|e| e.to_string())?),
            key,
            &data,
        ),
        "C_Encrypt (GCM)",
    )?;
    let outside = aes_gcm::Aes256Gcm::new_from_slice(&value).map_err(|e| e.to_string())?;
    let pt = outside
        .decrypt(&gcm_iv(0).into(), Payload { msg: &ct, aad: &[] })
        .map_err(|_| "aes-gcm cannot open the token's ciphertext".to_string())?;
    if pt != data {
        return Err("the token's AES-GCM does not round-trip".into());
    }
    Ok(Prepared {
        step: Box::new(move |t, i| {
            let mut iv = gcm_iv(i);
            let m = Mechanism::AesGcm(GcmParams::new(&mut iv, &[], 128.into()).map_err(|e| e.to_string())?);
            ck(t.encrypt(&m, key, &data), "C_Encrypt").map(drop)
        }),
        bytes_per_op: len,
        single_thread: false,
    })
}

/// The `find-10k` objects (data objects labelled bench-find-N), made once per token.
fn ensure_objects(s: &Session) -> BenchResult<()> {
    let last = format!("bench-find-{}", FIND_OBJECTS - 1);
    if !ck(s.find_objects(&[Attribute::Label(last.into_bytes())]), "C_FindObjects")?.is_empty() {
        return Ok(());
    }
    for i in 0..FIND_OBJECTS {
        ck(
            s.create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Label(format!("bench-find-{i}").into_bytes()),
                Attribute::Value(vec![0u8; 16]),
            ]),
            "C_CreateObject (find-10k)",
        )?;
    }
    Ok(())
}

/// `open-login-10k`: what a new process pays before its first operation, with 10,000 objects on
/// the token: `C_Initialize`, finding the slot, `C_OpenSession` and `C_Login`. Each run is a
/// child process (`keygate bench-open`) that times its own calls, so program start-up is not
/// counted; the rate is runs per second of that time. The median `C_Login` and one Argon2id
/// with keygate's default parameters are reported beside it: on a self-managed token, the PIN
/// KDF is most of a login, a price paid on purpose.
///
/// `cold-sign`: the same in a token without the 10,000 objects' search, and then the first
/// ECDSA signature with a token key found by label: what a program started per request pays.
fn open_login(o: &Options, admin: &Session, w: &str) -> BenchResult<Outcome> {
    let sign = w == "cold-sign";
    if sign {
        ensure_cold_key(admin)?;
    } else {
        ensure_objects(admin)?;
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
    let (mut totals, mut logins) = (Vec::new(), Vec::new());
    while totals.is_empty() || Instant::now() < deadline {
        let out = std::process::Command::new(&exe)
            .arg("bench-open")
            .arg("--module")
            .arg(&o.module)
            .args(["--token", &o.token])
            .args(if sign { &["--sign", COLD_KEY][..] } else { &[] })
            .env("KEYGATE_BENCH_PIN", &o.pin)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "keygate bench-open failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace().map(str::parse::<f64>);
        let (Some(Ok(open)), Some(Ok(login)), Some(Ok(signed))) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("keygate bench-open printed {text:?}"));
        };
        totals.push(open + login + signed);
        logins.push(login);
    }
    let seconds = totals.iter().sum::<f64>() / 1e6;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let login_p50 = median(&mut logins);
    totals.sort_by(f64::total_cmp);
    let argon2 = {
        let p = keygate_pkcs11::backend::local::vault::KdfParams::from(keygate_pkcs11::config::KdfConfig::default());
        let t = Instant::now();
        keygate_pkcs11::backend::local::vault::pin_key(b"bench-pin-not-a-secret", &[7; 16], p)
            .map_err(|e| e.to_string())?;
        t.elapsed().as_secs_f64() * 1e6
    };
    Ok(Outcome {
        workload: w.into(),
        threads: 1,
        ops: totals.len() as u64,
        seconds,
        p50_us: totals[totals.len() / 2],
        p99_us: totals[((totals.len() as f64 * 0.99) as usize).min(totals.len() - 1)],
        bytes_per_op: 0,
        login: Some((login_p50, argon2)),
    })
}

/// `keygate bench-open` (a child of `open-login-10k`): initialises the module, opens a session
/// on the token and logs in; prints the microseconds before `C_Login` and of `C_Login`.
/// The label of `cold-sign`'s P-256 token key.
const COLD_KEY: &str = "bench-cold-sign";

fn ensure_cold_key(s: &Session) -> BenchResult<()> {
    let label = Attribute::Label(COLD_KEY.as_bytes().to_vec());
    if !ck(s.find_objects(std::slice::from_ref(&label)), "C_FindObjects")?.is_empty() {
        return Ok(());
    }
    ck(
        s.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(P256_OID.to_vec()),
                label.clone(),
            ],
            &[Attribute::Token(true), Attribute::Sign(true), label],
        ),
        "C_GenerateKeyPair (cold-sign)",
    )
    .map(drop)
}

/// One new process's C_Initialize to C_OpenSession, its C_Login, and (with `sign`, the label
/// of a P-256 private key) the search for that key and its first ECDSA signature, each in
/// microseconds (0 without `sign`).
pub fn open_once(module: &std::path::Path, token: &str, pin: &str, sign: Option<&str>) -> BenchResult<(f64, f64, f64)> {
    let t0 = Instant::now();
    let p = ck(Pkcs11::new(module), "loading the module")?;
    ck(
        p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)),
        "C_Initialize",
    )?;
    let slot = find_slot(&p, token)?;
    let s = ck(p.open_rw_session(slot), "C_OpenSession")?;
    let t1 = Instant::now();
    ck(
        s.login(UserType::User, Some(&AuthPin::from(pin.to_string()))),
        "C_Login",
    )?;
    let t2 = Instant::now();
    if let Some(label) = sign {
        let key = ck(
            s.find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ]),
            "C_FindObjects",
        )?;
        let key = *key.first().ok_or(format!("no private key {label:?}"))?;
        ck(s.sign(&Mechanism::Ecdsa, key, &[0x5a; 32]), "C_Sign")?;
    }
    let t3 = Instant::now();
    drop(s);
    let _ = p.finalize();
    let us = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e6;
    Ok((us(t0, t1), us(t1, t2), us(t2, t3)))
}

/// Runs `prepared` on `threads` sessions for `seconds`.
fn time(
    p: &Pkcs11,
    slot: Slot,
    w: &str,
    threads: usize,
    seconds: f64,
    prepared: &Prepared<'_>,
) -> BenchResult<Outcome> {
    measure(w, threads, seconds, prepared.bytes_per_op, || {
        let t = ck(p.open_rw_session(slot), "C_OpenSession")?;
        Ok(move |i| (prepared.step)(&t, i))
    })
}

/// Runs on `threads` threads, for `seconds`, the step each thread gets from `setup` (its
/// session, say), timing every operation.
pub(crate) fn measure<F: FnMut(u64) -> BenchResult<()>>(
    w: &str,
    threads: usize,
    seconds: f64,
    bytes_per_op: usize,
    setup: impl Fn() -> BenchResult<F> + Sync,
) -> BenchResult<Outcome> {
    let deadline = Duration::from_secs_f64(seconds);
    let barrier = Barrier::new(threads);
    let per_thread: Vec<BenchResult<Vec<u32>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|n| {
                let (barrier, setup) = (&barrier, &setup);
                scope.spawn(move || -> BenchResult<Vec<u32>> {
                    let mut step = setup()?;
                    let mut lat = Vec::with_capacity(1 << 16);
                    barrier.wait();
                    // One clock reading per operation (its end is the next one's start): the
                    // clock costs ~20 ns a reading here, a tenth of the fastest workloads.
                    let start = Instant::now();
                    let mut t0 = start;
                    let mut i = (n as u64) << 40;
                    loop {
                        step(i)?;
                        let t1 = Instant::now();
                        lat.push((t1 - t0).as_nanos().min(u32::MAX as u128) as u32);
                        t0 = t1;
                        i += 1;
                        if t1 - start >= deadline {
                            break;
                        }
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a bench thread panicked"))
            .collect()
    });
    let mut all = Vec::new();
    for r in per_thread {
        all.extend(r?);
    }
    all.sort_unstable();
    let pct = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |ns| *ns as f64 / 1000.0)
    };
    Ok(Outcome {
        workload: w.to_string(),
        threads,
        ops: all.len() as u64,
        seconds,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        bytes_per_op,
        login: None,
    })
}
