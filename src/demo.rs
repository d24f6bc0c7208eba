//! `arctl demo`: the whole story on a small sample project, with nothing but arctl, git and
//! a POSIX shell with awk.
//!
//! The sample project (`wordfreq`) prints the ten most frequent words of a text and how many
//! basic operations that took: a deterministic count, so every measurement is exact and the
//! demo is fast and never flaky (a timing metric would show the noise-aware rule, but needs
//! repeated rounds per decision and a quiet machine). It has two real inefficiencies in two
//! files: a naive bubble sort (`src/sort.awk`) and a hash table with far too few buckets
//! (`src/table.conf`). Two runs race on disjoint scopes with the built-in proposers, no AI:
//! `sort` tries a folder of hypothesis patches (one is better, one worse, one faster but
//! wrong, which the guard catches, one much better); `table` hill-climbs the bucket count.
//! Then they are merged in order of improvement (the second re-measured on top of the
//! first), reported and plotted. Everything lives in one folder, including the daemon's
//! socket and state, so the user's own daemon is never touched.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;

use crate::cli::Cli;
use crate::client::{CmdResult, Error};
use crate::config::{DaemonConfig, Settings};

/// A Unix socket path must fit in `sun_path` (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 100;

pub fn run(dir: Option<PathBuf>) -> CmdResult {
    let t0 = Instant::now();
    check_tools()?;
    let dir = demo_dir(dir)?;
    let socket = socket_path(&dir);
    let state = dir.join("state");
    let d = Demo {
        dir: dir.clone(),
        socket: socket.clone(),
        state: state.clone(),
    };
    println!("arctl demo: two autoresearch runs racing on a sample project, merged at the end.");
    println!("everything goes in {}", dir.display());

    d.step("1. A sample project with two real inefficiencies");
    let project = write_project(&dir)?;
    println!(
        "  {}: `sh wordfreq.sh` prints the ten most frequent words of data/words.txt\n  \
         and `ops: N`, the basic operations that took (deterministic: one run per measurement).\n  \
         src/sort.awk sorts with a naive bubble sort; src/table.conf sizes a hash table with 8 buckets.",
        project.display()
    );
    let baseline = d.sh_metric(&project)?;
    println!("  baseline: ops = {baseline}");
    write_specs(&dir)?;
    println!(
        "  sort.toml:  run `sort`  edits src/sort.awk, trying the patches in hypotheses/ (no AI)\n  \
         table.toml: run `table` edits src/table.conf, hill-climbing the bucket count (no AI)\n  \
         both keep a change only if ops drops and the guard (same top ten words) passes"
    );

    d.step("2. A daemon of its own (socket and state inside the demo folder)");
    let daemon = crate::daemon::start(DaemonConfig {
        socket: socket.clone(),
        state_dir: state.clone(),
        settings: Settings::default(),
    })
    .map_err(|e| Error::failed(format!("starting the demo daemon: {e:#}")))?;
    println!(
        "  socket {}\n  state  {}",
        socket.display(),
        state.display()
    );

    let result = d.story(&project, baseline);
    d.step("7. Done");
    let _ = daemon.shutdown();
    println!(
        "  daemon stopped (the runs' history stays in {})",
        state.display()
    );
    match &result {
        Ok(()) => println!("  the demo took {:.1}s", t0.elapsed().as_secs_f64()),
        Err(e) => println!("  the demo stopped early: {}", e.message),
    }
    d.where_everything_is(&project);
    result
}

struct Demo {
    dir: PathBuf,
    socket: PathBuf,
    state: PathBuf,
}

impl Demo {
    fn step(&self, title: &str) {
        println!("\n==> {title}");
    }

