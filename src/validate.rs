//! `arctl validate SPEC`: check a spec without a daemon — the spec itself, this host, and
//! the repository (it exists, has a commit, the base exists, the scope's globs match tracked
//! files, no judge inside the scope) — and print it resolved with its defaults. Warnings go
//! to stderr; `--strict` makes them errors.

use std::path::Path;

use crate::client::{json_out, load_checked, CmdResult, Error};

pub fn run(path: &Path, json: bool, strict: bool) -> CmdResult {
    let (resolved, _) = load_checked(path)?;
    let warnings = crate::run::setup::check_repo(&resolved)?;
    for w in &warnings {
        eprintln!("arctl: warning: {w}");
    }
    if strict && !warnings.is_empty() {
        return Err(Error::bad_input(format!(
            "{}: {} warning(s), and --strict makes them errors",
            resolved.spec_file.display(),
            warnings.len()
        )));
    }
    if json {
        return json_out(&resolved);
    }
    let mut shown = resolved.spec.clone();
    shown.id = Some(resolved.id.clone());
    shown.repo = resolved.repo.clone();
    let text = toml::to_string(&shown).map_err(|e| Error::failed(e.to_string()))?;
    println!(
        "# {}: valid; resolved with defaults",
        resolved.spec_file.display()
    );
    print!("{text}");
    Ok(())
}
