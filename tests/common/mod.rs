//! Test harness: a throw-away SoftHSM2 root token, a throw-away keygate store and config, and
//! the BUILT `libkeygate_pkcs11.so` loaded through cryptoki exactly as a client loads it.
//! Tests run one per process (cargo nextest), so the module's global state is never shared.
//! PINs here are throw-away values for throw-away stores.
#![allow(dead_code)]
#![allow(unused_macros)]

/// Calls a function of a raw function list (see [`raw::raw`]).
macro_rules! call {
    ($r:expr, $name:ident($($a:expr),*)) => {
        // SAFETY: the test passes the pointers it means to, NULL included.
        unsafe { ($r.f.$name.unwrap())($($a),*) }
    };
}

pub mod raw;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

pub const SO_PIN: &str = "test-so-4821";
pub const USER_PIN: &str = "test-user-9375";
pub const ROOT_PIN: &str = "test-root-5519";
pub const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The policy line of the suite's tokens (see [`Env::bare`]).
pub const EXPORT_ALLOWED: &str = "policy = { allow_export = true }\n";
/// Token lines giving the token a mirror, `mirror.db` beside the store ([`Env::mirror`]).
pub const MIRRORED: &str = "mirror = \"@DIR@/mirror.db\"\n";

/// What the generic suite (tests/crypto.rs, tests/objects.rs) runs against, chosen by
/// `KEYGATE_TEST_TARGET`: a self-managed keygate token (the default), an hsm-mode keygate token
/// over SoftHSM2, or SoftHSM2 loaded directly, so every difference between keygate and the HSM
/// underneath shows up as a test that names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    SelfManaged,
    Hsm,
    SoftHsm,
}

pub fn target() -> Target {
    match std::env::var("KEYGATE_TEST_TARGET").as_deref() {
        Err(_) | Ok("") | Ok("self-managed") => Target::SelfManaged,
        Ok("hsm") => Target::Hsm,
        Ok("softhsm") => Target::SoftHsm,
        Ok(other) => panic!("KEYGATE_TEST_TARGET={other:?}: expected self-managed, hsm or softhsm"),
    }
}

/// What the test expects: keygate's answer (the specification's, in both modes), or SoftHSM2's
/// where SoftHSM2 2.6.1 answers differently. Each call site says why they differ.
pub fn unless_softhsm<T>(keygate: T, softhsm: T) -> T {
    if target() == Target::SoftHsm {
        softhsm
    } else {
        keygate
    }
}

/// The module the tests load: keygate's built .so, or SoftHSM2 itself for [`Target::SoftHsm`].
pub fn target_module() -> PathBuf {
    match target() {
        Target::SoftHsm => PathBuf::from(SOFTHSM),
        _ => module_path(),
    }
}

pub fn module_path() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let p = dir.join(profile).join("libkeygate_pkcs11.so");
    assert!(p.exists(), "{} not built: run `cargo build` first", p.display());
    p
}