    /// Run an arctl command in-process against the demo daemon, showing it as typed.
    fn arctl(&self, shown: &[&str], args: &[&str]) -> CmdResult {
        println!("$ arctl {}", shown.join(" "));
        let mut full: Vec<String> =
            vec!["arctl".into(), "--no-autostart".into(), "--socket".into()];
        full.push(self.socket.display().to_string());
        full.push("--state-dir".into());
        full.push(self.state.display().to_string());
        full.extend(args.iter().map(|s| s.to_string()));
        let cli = Cli::try_parse_from(&full).map_err(|e| Error::failed(format!("demo: {e}")))?;
        let _ = std::io::Write::flush(&mut std::io::stdout());
        match crate::client::main(cli) {
            0 => Ok(()),
            code => Err(Error::from_exit_code(
                code,
                format!("`arctl {}` failed (exit {code})", shown.join(" ")),
            )),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The metric, run in `tree` as the runs do.
    fn sh_metric(&self, tree: &Path) -> Result<u64, Error> {
        let out = std::process::Command::new("sh")
            .arg("wordfreq.sh")
            .current_dir(tree)
            .output()
            .map_err(|e| Error::failed(format!("running sh wordfreq.sh: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter_map(|l| l.strip_prefix("ops: "))
            .filter_map(|n| n.trim().parse().ok())
            .next_back()
            .ok_or_else(|| {
                Error::failed(format!(
                    "the sample project's benchmark printed no `ops:` line (is awk installed?):\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            })
    }

    fn story(&self, project: &Path, baseline: u64) -> CmdResult {
        self.step("3. Start two runs with disjoint scopes");
        self.arctl(&["start", "sort.toml"], &["start", &self.path("sort.toml")])?;
        self.arctl(
            &["start", "table.toml"],
            &["start", &self.path("table.toml")],
        )?;

        self.step("4. Watch them race (Ctrl-C would only stop the watching)");
        self.arctl(&["watch"], &["watch"])?;
        self.arctl(&["status"], &["status"])?;
        self.arctl(&["results", "sort"], &["results", "sort"])?;
        self.arctl(&["results", "table"], &["results", "table"])?;

        self.step("5. Merge in order of improvement, each re-measured on top of the last");
        self.arctl(&["merge"], &["merge"])?;
        let merged = self.sh_metric(project)?;
        println!(
            "  main now measures ops = {merged} (was {baseline}: {:.1}% fewer)",
            100.0 * (baseline as f64 - merged as f64) / baseline as f64
        );
        if let Ok(log) = std::process::Command::new("git")
            .args(["log", "--oneline", "--graph", "-n", "12", "main"])
            .current_dir(project)
            .output()
        {
            println!(
                "$ git log --oneline --graph main\n{}",
                String::from_utf8_lossy(&log.stdout).trim_end()
            );
        }

        self.step("6. Report and plot");
        for id in ["sort", "table"] {
            self.arctl(&["report", id], &["report", id])?;
            let svg = format!("progress-{id}.svg");
            self.arctl(
                &["plot", id, "-o", &svg],
                &["plot", id, "-o", &self.path(&svg)],
            )?;
        }
        Ok(())
    }

    fn where_everything_is(&self, project: &Path) {
        let d = self.dir.display();
        println!(
            "\nWhere everything is ({d}):\n  \
             wordfreq/             the sample project; its main branch has the merged improvements\n  \
             wordfreq-sort/        run sort's worktree (branch autoresearch/sort)\n  \
             wordfreq-table/       run table's worktree (branch autoresearch/table)\n  \
             hypotheses/           the patches run sort tried\n  \
             sort.toml table.toml  the run specs (start from one: `arctl init`)\n  \
             progress-*.svg        the plots\n  \
             state/                the daemon's state: runs/<id>/results.tsv, journal.jsonl, run.log\n\
             Look around again (starts a daemon on the demo's state; `arctl shutdown` when done):\n  \
             export ARCTL_SOCKET={} ARCTL_STATE_DIR={}\n  \
             arctl status; arctl report sort; arctl log table\n\
             Clean up:\n  \
             rm -rf {d}{}",
            self.socket.display(),
            self.state.display(),
            if self.socket.starts_with(&self.dir) {
                String::new()
            } else {
                format!(" {}", self.socket.parent().unwrap_or(Path::new("/")).display())
            }
        );
        let _ = project;
    }
}

fn check_tools() -> CmdResult {
    for (tool, args) in [
        ("git", &["--version"][..]),
        ("sh", &["-c", "exit 0"][..]),
        ("awk", &["BEGIN { exit 0 }"][..]),
    ] {
        let ok = std::process::Command::new(tool)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err(Error::failed(format!("the demo needs `{tool}` on PATH")));
        }
    }
    Ok(())
}

fn demo_dir(dir: Option<PathBuf>) -> Result<PathBuf, Error> {
    let dir = match dir {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(&d)
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(true)
            {
                return Err(Error::bad_input(format!(
                    "{} is not empty: give --dir a new (or empty) folder",
                    d.display()
                )));
            }
            std::fs::create_dir_all(&d)
                .map_err(|e| Error::failed(format!("creating {}: {e}", d.display())))?;
            d
        }
        None => {
            use rand::Rng;
            let suffix: String = rand::thread_rng()
                .sample_iter(rand::distributions::Alphanumeric)
                .take(6)
                .map(|c| (c as char).to_ascii_lowercase())
                .collect();
            let d = std::env::temp_dir().join(format!("arctl-demo-{suffix}"));
            std::fs::create_dir(&d)
                .map_err(|e| Error::failed(format!("creating {}: {e}", d.display())))?;
            d
        }
    };
    dir.canonicalize()
        .map_err(|e| Error::failed(format!("{}: {e}", dir.display())))
}

/// The socket inside the demo folder, unless that path is too long for a Unix socket.
fn socket_path(dir: &Path) -> PathBuf {
    let s = dir.join("arctl.sock");
    if s.as_os_str().len() <= MAX_SOCKET_PATH {
        return s;
    }
    std::env::temp_dir()
        .join(format!(
            "arctl-demo-{}-{}",
            std::process::id(),
            dir.file_name().unwrap_or_default().to_string_lossy()
        ))
        .join("arctl.sock")
}

// ---------------------------------------------------------------------------------------
// The sample project
// ---------------------------------------------------------------------------------------

const WORDFREQ_SH: &str = r#"#!/bin/sh
# The ten most frequent words of data/words.txt, then `ops: N`: the basic operations
# (hash-chain steps, bucket set-ups, comparisons) it took. Deterministic.
cd "$(dirname "$0")" || exit 1
buckets=$(sed -n 's/^BUCKETS=\([0-9][0-9]*\)$/\1/p' src/table.conf)
LC_ALL=C exec awk -v buckets="${buckets:-8}" -f src/table.awk -f src/sort.awk -f src/main.awk data/words.txt
"#;

const MAIN_AWK: &str = r#"# Count the words, order them, print the top ten and the operation count.
BEGIN { table_init() }
{ for (i = 1; i <= NF; i++) table_add($i) }
END {
    sort_words(nwords)
    for (i = 1; i <= 10 && i <= nwords; i++) print count[words[i]], words[i]
    print "ops: " ops
}
"#;

const TABLE_AWK: &str = r#"# A word-count table: `buckets` chains of words (the number comes from src/table.conf).
# Each chain step is one operation; setting up a bucket costs four.
function table_init(   b, c) {
    for (b = 0; b < buckets; b++) { chain[b] = ""; ops += 4 }
    for (c = 32; c < 127; c++) ord[sprintf("%c", c)] = c
}
function hash(w,   h, i) {
    h = 0
    for (i = 1; i <= length(w); i++) h = (h * 31 + ord[substr(w, i, 1)]) % 1000003
    return h % buckets
}
function table_add(w,   b, n, i, parts) {
    b = hash(w)
    n = split(chain[b], parts, " ")
    for (i = 1; i <= n; i++) { ops++; if (parts[i] == w) { count[w]++; return } }
    ops++
    chain[b] = chain[b] " " w
    count[w] = 1
    words[++nwords] = w
}
"#;

const TABLE_CONF: &str = "# Hash table size of the word counter.\nBUCKETS=8\n";

/// The comparison every sort variant shares: most frequent first, then alphabetical.
const BEFORE: &str = r#"# Orders words[1..n]: most frequent first, ties alphabetically.
# Each comparison step is one operation.
function before(a, b) {
    ops++
    if (count[a] != count[b]) return count[a] > count[b]
    ops++
    return a < b
}
"#;

const SORT_BUBBLE: &str = r#"function sort_words(n,   i, j, t) {
    for (i = 1; i <= n; i++)
        for (j = 1; j < n; j++)
            if (before(words[j + 1], words[j])) { t = words[j]; words[j] = words[j + 1]; words[j + 1] = t }
}
"#;

const SORT_INSERTION: &str = r#"function sort_words(n,   i, j, w) {
    for (i = 2; i <= n; i++) {
        w = words[i]
        for (j = i - 1; j >= 1 && before(w, words[j]); j--) words[j + 1] = words[j]
        words[j + 1] = w
    }
}
"#;

const SORT_FRONT_SCAN: &str = r#"function sort_words(n,   i, j, k, w) {
    for (i = 2; i <= n; i++) {
        w = words[i]
        for (j = 1; j < i && before(words[j], w); j++) ;
        for (k = i; k > j; k--) words[k] = words[k - 1]
        words[j] = w
    }
}
"#;

const BEFORE_NO_TIEBREAK: &str = r#"# Orders words[1..n]: most frequent first, ties alphabetically.
# Each comparison step is one operation.
function before(a, b) {
    ops++
    return count[a] > count[b]
}
"#;

const SORT_MERGE: &str = r#"function sort_words(n) { merge_sort(1, n) }
function merge_sort(lo, hi,   mid, i, j, k) {
    if (lo >= hi) return
    mid = int((lo + hi) / 2)
    merge_sort(lo, mid)
    merge_sort(mid + 1, hi)
    i = lo; j = mid + 1; k = 0
    while (i <= mid && j <= hi) tmp[++k] = before(words[j], words[i]) ? words[j++] : words[i++]
    while (i <= mid) tmp[++k] = words[i++]
    while (j <= hi) tmp[++k] = words[j++]
    for (i = 1; i <= k; i++) words[lo + i - 1] = tmp[i]
}
"#;

const SAMPLE_README: &str = "# wordfreq\n\nPrints the ten most frequent words of `data/words.txt` and the number of basic\noperations that took (`sh wordfreq.sh`). `expected.txt` is the right answer.\nA sample project of `arctl demo`.\n";

/// The sample text: 300 words with Zipf-like counts, shuffled deterministically. The 10th
/// and 11th most frequent words tie ("for" and "with", 60 each) and "with" comes first, so
/// an order that drops the alphabetical tie-break gets the top ten wrong.
fn sample_text() -> (String, String) {
    const TOP: &str = "the of and to in is that it was for with as his on be at by had not are but from or have an \
                       they which one you were her all she there would their we him been has";
    let mut vocab: Vec<String> = TOP.split_whitespace().map(str::to_string).collect();
    let syl = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "po", "da", "fi", "gu", "ho", "je",
        "bu",
    ];
    'fill: for a in syl {
        for b in syl {
            if vocab.len() == 300 {
                break 'fill;
            }
            let w = format!("{a}{b}");
            if !vocab.contains(&w) {
                vocab.push(w);
            }
        }
    }
    let mut counts: Vec<usize> = (1..=vocab.len()).map(|r| (600 / r).max(1)).collect();
    counts[10] = counts[9];
    let mut seq: Vec<&str> = Vec::new();
    for (w, &c) in vocab.iter().zip(&counts) {
        seq.extend(std::iter::repeat_n(
            w.as_str(),
            if w == "with" { c - 1 } else { c },
        ));
    }
    let mut x: u64 = 12345;
    let mut rnd = |n: usize| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) % n as u64) as usize
    };
    for i in (1..seq.len()).rev() {
        let j = rnd(i + 1);
        seq.swap(i, j);
    }
    seq.insert(0, "with");
    let text: String = seq.chunks(12).map(|c| c.join(" ") + "\n").collect();
    let mut ranked: Vec<(usize, &String)> = counts.iter().copied().zip(&vocab).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let expected: String = ranked
        .iter()
        .take(10)
        .map(|(c, w)| format!("{c} {w}\n"))
        .collect();
    (text, expected)
}

