//! The layers point one way (docs/architecture.md): each top-level module of `src/` may use
//! only modules of a lower layer (or itself). Read from the source's `crate::` paths, so a new
//! upward import fails here before it settles in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, highest first. A module may use the modules of the layers after its own.
const LAYERS: &[&[&str]] = &[
    &["ffi"],
    &["token"],
    &["audit"],
    &["backend"],
    &["crypto"],
    &["config"],
    &["model"],
    &["error", "fastmap", "logging", "sys"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/backend/hsm/ops.rs` → `backend`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every `crate::name` a file refers to, outside comments.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

#[test]
fn no_module_uses_a_higher_layer() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &files {
        let Some(module) = module_of(&src, f) else { continue };
        if module == "bin" || module == "lib" {
            continue;
        }
        seen.insert(module.clone());
        let Some(own) = layer_of(&module) else {
            wrong.push(format!(
                "{}: module {module} is in no layer of tests/layering.rs",
                f.display()
            ));
            continue;
        };
        for used in uses(&std::fs::read_to_string(f).unwrap()) {
            match layer_of(&used) {
                Some(l) if l > own || used == module => {}
                Some(_) => wrong.push(format!(
                    "{}: {module} uses crate::{used}, a layer above or beside it",
                    f.display()
                )),
                None => wrong.push(format!("{}: crate::{used} is in no layer", f.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    // The check reads what it should: every layer's modules exist.
    for m in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(seen.contains(*m), "no module {m} under src/");
    }
}

#[test]
fn the_check_sees_an_upward_import() {
    let text = "use crate::model::attributes;\n// crate::ffi in a comment\nlet x = crate::token::provider();\n";
    let u = uses(text);
    assert!(
        u.contains("model") && u.contains("token") && !u.contains("ffi"),
        "{u:?}"
    );
    assert!(layer_of("token") < layer_of("backend"));
}
