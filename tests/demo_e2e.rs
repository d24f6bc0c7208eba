//! `arctl demo` end to end: the real binary builds the sample project, races two runs with
//! its own daemon, merges them into main, reports and plots, in well under two minutes.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn demo_runs_the_whole_story() {
    let w = World::new();
    let dir = w.path().join("demo");
    let t0 = Instant::now();
    let o = w
        .cmd()
        .args(["demo", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let took = t0.elapsed();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(took < Duration::from_secs(120), "the demo took {took:?}");

    // Both runs finished, each with at least one keep (their TSV copies in the demo's state).
    for (id, keeps) in [("sort", 2), ("table", 1)] {
        let rows = tsv_rows(&dir.join("state/runs").join(id).join("results.tsv"));
        assert_eq!(rows[0][3], "baseline");
        let kept = rows.iter().filter(|r| r[3] == "keep").count();
        assert!(kept >= keeps, "{id}: {rows:?}");
        assert!(out.contains(&format!("{id} finished after ")), "{out}");
    }
    // The sort run's hypotheses met every outcome: keep, discard, a guard's rejection.
    let sort = tsv_rows(&dir.join("state/runs/sort/results.tsv"));
    let statuses: Vec<&str> = sort.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(
        statuses,
        ["baseline", "keep", "discard", "inspector-reject", "keep"],
        "{sort:?}"
    );

    // main got both merges: the merged tree has the merge sort and the tuned table, and its
    // metric beats both runs alone.
    let repo = dir.join("wordfreq");
    let log = git(&repo, &["log", "--format=%s", "main"]);
    assert!(log.contains("experiment: merge sort"), "{log}");
    assert!(log.contains("experiment: set buckets="), "{log}");
    assert!(git(&repo, &["show", "main:src/sort.awk"]).contains("merge_sort"));
    assert!(!git(&repo, &["show", "main:src/table.conf"]).contains("BUCKETS=8\n"));
    assert!(git(&repo, &["branch", "--contains", "autoresearch/sort"]).contains("main"));
    assert!(git(&repo, &["branch", "--contains", "autoresearch/table"]).contains("main"));
    assert_eq!(
        git(&repo, &["status", "--porcelain"]),
        "",
        "main's worktree is clean"
    );
    let ops = |s: &str| {
        s.lines()
            .filter_map(|l| l.strip_prefix("ops: "))
            .next_back()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let merged = std::process::Command::new("sh")
        .arg("wordfreq.sh")
        .current_dir(&repo)
        .output()
        .unwrap();
    let merged = ops(&String::from_utf8_lossy(&merged.stdout));
    let best_alone = |wt: &str| {
        let o = std::process::Command::new("sh")
            .arg("wordfreq.sh")
            .current_dir(dir.join(wt))
            .output()
            .unwrap();
        ops(&String::from_utf8_lossy(&o.stdout))
    };
    assert!(
        merged < best_alone("wordfreq-sort") && merged < best_alone("wordfreq-table"),
        "{out}"
    );
    assert!(
        out.contains(&format!("main now measures ops = {merged}")),
        "{out}"
    );

    // The report and the plots.
    assert!(
        out.contains("# Report: run sort") && out.contains("# Report: run table"),
        "{out}"
    );
    for id in ["sort", "table"] {
        let svg = std::fs::read_to_string(dir.join(format!("progress-{id}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{id}: {svg}");
    }
    // Where things are, how to clean up; the daemon is gone and its socket removed.
    assert!(
        out.contains(&format!("rm -rf {}", dir.canonicalize().unwrap().display())),
        "{out}"
    );
    assert!(!dir.join("arctl.sock").exists());
    // The user's own daemon (this world's socket and state) was never touched.
    assert!(!w.socket.exists() && !w.state_dir.exists());

    // A second demo into the same, now non-empty, folder is refused.
    let o = w
        .cmd()
        .args(["demo", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"));
}
