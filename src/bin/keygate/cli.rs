//! The command line: the clap schema of every subcommand (the source of `keygate --help` and
//! the man pages).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keygate", version, about = "Administer keygate tokens")]
pub struct Cli {
    /// Configuration file (default: KEYGATE_CONF, then XDG, then /etc/keygate/keygate.toml).
    #[arg(long, global = true)]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create (or re-create, destroying every object) a token: root key in the HSM, store,
    /// SO PIN and user PIN. PINs are read from the environment variables named; else, on a
    /// terminal, asked for twice each with echo off; else read from standard input (SO PIN on
    /// the first line, user PIN on the second).
    Init {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// Environment variable holding the SO PIN.
        #[arg(long)]
        so_pin_env: Option<String>,
        /// Environment variable holding the user PIN.
        #[arg(long)]
        pin_env: Option<String>,
    },
    /// Show each token: initialised or not, PIN state, object count.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Instead: list the keygate root keys on the configured root HSM tokens that no
        /// configured token's store uses (left by a token removed from the configuration, or
        /// by a failed run of an older keygate), with their label and CKA_ID.
        #[arg(long)]
        orphans: bool,
    },
    /// List the token's objects: identifier, class, key type, label, CKA_ID and flags. Without
    /// a PIN, public objects only.
    List(ReadArgs),
    /// Check a self-managed token's store: the file's structure, the header's MAC, every
    /// record's MAC, and that the objects are exactly those the header vouches for; with the
    /// user PIN, also that every sealed secret opens. Exit code 0 only if everything passes.
    Verify(ReadArgs),
    /// Write a consistent copy of a self-managed token's store while the token stays in use, and
    /// verify it. The copy is as sealed as the store: useless without the HSM root and a PIN.
    Backup {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// The file to create (must not exist).
        #[arg(long)]
        to: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Replace a self-managed token's store with a backup, or without --from rebuild it from
    /// the token's mirror, after checking that the copy verifies under this token's HSM root.
    /// When the store verifies, rebuilding from the mirror changes nothing in the store and
    /// brings the mirror into step with it.
    Restore {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// The backup file; without it, the token's mirror.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Environment variable holding the SO PIN: a copy older than the token's HSM anchor
        /// (one that undoes later changes) is restored only with it.
        #[arg(long)]
        so_pin_env: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Change the user PIN (or with --so the SO PIN). Only the data key is re-wrapped. PINs come
    /// from the variables named; else, on a terminal, asked for with echo off (the new one
    /// twice); else from standard input: old PIN first, new PIN second.
    ChangePin {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// Change the SO PIN instead of the user PIN.
        #[arg(long)]
        so: bool,
        /// Environment variable holding the current PIN.
        #[arg(long)]
        old_pin_env: Option<String>,
        /// Environment variable holding the new PIN.
        #[arg(long)]
        new_pin_env: Option<String>,
    },
    /// Re-seal every secret of a self-managed token under a new data key, in one transaction.
    /// Needs both PINs (the data key is wrapped for each): SO PIN first, user PIN second on
    /// standard input, or the variables named. Processes logged in with the old key must log in
    /// again.
    RotateDek(RotateArgs),
    /// Create a new root key in the HSM, move the self-managed token onto it (every record
    /// re-MACed, the data key re-wrapped, in one transaction) and destroy the old root key.
    /// Backups made before stay tied to the old root key, and so become unusable. PINs as for
    /// rotate-dek.
    RotateRoot(RotateArgs),
    /// Import a key or certificate from a file (PEM or DER): a PKCS#8, SEC 1 or PKCS#1 private
    /// key (imported with its public key), a public key, an X.509 certificate, or with --aes a
    /// raw AES key. The token's rules and policy apply as to C_CreateObject; audited.
    Import(ImportArgs),
    /// Revoke a key of a self-managed token, for good: it no longer signs, encrypts, wraps or
    /// derives, but still verifies and decrypts what was made before. Recorded in the audit
    /// trail; survives backup and restore.
    Revoke {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// The key's identifier, as `keygate list` prints it.
        key: String,
        /// Why: compromised, superseded, cessation, affiliation-changed or unspecified.
        #[arg(long)]
        reason: String,
        /// Environment variable holding the user PIN (else asked for on the terminal, or read
        /// from standard input).
        #[arg(long)]
        pin_env: Option<String>,
    },
    /// Destroy one object of a self-managed token (its record is deleted and overwritten in the
    /// store and its mirror), or with --all the whole token: the HSM root key first, which makes
    /// the store, the mirror and every backup unreadable for good, then the files. Asks for
    /// confirmation on a terminal; --yes confirms in scripts.
    Destroy {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// The object's identifier, as `keygate list` prints it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        key: Option<String>,
        /// Destroy the whole token, root key included (needs the SO PIN).
        #[arg(long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Environment variable holding the user PIN (one object) or the SO PIN (--all); else
        /// asked for on the terminal, or read from standard input.
        #[arg(long)]
        pin_env: Option<String>,
    },
    /// Show the audit trail the configuration names (`[audit] path`): one line per event, oldest
    /// first, optionally only one token's and only the last N.
    Audit {
        /// Only this token's events.
        #[arg(long)]
        token: Option<String>,
        /// Only the last N events (after the token filter).
        #[arg(long)]
        last: Option<usize>,
        /// The trail's own JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Measure a PKCS#11 module (keygate by default, or any other: SoftHSM2, your HSM) on named
    /// workloads. Each workload is checked for correctness first (signatures verify, ciphertexts
    /// decrypt, outside keygate), then timed with one session per thread. Prints ops/s, p50/p99
    /// latency and MB/s. It creates objects on the token (find-10k leaves 10,000 data objects):
    /// use a token made for measuring.
    Bench(BenchArgs),
    /// One run of `keygate bench`'s open-login-10k or cold-sign workload, in a process of its
    /// own: prints the microseconds before C_Login, of C_Login, and of the first signature (0
    /// without --sign). The PIN comes from KEYGATE_BENCH_PIN.
    #[command(hide = true)]
    BenchOpen {
        #[arg(long)]
        module: PathBuf,
        #[arg(long)]
        token: String,
        /// Then find this P-256 private key by label and sign once with it.
        #[arg(long)]
        sign: Option<String>,
    },
    /// Write the manual pages, generated from these definitions: keygate.1 and one
    /// keygate-SUBCOMMAND.1 per subcommand (install them under /usr/share/man/man1).
    Man {
        /// The directory to write them into (created if missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell (packages
    /// install it; by hand: keygate completions bash > ~/.local/share/bash-completion/completions/keygate).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the fingerprint of each key with a label or CKA_ID, and the `pins` entry that ties
    /// the identifier to it: SHA-256 of the public key (DER SubjectPublicKeyInfo) for key pairs,
    /// the key check value for secret keys.
    Fingerprint {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// The keys' CKA_LABEL.
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        label: Option<String>,
        /// The keys' CKA_ID, in hex.
        #[arg(long)]
        id: Option<String>,
        /// Environment variable holding the user PIN (the HSM's, for an hsm-mode token with
        /// pass-through login), to see private objects too.
        #[arg(long)]
        pin_env: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// What `list` and `verify` take: the token, and the user PIN if private objects are to be
/// seen (and, for `verify`, sealed secrets opened).
#[derive(clap::Args)]
pub struct ReadArgs {
    /// Label of the token in the configuration.
    #[arg(long)]
    pub token: String,
    /// Environment variable holding the user PIN; without it, public objects only (a wrong
    /// PIN counts as one).
    #[arg(long)]
    pub pin_env: Option<String>,
    /// Machine-readable output, one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// What both rotations take: the token and both PINs.
#[derive(clap::Args)]
pub struct RotateArgs {
    /// Label of the token in the configuration.
    #[arg(long)]
    pub token: String,
    /// Environment variable holding the SO PIN.
    #[arg(long)]
    pub so_pin_env: Option<String>,
    /// Environment variable holding the user PIN.
    #[arg(long)]
    pub pin_env: Option<String>,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The PKCS#11 module (default: libkeygate_pkcs11.so beside this program).
    #[arg(long)]
    pub module: Option<std::path::PathBuf>,
    /// Label of the token to measure.
    #[arg(long, required_unless_present_any = ["list", "raw"])]
    pub token: Option<String>,
    /// Environment variable holding the token's user PIN.
    #[arg(long, required_unless_present_any = ["list", "raw"])]
    pub pin_env: Option<String>,
    /// Measure no module: call each workload's primitive directly in this process (the crate or
    /// OpenSSL keygate's self-managed token uses, the key ready), the ceiling a module's figure
    /// is compared with. Workloads that measure a token (key generation, find, login) do not run.
    #[arg(long, conflicts_with_all = ["module", "token", "pin_env"])]
    pub raw: bool,
    /// Seconds each workload is timed for.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Threads (one session each).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// A workload to run (repeatable; default: all; `--list` names them).
    #[arg(long = "workload")]
    pub workloads: Vec<String>,
    /// Print the workloads' names and stop.
    #[arg(long)]
    pub list: bool,
    /// Machine-readable output, one JSON object per workload.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// Label of the token in the configuration.
    #[arg(long)]
    pub token: String,
    /// The file holding the key or certificate.
    pub file: std::path::PathBuf,
    /// CKA_LABEL of the objects made.
    #[arg(long)]
    pub label: String,
    /// CKA_ID in hex; by default SHA-1 of the public key (the EC point, Ed25519 key or RSA
    /// modulus), so that a key and its certificate imported apart share one.
    #[arg(long)]
    pub id: Option<String>,
    /// The file is a raw AES key: 16, 24 or 32 bytes, or as many in hex.
    #[arg(long)]
    pub aes: bool,
    /// Environment variable holding the user PIN (else asked for on the terminal, or read from
    /// standard input).
    #[arg(long)]
    pub pin_env: Option<String>,
}
