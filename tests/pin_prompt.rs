//! PINs typed at a terminal: `keygate` prompts on the terminal with echo off, asks twice for a
//! PIN it sets, and refuses two that differ. The program runs on a pseudo-terminal that is its
//! controlling terminal, as in an operator's shell; the test types each answer only once the
//! prompt is shown *and* the terminal's echo is off (read through the master side), so that
//! what it reads back is what a person at the terminal would have seen.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

/// A pseudo-terminal: (master, slave).
fn openpty() -> (std::fs::File, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: the out-pointers are valid; name, termios and window size may be NULL.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fresh descriptors that nothing else owns.
    let master = unsafe { std::fs::File::from_raw_fd(master) };
    // SAFETY: as above.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    (master, slave)
}

/// Whether the terminal echoes what is typed (the slave's settings, read through the master).
fn echoes(master: &std::fs::File) -> bool {
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid out-pointer.
    let rc = unsafe { libc::tcgetattr(master.as_raw_fd(), &mut t) };
    assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
    t.c_lflag & libc::ECHO != 0
}

/// Whatever the program has written so far, waiting up to `wait` for the first bytes.
fn read_some(master: &mut std::fs::File, wait: Duration) -> Vec<u8> {
    let mut fds = libc::pollfd {
        fd: master.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut fds, 1, wait.as_millis() as i32) };
    if n <= 0 {
        return Vec::new();
    }
    let mut buf = [0u8; 4096];
    match master.read(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(), // EIO: the program has closed the terminal
    }
}

/// Runs `keygate args` on a terminal and answers each prompt in turn; returns everything the
/// terminal showed and whether the program succeeded.
fn on_terminal(args: &[&str], answers: &[(&str, &str)]) -> (String, bool) {
    let (mut master, slave) = openpty();
    let mut cmd = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_keygate")));
    cmd.args(args)
        .env_remove("KEYGATE_LOG")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    /// In the child between fork and exec: a new session, and the terminal on standard input
    /// made its controlling terminal (what /dev/tty opens).
    fn take_terminal() -> std::io::Result<()> {
        // SAFETY: setsid is async-signal-safe and takes no arguments.
        if unsafe { libc::setsid() } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: an async-signal-safe ioctl on descriptor 0, which is the terminal.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    // SAFETY: the hook only makes async-signal-safe calls (take_terminal).
    unsafe {
        cmd.pre_exec(take_terminal);
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // closes the parent's copies of the slave
    let mut shown = Vec::new();
    let mut from = 0;
    for (prompt, answer) in answers {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = String::from_utf8_lossy(&shown[from..]).contains(prompt);
            if seen && !echoes(&master) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no prompt {prompt:?} with echo off; the terminal shows {:?}",
                String::from_utf8_lossy(&shown)
            );
            shown.extend(read_some(&mut master, Duration::from_millis(50)));
        }
        from = shown.len();
        master.write_all(format!("{answer}\n").as_bytes()).unwrap();
    }
    let status = child.wait().unwrap();
    loop {
        let more = read_some(&mut master, Duration::from_millis(200));
        if more.is_empty() {
            break;
        }
        shown.extend(more);
    }
    (String::from_utf8_lossy(&shown).into_owned(), status.success())
}

#[test]
fn init_prompts_for_both_pins_twice_without_echo() {
    let _env = Env::bare();
    let (shown, ok) = on_terminal(
        &["init", "--token", "test"],
        &[
            ("SO PIN: ", SO_PIN),
            ("SO PIN again: ", SO_PIN),
            ("User PIN: ", USER_PIN),
            ("User PIN again: ", USER_PIN),
        ],
    );
    assert!(ok, "{shown}");
    assert!(
        !shown.contains(SO_PIN) && !shown.contains(USER_PIN),
        "a PIN was echoed: {shown:?}"
    );
    // The PINs typed are the token's PINs.
    let p = load_module();
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
    s.logout().unwrap();
    s.login(UserType::So, Some(&AuthPin::from(SO_PIN))).unwrap();
}

#[test]
fn two_different_pins_at_the_prompt_change_nothing() {
    let _env = Env::bare();
    let (shown, ok) = on_terminal(
        &["init", "--token", "test"],
        &[("SO PIN: ", SO_PIN), ("SO PIN again: ", "a-typo-4821")],
    );
    assert!(!ok, "{shown}");
    assert!(shown.contains("the two SO PINs differ"), "{shown:?}");
    assert!(!shown.contains(SO_PIN), "a PIN was echoed: {shown:?}");
    let p = load_module();
    let info = p.get_token_info(Env::slot(&p)).unwrap();
    assert!(!info.token_initialized(), "the token was initialised after a mismatch");
}

#[test]
fn change_pin_asks_the_current_pin_once_and_the_new_one_twice() {
    let _env = populated();
    let new_pin = "new-user-pin-6620";
    let (shown, ok) = on_terminal(
        &["change-pin", "--token", "test"],
        &[
            ("Current user PIN: ", USER_PIN),
            ("New user PIN: ", new_pin),
            ("New user PIN again: ", new_pin),
        ],
    );
    assert!(ok, "{shown}");
    assert!(
        !shown.contains(USER_PIN) && !shown.contains(new_pin),
        "a PIN was echoed: {shown:?}"
    );
    assert!(
        !shown.contains("Current user PIN again"),
        "a login PIN was asked twice: {shown:?}"
    );
    let p = load_module();
    let s = p.open_ro_session(Env::slot(&p)).unwrap();
    s.login(UserType::User, Some(&AuthPin::from(new_pin))).unwrap();
}