/// The two kinds of keygate token, for tests that run against both.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    SelfManaged,
    Hsm,
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A fresh root token and keygate config; the keygate token is NOT initialised. Its policy
    /// allows export, because the suite exercises extractable and readable keys as PKCS#11
    /// defines them; the policy tests make tokens without it.
    pub fn bare() -> Env {
        Self::bare_with(EXPORT_ALLOWED)
    }

    pub fn bare_with(extra_token_config: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("tokens")).unwrap();
        let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/softhsm-conf/softhsm2.conf.in"))
            .unwrap()
            .replace("@TOKENDIR@", d.join("tokens").to_str().unwrap());
        std::fs::write(d.join("softhsm2.conf"), conf).unwrap();
        // SAFETY-free: tests run one per process (nextest), so setting the environment is sound.
        std::env::set_var("SOFTHSM2_CONF", d.join("softhsm2.conf"));
        std::env::set_var("KEYGATE_ROOT_PIN", ROOT_PIN);
        softhsm_token("keygate-root", "root-so-1111", ROOT_PIN);
        let extra_token_config = extra_token_config.replace("@DIR@", d.to_str().unwrap());
        let toml = format!(
            "[[token]]\nlabel = \"test\"\nmode = \"self-managed\"\nstore = \"{}\"\nroot = {{ module = \"{SOFTHSM}\", token = \"keygate-root\", pin_env = \"KEYGATE_ROOT_PIN\" }}\n{extra_token_config}",
            d.join("test.db").display()
        );
        let cfg = d.join("keygate.toml");
        std::fs::write(&cfg, toml).unwrap();
        std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        std::env::set_var("KEYGATE_CONF", &cfg);
        Env { dir }
    }

    /// An hsm-mode keygate token "test" forwarding to a fresh SoftHSM2 token "hsm-app" whose SO
    /// and user PINs are the test PINs. `hsm_extra` is added inside the `hsm = { … }` table.
    pub fn hsm_with(hsm_extra: &str) -> Env {
        Self::hsm_token(hsm_extra, EXPORT_ALLOWED)
    }

    /// As [`Env::hsm_with`], with `token_extra` lines in the keygate token's table.
    pub fn hsm_token(hsm_extra: &str, token_extra: &str) -> Env {
        let env = Self::bare();
        softhsm_token("hsm-app", SO_PIN, USER_PIN);
        let toml = format!(
            "[[token]]\nlabel = \"test\"\nmode = \"hsm\"\nhsm = {{ module = \"{SOFTHSM}\", token = \"hsm-app\"{hsm_extra} }}\n{token_extra}"
        );
        std::fs::write(env.path().join("keygate.toml"), toml).unwrap();
        env
    }

    /// An initialised token of `mode` with `token_extra` lines (in place of the export policy).
    pub fn of(mode: Mode, token_extra: &str) -> Env {
        match mode {
            Mode::SelfManaged => Self::new_with(token_extra),
            Mode::Hsm => Self::hsm_token("", token_extra),
        }
    }

    pub fn hsm() -> Env {
        Self::hsm_with("")
    }

    /// A fresh, initialised token (SO and user PIN set) through the module's own C_InitToken,
    /// C_Login(SO) and C_InitPIN.
    pub fn new() -> Env {
        Self::new_with(EXPORT_ALLOWED)
    }

    /// As [`Env::new`], with `token_extra` lines (in place of the export policy) in the token's
    /// table.
    ///
    /// Under `KEYGATE_TEST_TARGET=hsm` this is an hsm-mode token over SoftHSM2, and under
    /// `softhsm` a SoftHSM2 token "test" with the same PINs, loaded without keygate.
    pub fn new_with(token_extra: &str) -> Env {
        match target() {
            Target::SelfManaged => {}
            Target::Hsm => return Self::hsm_token("", token_extra),
            Target::SoftHsm => {
                let env = Self::bare_with(token_extra);
                softhsm_token("test", SO_PIN, USER_PIN);
                return env;
            }
        }
        let env = Self::bare_with(token_extra);
        let p = env.load();
        drop(initialise_token(&p));
        p.finalize().unwrap();
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.path().join("test.db")
    }

    /// The store's mirror, for tokens made with [`MIRRORED`].
    pub fn mirror(&self) -> PathBuf {
        self.path().join("mirror.db")
    }

    /// The module, loaded and initialised like a client does it.
    pub fn load(&self) -> Pkcs11 {
        load_module()
    }

    /// The slot of the token labelled "test" (keygate has one slot per token; SoftHSM2 also
    /// shows its root token and a free slot).
    pub fn slot(p: &Pkcs11) -> Slot {
        let slots = p.get_slots_with_token().unwrap();
        if target() != Target::SoftHsm {
            return slots[0];
        }
        *slots
            .iter()
            .find(|s| p.get_token_info(**s).map(|t| t.label() == "test").unwrap_or(false))
            .expect("a token labelled test")
    }

    /// A logged-in read/write session.
    pub fn user_session(p: &Pkcs11) -> Session {
        let s = p.open_rw_session(Self::slot(p)).unwrap();
        s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
        s
    }

    /// Runs the `keygate` CLI against this environment.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_keygate"));
        Command::new(bin).args(args).output().unwrap()
    }
}

/// `keygate init` of the test token, the PINs in `KG_SO` and `KG_USER`.
pub const INIT_ARGS: [&str; 7] = [
    "init",
    "--token",
    "test",
    "--so-pin-env",
    "KG_SO",
    "--pin-env",
    "KG_USER",
];

/// `keygate rotate-*` arguments naming the test token and both PINs, in the variables the CLI
/// tests set (`KG_SO`, `KG_USER`).
pub const ROTATION_ARGS: [&str; 6] = ["--token", "test", "--so-pin-env", "KG_SO", "--pin-env", "KG_USER"];

/// The target module, loaded and initialised like a client does it, with the configuration
/// the environment names (a child process inherits its parent's [`Env`] this way).
pub fn load_module() -> Pkcs11 {
    let p = Pkcs11::new(target_module()).unwrap();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    p
}

/// A number from the environment variable `name` (the long variants in ci/stress set them),
/// else `default`.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A fresh token on the SoftHSM2 configured by `SOFTHSM2_CONF`.
fn softhsm_token(label: &str, so_pin: &str, pin: &str) {
    let ok = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            so_pin,
            "--pin",
            pin,
        ])
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "softhsm2-util --init-token failed");
}

