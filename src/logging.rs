//! Logging through `log` + `env_logger`, controlled by `KEYGATE_LOG` (e.g. `KEYGATE_LOG=debug`),
//! to standard error. Nothing logged at any level contains a PIN, a key or a KEK: the types that
//! hold them have redacted `Debug` output and errors carry no values.

use std::sync::Once;

static INIT: Once = Once::new();

/// Installs the logger once per process; a host that installed its own logger keeps it.
pub fn init() {
    INIT.call_once(|| {
        let env = env_logger::Env::new()
            .filter_or("KEYGATE_LOG", "warn")
            .write_style("KEYGATE_LOG_STYLE");
        // cryptoki logs at error level for things that are not errors here (a mechanism or
        // return code it has no name for); keygate reports HSM failures itself.
        let _ = env_logger::Builder::from_env(env)
            .filter_module("cryptoki", log::LevelFilter::Off)
            .format_timestamp_millis()
            .try_init();
    });
}
