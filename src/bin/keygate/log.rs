//! The program's log: each error is one line.
//!
//! The module's library logs for PKCS#11 clients, which see only a `CKR_*` code; this program
//! prints the error itself, so at the default level the library's error lines would say it a
//! second time. Unless `KEYGATE_LOG` asks for the library's log, its warnings are held and
//! printed after a command that succeeded (`keygate: warning: …`), and dropped after one that
//! failed; its error lines are dropped (the command's error says what went wrong).

use log::{Level, LevelFilter, Log, Metadata, Record};
use parking_lot::Mutex;

struct Held(Mutex<Vec<String>>);

static HELD: Held = Held(Mutex::new(Vec::new()));

impl Log for Held {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= Level::Warn
    }

    fn log(&self, record: &Record) {
        if record.level() == Level::Warn {
            self.0.lock().push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// Installs the program's log: the library's own when `KEYGATE_LOG` is set, else [`Held`].
pub fn init() {
    if std::env::var_os("KEYGATE_LOG").is_some() {
        keygate_pkcs11::logging::init();
    } else if log::set_logger(&HELD).is_ok() {
        log::set_max_level(LevelFilter::Warn);
    }
}

/// Prints the warnings held during a command that succeeded; a failed command's error line is
/// all it prints.
pub fn finish(succeeded: bool) {
    let held = std::mem::take(&mut *HELD.0.lock());
    if succeeded {
        for w in held {
            eprintln!("keygate: warning: {w}");
        }
    }
}