/// C_InitToken with the SO PIN, then the SO sets the user PIN through C_InitPIN; returns the
/// read/write session, with nobody logged in.
pub fn initialise_token(p: &Pkcs11) -> Session {
    let slot = Env::slot(p);
    p.init_token(slot, &AuthPin::from(SO_PIN), "test").unwrap();
    let s = p.open_rw_session(slot).unwrap();
    s.login(UserType::So, Some(&AuthPin::from(SO_PIN))).unwrap();
    s.init_pin(&AuthPin::from(USER_PIN)).unwrap();
    s.logout().unwrap();
    s
}

/// The `CKR_*` of a call that should have failed.
pub fn rv<T: std::fmt::Debug>(r: Result<T, cryptoki::error::Error>) -> cryptoki::error::RvError {
    match r {
        Err(e) => rv_of(e),
        Ok(v) => panic!("expected a CKR_ error, got Ok({v:?})"),
    }
}

/// The `CKR_*` of an error.
pub fn rv_of(e: cryptoki::error::Error) -> cryptoki::error::RvError {
    match e {
        cryptoki::error::Error::Pkcs11(rv, _) => rv,
        other => panic!("expected a CKR_ error, got {other:?}"),
    }
}

/// AES-GCM with a 96-bit IV, no additional data and a 128-bit tag.
pub fn gcm(iv: &mut [u8; 12]) -> Mechanism<'_> {
    Mechanism::AesGcm(GcmParams::new(iv, b"", 128.into()).unwrap())
}

/// The record identifier of the object labelled `label`, read from the store with rusqlite
/// (only where no module in this process has the store open: see tests/freshness.rs).
pub fn uid_of(conn: &rusqlite::Connection, label: &str) -> Vec<u8> {
    conn.query_row("SELECT uid FROM objects WHERE label = ?1", [label.as_bytes()], |r| {
        r.get(0)
    })
    .unwrap()
}

/// Imports a P-256 public key (`CKA_EC_POINT` as a DER OCTET STRING).
pub fn import_p256_public(s: &Session, vk: &p256::ecdsa::VerifyingKey) -> ObjectHandle {
    let mut point = vec![0x04, 65];
    point.extend_from_slice(vk.to_encoded_point(false).as_bytes());
    s.create_object(&[
        Attribute::Class(cryptoki::object::ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(cryptoki::object::KeyType::EC),
        Attribute::EcParams(P256_OID.to_vec()),
        Attribute::EcPoint(point),
    ])
    .unwrap()
}

/// Imports a secret key of `kt` with a known value, plus `extra` attributes (usage flags…).
pub fn import_secret(s: &Session, kt: cryptoki::object::KeyType, value: &[u8], extra: &[Attribute]) -> ObjectHandle {
    let mut t = vec![
        Attribute::Class(cryptoki::object::ObjectClass::SECRET_KEY),
        Attribute::KeyType(kt),
        Attribute::Value(value.to_vec()),
    ];
    t.extend_from_slice(extra);
    s.create_object(&t).unwrap()
}

/// Generates a readable, extractable AES session key of `len` bytes (for tests that check the
/// value a token made).
pub fn readable_aes(s: &Session, len: u64) -> ObjectHandle {
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::ValueLen(len.into()),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ],
    )
    .unwrap()
}

/// `keygate change-pin` of the user PIN of the token "test", the PINs in `old` and `new`.
pub fn change_pin_args<'a>(old: &'a str, new: &'a str) -> [&'a str; 7] {
    [
        "change-pin",
        "--token",
        "test",
        "--old-pin-env",
        old,
        "--new-pin-env",
        new,
    ]
}

/// Generates a 256-bit AES token key for encryption and decryption, labelled `label`.
pub fn aes_token_key(s: &Session, label: &str) {
    s.generate_key(
        &cryptoki::mechanism::Mechanism::AesKeyGen,
        &[
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Label(label.into()),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ],
    )
    .unwrap();
}

pub fn find_one(s: &Session, label: &str) -> Option<ObjectHandle> {
    s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .unwrap()
        .into_iter()
        .next()
}

/// The raw 65-byte point from a DER `CKA_EC_POINT`.
pub fn ec_point(s: &Session, key: ObjectHandle) -> Vec<u8> {
    let attrs = s
        .get_attributes(key, &[cryptoki::object::AttributeType::EcPoint])
        .unwrap();
    match &attrs[0] {
        Attribute::EcPoint(v) => {
            assert_eq!(v[0], 0x04, "CKA_EC_POINT is a DER OCTET STRING");
            assert_eq!(v[1] as usize, v.len() - 2);
            v[2..].to_vec()
        }
        other => panic!("unexpected {other:?}"),
    }
}