/// A one-hunk unified diff of `path` from `old` to `new` (common head and tail as context).
fn unified_diff(path: &str, old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let before = head.min(3);
    let after = tail.min(3);
    let (from, to_a, to_b) = (
        head - before,
        a.len() - tail + after,
        b.len() - tail + after,
    );
    let mut out = format!(
        "--- a/{path}\n+++ b/{path}\n@@ -{},{} +{},{} @@\n",
        from + 1,
        to_a - from,
        from + 1,
        to_b - from
    );
    for l in &a[from..head] {
        out.push_str(&format!(" {l}\n"));
    }
    for l in &a[head..a.len() - tail] {
        out.push_str(&format!("-{l}\n"));
    }
    for l in &b[head..b.len() - tail] {
        out.push_str(&format!("+{l}\n"));
    }
    for l in &a[a.len() - tail..to_a] {
        out.push_str(&format!(" {l}\n"));
    }
    out
}

fn write(path: &Path, text: &str) -> CmdResult {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)
            .map_err(|e| Error::failed(format!("creating {}: {e}", p.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|e| Error::failed(format!("writing {}: {e}", path.display())))
}

/// Create the sample repo (branch main, one commit) and the patches; returns the repo path.
fn write_project(dir: &Path) -> Result<PathBuf, Error> {
    let project = dir.join("wordfreq");
    let (text, expected) = sample_text();
    let sort0 = format!("{BEFORE}{SORT_BUBBLE}");
    let files: [(&str, &str); 8] = [
        ("README.md", SAMPLE_README),
        ("wordfreq.sh", WORDFREQ_SH),
        ("src/main.awk", MAIN_AWK),
        ("src/table.awk", TABLE_AWK),
        ("src/table.conf", TABLE_CONF),
        ("src/sort.awk", &sort0),
        ("data/words.txt", &text),
        ("expected.txt", &expected),
    ];
    for (name, body) in files {
        write(&project.join(name), body)?;
    }
    commit_all(&project).map_err(|e| Error::failed(format!("creating the sample repo: {e}")))?;

    // The hypotheses of run `sort`, in the order they are tried. 01 lands; 02-04 are
    // written against the tree after 01 (02 and 03 are reverted, 04 lands on top of 01).
    let sort1 = format!("{BEFORE}{SORT_INSERTION}");
    let patches = [
        (
            "01-insertion-sort.patch",
            "insertion sort: stop scanning once the word is in place (the input is nearly ordered)",
            &sort0,
            sort1.clone(),
        ),
        (
            "02-scan-from-front.patch",
            "insertion sort that finds the slot from the front, then shifts",
            &sort1,
            format!("{BEFORE}{SORT_FRONT_SCAN}"),
        ),
        (
            "03-skip-tiebreak.patch",
            "cheaper comparison: order by count only, skip the alphabetical tie-break",
            &sort1,
            format!("{BEFORE_NO_TIEBREAK}{SORT_INSERTION}"),
        ),
        (
            "04-merge-sort.patch",
            "merge sort: O(n log n) comparisons whatever the input order",
            &sort1,
            format!("{BEFORE}{SORT_MERGE}"),
        ),
    ];
    for (name, description, from, to) in patches {
        write(
            &dir.join("hypotheses").join(name),
            &format!(
                "{description}\n\n{}",
                unified_diff("src/sort.awk", from, &to)
            ),
        )?;
    }
    Ok(project)
}

fn commit_all(project: &Path) -> Result<(), git2::Error> {
    let repo = git2::Repository::init(project)?;
    repo.set_head("refs/heads/main")?;
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("arctl demo", "demo@arctl.invalid")?;
    repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        "wordfreq: count words, print the top ten",
        &tree,
        &[],
    )?;
    Ok(())
}

