//! Issue 16 item 8: the configuration and every credential file are trusted only as sshd's
//! StrictModes trusts a file: they, and every directory and link on the way to them, belong to
//! root or to the user keygate runs as and are writable by nobody else. Each test makes one
//! thing on the way belong to, or be writable by, someone else, and checks that the built CLI
//! refuses it with a line naming the file and the rule. Changing a file's owner needs root; as
//! another user these tests say so and check nothing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

const NOBODY: u32 = 65534;

fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap()
        .to_string();
    if euid != "0" {
        eprintln!("not root: cannot give files to another user here; nothing checked");
    }
    euid == "0"
}

fn refused(conf: &Path, why: &str) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["status"])
        .env("KEYGATE_CONF", conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(why) && err.contains("refusing it"),
        "{err:?} should say {why:?}"
    );
}

#[test]
fn a_configuration_another_user_owns_is_refused() {
    if !running_as_root() {
        return;
    }
    let env = Env::new();
    let conf = env.path().join("keygate.toml");
    keygate_ok(&conf);
    std::os::unix::fs::chown(&conf, Some(NOBODY), None).unwrap();
    refused(&conf, &format!("belongs to uid {NOBODY}"));
}

#[test]
fn a_configuration_reached_through_a_writable_directory_is_refused() {
    if !running_as_root() {
        return;
    }
    let env = Env::new();
    let conf = env.path().join("keygate.toml");
    // A link to the (sound) configuration, in a directory everyone may write: someone else
    // could point it elsewhere.
    let open = env.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let link = open.join("keygate.toml");
    std::os::unix::fs::symlink(&conf, &link).unwrap();
    refused(&link, "is writable by group or others (mode 0777)");
    // The same directory with the sticky bit (as /tmp) protects the link root made there.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    keygate_ok(&link);
    // A link that belongs to another user is refused even there.
    std::os::unix::fs::lchown(&link, Some(NOBODY), None).unwrap();
    refused(&link, &format!("belongs to uid {NOBODY}"));
}

#[test]
fn a_root_pin_file_another_user_owns_is_refused() {
    if !running_as_root() {
        return;
    }
    let env = Env::new();
    let pin_file = env.path().join("root.pin");
    std::fs::write(&pin_file, format!("{ROOT_PIN}\n")).unwrap();
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf = env.path().join("keygate.toml");
    let text = std::fs::read_to_string(&conf).unwrap().replace(
        "pin_env = \"KEYGATE_ROOT_PIN\"",
        &format!("pin_file = \"{}\"", pin_file.display()),
    );
    std::fs::write(&conf, text).unwrap();
    keygate_ok(&conf);
    std::os::unix::fs::chown(&pin_file, Some(NOBODY), None).unwrap();
    let o = env.cli(&["verify", "--token", "test"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("root.pin belongs to uid {NOBODY}")), "{err}");
}

fn keygate_ok(conf: &Path) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["status"])
        .env("KEYGATE_CONF", conf)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}
