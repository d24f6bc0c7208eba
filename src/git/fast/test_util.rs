//! What the fast paths' tests share: a git CLI helper, twin worktrees of one repo put
//! through the same changes (one per kind of change a proposer can make), the full libgit2
//! diff to compare with, and a snapshot of a work tree's files.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use git2::{Oid, Repository};

use crate::git::{Change, WorkTree};

pub(super) fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// An empty repository on `main` at `<temp dir>/<name>` (the temp dir goes when dropped).
pub(super) fn empty_repo(name: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join(name);
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    (d, repo)
}

pub(super) fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A repo with tracked files, an ignored folder and an ignored file pattern, and two
/// worktrees on branches `a` and `b` at its commit.
pub(super) fn twins() -> (tempfile::TempDir, PathBuf, PathBuf, Oid) {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    write(&repo.join(".gitignore"), "build/\n*.log\n");
    for i in 0..30 {
        write(
            &repo.join(format!("src/d{}/f{i}.txt", i % 4)),
            &format!("file {i}\n"),
        );
    }
    write(&repo.join("top.txt"), "top\n");
    write(&repo.join("tool.sh"), "#!/bin/sh\n");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "init"]);
    let head = Oid::from_str(git(&repo, &["rev-parse", "HEAD"]).trim()).unwrap();
    let r = Repository::open(&repo).unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    for (name, p) in [("a", &a), ("b", &b)] {
        crate::git::create_worktree(&r, name, name, head, p).unwrap();
    }
    (d, a, b, head)
}

/// Apply one scenario to a worktree.
pub(super) fn change(wt: &Path, scenario: usize) {
    let w = |p: &str, t: &str| write(&wt.join(p), t);
    match scenario {
        0 => w("src/d1/f1.txt", "changed\n"),
        1 => {
            w("src/new/deep/x.txt", "new\n");
            w("src/new/y.txt", "new\n");
        }
        2 => std::fs::remove_file(wt.join("src/d2/f2.txt")).unwrap(),
        3 => {
            w("build/out.bin", "ignored\n");
            w("src/d0/trace.log", "ignored\n");
            w("src/d0/f0.txt", "changed\n");
        }
        4 => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(wt.join("tool.sh"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        5 => {
            std::fs::remove_file(wt.join("top.txt")).unwrap();
            std::os::unix::fs::symlink("src/d1/f1.txt", wt.join("top.txt")).unwrap();
        }
        6 => {
            // A tracked file replaced by a folder.
            std::fs::remove_file(wt.join("top.txt")).unwrap();
            w("top.txt/inner.txt", "inner\n");
        }
        7 => {
            // Same size, same second: only the racy check or ctime can tell.
            let p = wt.join("src/d3/f3.txt");
            let before = std::fs::metadata(&p).unwrap();
            std::fs::write(&p, "FILE 3\n").unwrap();
            let _ = before;
        }
        8 => {
            // Staged by the proposer, then the file changed again.
            w("src/d1/f5.txt", "staged\n");
            git(wt, &["add", "src/d1/f5.txt"]);
            w("src/d1/f5.txt", "staged then changed\n");
        }
        9 => {
            // A whole untracked folder of ignored files, and an empty one.
            w("src/gen/a.log", "x\n");
            std::fs::create_dir_all(wt.join("src/empty")).unwrap();
        }
        10 => {
            // Nested repository: the fast walk must step aside.
            std::fs::create_dir_all(wt.join("vendor/nested")).unwrap();
            git(&wt.join("vendor/nested"), &["init", "-q"]);
            w("vendor/nested/n.txt", "n\n");
        }
        11 => {} // nothing
        _ => unreachable!(),
    }
}

pub(super) const SCENARIOS: usize = 12;

pub(super) fn full_changes(wt: &WorkTree, base: Oid) -> Vec<Change> {
    // changes_since with the fast path disabled: the plain full diff.
    let tree = wt.repo.find_commit(base).unwrap().tree().unwrap();
    let mut opts = git2::DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .show_untracked_content(false)
        .include_typechange(true);
    let diff = wt
        .repo
        .diff_tree_to_workdir_with_index(Some(&tree), Some(&mut opts))
        .unwrap();
    crate::git::deltas_to_changes(&diff)
}

/// Files of a work tree (ignored ones included), with contents and modes.
pub(super) fn snapshot(p: &Path) -> Vec<(String, String, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(p).unwrap().display().to_string();
            if rel == ".git" {
                continue;
            }
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                out.push((format!("{rel}/"), String::new(), 0));
                stack.push(e.path());
            } else if md.file_type().is_symlink() {
                out.push((
                    rel,
                    std::fs::read_link(e.path()).unwrap().display().to_string(),
                    0o120000,
                ));
            } else {
                out.push((
                    rel,
                    std::fs::read_to_string(e.path()).unwrap_or_default(),
                    md.mode() & 0o777,
                ));
            }
        }
    }
    out.sort();
    out
}

pub(super) fn name_of(p: &Path) -> &str {
    p.file_name().unwrap().to_str().unwrap()
}
