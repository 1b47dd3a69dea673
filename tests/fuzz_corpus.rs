//! The fuzz targets' smoke run on the stable toolchain: every committed corpus input
//! (fuzz/corpus/<target>/, grown by `ci/fuzz`) and a few thousand pseudo-random inputs go
//! through the same entry points the fuzzer calls (src/ffi/fuzz.rs). A panic is a bug.

use keygate_pkcs11::ffi::fuzz::TARGETS;

#[test]
fn every_corpus_input_replays_without_a_crash() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut replayed = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            target(&data);
            replayed += 1;
        }
        assert!(replayed > 0, "no corpus for {name}");
    }
}

#[test]
fn random_inputs_do_not_crash_the_decoders() {
    // xorshift64*: reproducible without a dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    for (_, target) in TARGETS {
        for _ in 0..2000 {
            let len = (next() % 300) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            target(&data);
        }
    }
}