pub const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// Sends this process's standard error (fd 2, which the module's logger and child processes
/// write to) into `path` until dropped.
pub struct Redirect(i32);

impl Redirect {
    pub fn to(path: &std::path::Path) -> Redirect {
        let file = std::fs::File::create(path).unwrap();
        // SAFETY: plain descriptor calls on descriptors this process owns.
        let saved = unsafe { libc::dup(2) };
        assert!(saved >= 0);
        // SAFETY: as above.
        assert!(unsafe { libc::dup2(file.as_raw_fd(), 2) } >= 0);
        Redirect(saved)
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        // SAFETY: restores the descriptor saved in `to`.
        unsafe { libc::dup2(self.0, 2) };
        // SAFETY: closes the saved copy, which nothing else uses.
        unsafe { libc::close(self.0) };
    }
}

// Populated tokens, for the tests of the CLI and the mirror.

/// Encrypts and decrypts with the key labelled `label`; checks the round trip.
pub fn gcm_works(s: &Session, label: &str) -> bool {
    let Some(k) = find_one(s, label) else { return false };
    let mut iv = [7u8; 12];
    let ct = match s.encrypt(
        &Mechanism::AesGcm(GcmParams::new(&mut iv, b"aad", 128.into()).unwrap()),
        k,
        b"plaintext",
    ) {
        Ok(ct) => ct,
        Err(_) => return false,
    };
    let pt = s.decrypt(
        &Mechanism::AesGcm(GcmParams::new(&mut iv, b"aad", 128.into()).unwrap()),
        k,
        &ct,
    );
    pt.map(|p| p == b"plaintext").unwrap_or(false)
}

/// An initialised token holding AES keys "a", "b", "c" and a P-256 pair "pub"/"priv"; the module
/// is finalised again, so the store is one closed file.
pub fn populated() -> Env {
    populated_with(EXPORT_ALLOWED)
}

/// As [`populated`], with `token_extra` lines in the token's table.
pub fn populated_with(token_extra: &str) -> Env {
    pins_in_env();
    let env = Env::new_with(token_extra);
    let p = env.load();
    let s = Env::user_session(&p);
    for l in ["a", "b", "c"] {
        aes_token_key(&s, l);
    }
    s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[
            Attribute::EcParams(P256_OID.to_vec()),
            Attribute::Token(true),
            Attribute::Label("pub".into()),
        ],
        &[
            Attribute::Token(true),
            Attribute::Label("priv".into()),
            Attribute::Sign(true),
        ],
    )
    .unwrap();
    drop(s);
    p.finalize().unwrap();
    env
}

/// Every AES key of `labels` works through a fresh load of the module.
pub fn all_work(labels: &[&str]) -> bool {
    let p = load_module();
    let s = Env::user_session(&p);
    let ok = labels.iter().all(|l| gcm_works(&s, l));
    drop(s);
    p.finalize().unwrap();
    ok
}

// The `keygate` CLI, for the tests that run it.

/// The PINs reach the CLI through these variables (throw-away values, as everywhere here).
pub fn pins_in_env() {
    std::env::set_var("KG_SO", SO_PIN);
    std::env::set_var("KG_USER", USER_PIN);
    std::env::set_var("KG_WRONG", "not-the-pin-0000");
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the CLI and expects success.
pub fn ok(env: &Env, args: &[&str]) -> String {
    let o = env.cli(args);
    assert!(o.status.success(), "keygate {args:?} failed: {}", stderr(&o));
    stdout(&o)
}

/// The identifier `keygate list` gives the object labelled `label` (the private key, for a
/// key pair), with the user PIN from `KG_USER`.
pub fn uid(env: &Env, label: &str) -> String {
    let out = ok(env, &["list", "--token", "test", "--pin-env", "KG_USER", "--json"]);
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["label"] == label && v["class"] != "public-key")
        .map(|v| v["uid"].as_str().unwrap().to_string())
        .next()
        .unwrap_or_else(|| panic!("no {label:?} in {out}"))
}

/// `keygate destroy` of the object labelled `label`, confirmed, with the user PIN from `KG_USER`.
pub fn destroy_by_cli(env: &Env, label: &str) {
    let id = uid(env, label);
    ok(
        env,
        &["destroy", "--token", "test", "--yes", "--pin-env", "KG_USER", &id],
    );
}

/// Runs the CLI and expects exit code 1 with one `keygate: ...` line naming `why`.
pub fn fails(env: &Env, args: &[&str], why: &str) -> std::process::Output {
    let o = env.cli(args);
    assert_eq!(o.status.code(), Some(1), "keygate {args:?}: {o:?}");
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.starts_with("keygate: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains(why), "{line:?} should say {why:?}");
    o
}
