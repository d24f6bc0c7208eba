//! `arctl validate SPEC`: check a spec without a daemon (the same checks `start` makes
//! before it sends the spec), and print it resolved with its defaults.

use std::path::Path;

use super::{json_out, CmdResult, Error};
use crate::spec::{self, ResolvedSpec};

/// Load a spec and check it against this machine; the spec and its text.
pub fn load_checked(path: &Path) -> Result<(ResolvedSpec, String), Error> {
    let bad = |e: spec::SpecError| Error::bad_input(e.to_string());
    let (resolved, text) = spec::load_text(path).map_err(bad)?;
    spec::check_host(&resolved, &text, &crate::host::facts()).map_err(bad)?;
    Ok((resolved, text))
}

pub fn run(path: &Path, json: bool) -> CmdResult {
    let (resolved, _) = load_checked(path)?;
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
