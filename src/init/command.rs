//! The command itself: read the preset and `--set`s into a draft, find the repo, then either
//! check and write the spec straight away (`--non-interactive`) or hand the draft to the
//! dialogue; the file is written only when everything checked out.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::checks::{check_guard, open_repo, scope_report, trial, Repo};
use super::dialogue::Dialogue;
use super::draft::Draft;
use super::lines::{Editor, Lines, Plain};
use crate::cli::InitArgs;
use crate::init::presets;
use crate::protocol::Error;

type CmdResult = Result<(), Error>;
use crate::spec;

/// A slug of the goal's first words: "Cut the ETL's wall time" -> "cut-the-etl-s-wall".
pub(super) fn slug(goal: &str) -> Option<String> {
    let words: Vec<String> = goal
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(4)
        .map(str::to_lowercase)
        .collect();
    let s: String = words.join("-").chars().take(40).collect();
    spec::RunId::parse(s.trim_end_matches('-'))
        .ok()
        .map(|id| id.to_string())
}

/// `to` as seen from the folder `from` (both absolute): `/a/b`, `/a/c/d` -> `../c/d`.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (from, to) = (spec::normalize(from), spec::normalize(to));
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

pub fn run(args: &InitArgs) -> CmdResult {
    let preset = match args.preset.as_deref() {
        None => None,
        Some("list") => {
            print!("{}", presets::list());
            return Ok(());
        }
        Some(name) => Some(presets::find(name).ok_or_else(|| {
            Error::bad_input(format!(
                "unknown preset {name:?}\n{}",
                presets::list().trim_end()
            ))
        })?),
    };
    let cwd = std::env::current_dir().map_err(|e| Error::failed(format!("current folder: {e}")))?;
    let out_abs = spec::normalize(&cwd.join(&args.output));
    if out_abs.exists() && !args.force {
        return Err(Error::bad_input(format!(
            "{} already exists; use --force to overwrite it, or -o to write another file",
            args.output.display()
        )));
    }
    let spec_dir = out_abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    if !spec_dir.is_dir() {
        return Err(Error::bad_input(format!(
            "{}: no such folder",
            spec_dir.display()
        )));
    }

    let mut draft = Draft::default();
    if let Some(p) = preset {
        draft.apply_preset(p);
    }
    for s in &args.set {
        draft.apply_set(s)?;
    }
    if draft.str("id").is_none() {
        if let Some(s) = draft.str("goal").and_then(slug) {
            draft.set_str("id", &s);
        }
    }
    if draft.str("repo").is_none() && git2::Repository::discover(&spec_dir).is_err() {
        // The spec goes outside any repo (-o ~/specs/x.toml): point it at the current one.
        if let Ok(r) = crate::git::open_repo(&cwd) {
            draft.set_str(
                "repo",
                &relative(&spec_dir, &r.1.root).display().to_string(),
            );
        }
    }
    let repo_dir = spec::normalize(&spec_dir.join(draft.str("repo").unwrap_or(".")));
    let repo = open_repo(&repo_dir)?;
    let file_name = args.output.display().to_string();

    let text = if args.non_interactive {
        non_interactive(&draft, &repo, &out_abs, &file_name)?
    } else {
        let input: Box<dyn Lines> = match Editor::at_terminal() {
            Some(e) => Box::new(e),
            None => Box::new(Plain(std::io::stdin().lock())),
        };
        let mut dlg = Dialogue {
            input,
            ui: Box::new(std::io::stderr()),
            repo: &repo,
            spec_dir: &spec_dir,
            trial: None,
        };
        if let Some(p) = preset {
            let _ = writeln!(dlg.ui, "preset {}: {} (note: {})", p.name, p.about, p.note);
        }
        dlg.run(&mut draft, &out_abs, &file_name)?
    };
    write_spec(&out_abs, &text, args.force)?;
    let id = spec::parse(&text, &out_abs)
        .map(|r| r.id.to_string())
        .unwrap_or_default();
    println!("wrote {file_name} (run id {id})");
    println!("start it:  arctl start {file_name}");
    Ok(())
}

/// Each guard runs once on the current tree; one that fails at once would stop the run at
/// its baseline, so nothing is written.
fn check_guards(draft: &Draft, root: &Path) -> CmdResult {
    for g in draft.tables("guard") {
        let name = g.get("name").and_then(|v| v.as_str()).unwrap_or("?");
        let command = g.get("command").and_then(|v| v.as_str()).unwrap_or("");
        if let Err(e) = check_guard(command, root) {
            return Err(Error::bad_input(format!(
                "guard {name}: {e}; a guard must pass on the base, so nothing was written"
            )));
        }
    }
    Ok(())
}

fn non_interactive(
    draft: &Draft,
    repo: &Repo,
    out_abs: &Path,
    file_name: &str,
) -> Result<String, Error> {
    let missing = draft.missing();
    if !missing.is_empty() {
        return Err(Error::bad_input(format!(
            "missing answers (non-interactive): give them with --set KEY=VALUE (or --preset NAME):\n  {}",
            missing.join("\n  ")
        )));
    }
    let (report, _) = scope_report(
        &draft.strings("scope.include"),
        &draft.strings("scope.exclude"),
        &repo.tracked,
    )
    .map_err(|e| Error::bad_input(format!("scope: {e}")))?;
    eprint!("scope:\n{report}");
    // Validate before spending time on the metric.
    let text = draft.render(file_name);
    spec::parse_for_host(&text, out_abs, &crate::host::facts())
        .map_err(|e| Error::bad_input(format!("the spec would not be valid:\n{e}")))?;
    check_guards(draft, &repo.root)?;
    let t = trial(draft, &repo.root, &mut std::io::stderr()).map_err(|e| {
        Error::bad_input(format!(
            "the metric command gives no number, so nothing was written: {e}"
        ))
    })?;
    eprintln!(
        "read {} from the metric's output ({:.1}s)",
        crate::protocol::format::format_metric(Some(t.value)),
        t.wall.as_secs_f64()
    );
    print!("{}", draft.table(Some(t.value)));
    Ok(text)
}

/// Write the file: never over an existing one unless `force`; never half-written.
fn write_spec(path: &Path, text: &str, force: bool) -> CmdResult {
    let fail = |e: std::io::Error| Error::failed(format!("writing {}: {e}", path.display()));
    let tmp = path.with_extension(format!("toml.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(fail)?;
    let r = if force {
        std::fs::rename(&tmp, path)
    } else {
        // A hard link fails when the name is taken: no race with another writer.
        std::fs::hard_link(&tmp, path).and_then(|_| std::fs::remove_file(&tmp))
    };
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::bad_input(format!(
                "{} already exists; use --force to overwrite it",
                path.display()
            ))
        } else {
            fail(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/c/d")),
            PathBuf::from("../c/d")
        );
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b")),
            PathBuf::from(".")
        );
        assert_eq!(
            relative(Path::new("/a"), Path::new("/a/b")),
            PathBuf::from("b")
        );
    }

    #[test]
    fn slugs() {
        assert_eq!(
            slug("Cut the ETL's wall time").as_deref(),
            Some("cut-the-etl-s")
        );
        assert_eq!(slug("!!"), None);
    }
}