fn write_specs(dir: &Path) -> CmdResult {
    const COMMON: &str = r#"repo = "wordfreq"

[metric]
command = "sh wordfreq.sh"
regex = 'ops: ([0-9]+)'
direction = "lower"

[[guard]]
name = "same-top-ten"
command = "sh wordfreq.sh | head -n 10 | diff expected.txt - >/dev/null"
"#;
    write(
        &dir.join("sort.toml"),
        &format!(
            "id = \"sort\"\ngoal = \"Fewer operations for the word report: a better sort\"\n{COMMON}\n\
             [scope]\ninclude = [\"src/sort.awk\"]\n\n[budget]\nmax_experiments = 4\n\n\
             [proposer]\nkind = \"patches\"\ndir = \"hypotheses\"\n"
        ),
    )?;
    write(
        &dir.join("table.toml"),
        &format!(
            "id = \"table\"\ngoal = \"Fewer operations for the word report: size the hash table\"\n{COMMON}\n\
             [scope]\ninclude = [\"src/table.conf\"]\n\n\
             [proposer]\nkind = \"params\"\nseed = 1\n\n[[proposer.param]]\nname = \"buckets\"\n\
             file = \"src/table.conf\"\nregex = 'BUCKETS=(\\d+)'\nvalues = [8, 16, 32, 64, 128, 256, 512, 1024]\n"
        ),
    )?;
    for f in ["sort.toml", "table.toml"] {
        crate::spec::load(&dir.join(f)).map_err(|e| Error::failed(format!("demo spec: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_have_context_and_counts() {
        let d = unified_diff("f", "a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nX\ne\nf\ng\n");
        assert_eq!(
            d,
            "--- a/f\n+++ b/f\n@@ -1,7 +1,7 @@\n a\n b\n c\n-d\n+X\n e\n f\n g\n"
        );
        let d = unified_diff("f", "1\n2\n3\n4\n5\n", "1\n2\n3\n4\n5\n6\n7\n");
        assert!(d.contains("@@ -3,3 +3,5 @@"), "{d}");
    }

    #[test]
    fn sample_text_has_the_tie() {
        let (text, expected) = sample_text();
        assert!(text.starts_with("with "));
        let lines: Vec<&str> = expected.lines().collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0], "600 the");
        assert_eq!(lines[9], "60 for");
        assert_eq!(text.split_whitespace().filter(|w| *w == "with").count(), 60);
        assert_eq!(text.split_whitespace().filter(|w| *w == "for").count(), 60);
    }
}
