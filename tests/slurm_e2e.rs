//! The Slurm executor against a real Slurm (scripts/slurm-up.sh starts a one-node cluster on
//! this machine): a loop whose metric, guard and agent run as jobs, with a queue wait that
//! must not count toward the timeout and paired rounds on one node; memory limit, timeout
//! and `stop --now` ending the jobs; a daemon killed with SIGKILL whose jobs the next one
//! cancels; the checks of `arctl start`.
//!
//! Without a reachable Slurm these tests print that they were skipped, unless `ARCTL_SLURM=1`
//! (CI sets it): then they fail.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arctl::exec::slurm::{job_name, my_jobs};
use common::*;
use serde_json::Value;

/// The cluster is one node: the tests take turns.
static CLUSTER: Mutex<()> = Mutex::new(());

/// The cluster, or None (skipped) when there is none and ARCTL_SLURM is not 1.
fn cluster(test: &str) -> Option<MutexGuard<'static, ()>> {
    let required = std::env::var("ARCTL_SLURM").is_ok_and(|v| v == "1");
    let problem = if arctl::exec::slurm::which("srun").is_none() {
        Some("srun is not on PATH".to_string())
    } else {
        match Command::new("scontrol").arg("ping").output() {
            Ok(o) if String::from_utf8_lossy(&o.stdout).contains("is UP") => None,
            Ok(o) => Some(format!(
                "scontrol ping: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => Some(format!("scontrol ping: {e}")),
        }
    };
    if let Some(p) = problem {
        if required {
            panic!(
                "ARCTL_SLURM=1 but Slurm is not reachable ({p}); start it with scripts/slurm-up.sh"
            );
        }
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: no Slurm cluster ({p}); run scripts/slurm-up.sh, then ARCTL_SLURM=1 cargo test --test slurm_e2e");
        return None;
    }
    Some(CLUSTER.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The prefix of the Slurm job names of run `id` of this world's daemon.
fn prefix(w: &World, id: &str) -> String {
    job_name(&arctl::run::Global::new(w.state_dir.clone(), 1).run_tag(id))
}

/// Jobs of run `id` still in the queue (pending, running, completing).
fn live_jobs(w: &World, id: &str) -> Vec<(u64, String)> {
    let p = prefix(w, id);
    my_jobs()
        .expect("squeue works")
        .into_iter()
        .filter(|j| {
            j.name.starts_with(&p)
                && matches!(
                    j.state.as_str(),
                    "PENDING" | "RUNNING" | "COMPLETING" | "CONFIGURING" | "SUSPENDED"
                )
        })
        .map(|j| (j.id, j.state))
        .collect()
}

fn wait_no_jobs(w: &World, id: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = live_jobs(w, id);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "jobs of run {id} still in the queue after {within:?}: {left:?}\nlog:\n{}",
                w.log(id)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Local processes whose command line contains `marker` (the one-node cluster runs the
/// tasks on this machine).
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) && !cmd.contains("cargo") {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// A job that holds the node's memory (all but 512 MiB) and one CPU until cancelled, so a
/// job asking for 1 GiB waits in the queue while small ones still run.
struct Blocker(u64);

impl Blocker {
    fn new() -> Blocker {
        let real: u64 = {
            let o = Command::new("sinfo")
                .args(["--noheader", "--Node", "--format=%m"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let o = Command::new("sbatch")
            .args([
                "--parsable",
                "--job-name=arctl-test-blocker",
                "--cpus-per-task=1",
                &format!("--mem={}M", real - 512),
                "--time=5",
                "--output=/dev/null",
                "--wrap",
                "sleep 240",
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "sbatch: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let id: u64 = String::from_utf8_lossy(&o.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        wait_until("the blocker job to run", Duration::from_secs(30), || {
            my_jobs()
                .unwrap()
                .iter()
                .any(|j| j.id == id && j.state == "RUNNING")
        });
        Blocker(id)
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg(self.0.to_string()).status();
    }
}

fn journal(w: &World, id: &str) -> Vec<Value> {
    std::fs::read_to_string(w.state_dir.join(format!("runs/{id}/journal.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `score: <src/value.txt>.<random>`: a noisy metric around the file's value.
const NOISY_METRIC: &str = r#"#!/bin/sh
r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
echo "score: $(cat src/value.txt).$r"
"#;

#[test]
fn slurm_loop_waits_in_the_queue_and_pairs_rounds_on_one_node() {
    let Some(_c) = cluster("slurm_loop_waits_in_the_queue_and_pairs_rounds_on_one_node") else {
        return;
    };
    let w = World::new();
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[("metric.sh", NOISY_METRIC), ("src/value.txt", "100\n")],
    );
    write_exec(
        &w.path().join("agent.sh"),
        "#!/bin/sh\n[ -n \"$SLURM_JOB_ID\" ] || exit 5\necho 50 > src/value.txt\necho \"halve on job $SLURM_JOB_ID\" > \"$ARCTL_DESCRIPTION_FILE\"\n",
    );
    write(
        &w.path().join("q.toml"),
        &format!(
            r#"
repo = "proj"
[metric]
command = "./metric.sh"
regex = 'score: ([0-9.]+)'
direction = "lower"
timeout = "3s"
repeats = 3
[scope]
include = ["src/**"]
[[guard]]
name = "on-the-cluster"
command = "test -n \"$SLURM_JOB_ID\""
[budget]
max_experiments = 1
[limits]
memory = "1GiB"
[proposer]
command = "{}"
[executor]
kind = "slurm"
partition = "debug"
proposer_on_cluster = true
"#,
            w.path().join("agent.sh").display()
        ),
    );
    let _d = w.daemon();
    // The node's memory is taken: the run's 1 GiB jobs wait, its small check job does not.
    let blocker = Blocker::new();
    w.ok(&["start", w.path().join("q.toml").to_str().unwrap()]);
    let st = w.wait_run("q", Duration::from_secs(60), |s| {
        s["cluster"]["queued"] == 1
    });
    let c = &st["summary"]["cluster"];
    assert_eq!(c["executor"], "slurm (partition debug)", "{st:#}");
    let queued: u64 = c["jobs"][0]["id"].as_str().unwrap().parse().unwrap();
    assert!(
        c["text"]
            .as_str()
            .unwrap()
            .contains(&format!("1 queued (job {queued})")),
        "{c:#}"
    );
    let queued_at = Instant::now();
    assert_eq!(live_jobs(&w, "q"), vec![(queued, "PENDING".to_string())]);
    // Longer in the queue than the metric's timeout: that must not time it out.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        w.json(&["status", "q", "--json"])["summary"]["cluster"]["queued"],
        1
    );
    drop(blocker);

    let st = w.wait_finished("q", Duration::from_secs(120));
    assert_eq!(st["summary"]["state"], "finished", "{st:#}\n{}", w.log("q"));
    let rows = tsv_rows(&w.path().join("proj-q/autoresearch-q.tsv"));
    assert_eq!(rows.len(), 2, "{rows:?}\n{}", w.log("q"));
    assert_eq!(rows[1][3], "keep", "{rows:?}\n{}", w.log("q"));
    assert!(
        rows[1][4].starts_with("halve on job "),
        "the agent ran as a Slurm job: {rows:?}"
    );

    let j = journal(&w, "q");
    let base = &j[0]["measurements"];
    let first = &base[0];
    assert_eq!(
        first["job_id"].as_str().unwrap(),
        queued.to_string(),
        "{first:#}"
    );
    let waited = first["queue_ms"].as_u64().unwrap();
    assert!(
        waited >= 4000 && waited as u128 >= queued_at.elapsed().as_millis().min(4000),
        "queue wait {waited} ms recorded apart: {first:#}"
    );
    assert!(
        first["wall_ms"].as_u64().unwrap() < 3000,
        "run time without the queue: {first:#}"
    );
    for m in base.as_array().unwrap() {
        assert_eq!(m["node"], first["node"], "{m:#}");
        assert_eq!(m["exit"]["kind"], "code");
    }
    // Paired rounds: best and candidate of a round in one allocation (same job, same node),
    // each round its own.
    let ms = j[1]["measurements"].as_array().unwrap();
    assert_eq!(ms.len(), 6, "{:#}", j[1]);
    let mut rounds = Vec::new();
    for pair in ms.chunks(2) {
        assert_eq!(pair[0]["job_id"], pair[1]["job_id"], "{pair:#?}");
        assert_eq!(pair[0]["node"], pair[1]["node"]);
        assert_ne!(pair[0]["tree"], pair[1]["tree"]);
        assert_eq!(
            pair[1]["queue_ms"], 0,
            "the second of a round does not queue again"
        );
        rounds.push(pair[0]["job_id"].clone());
    }
    rounds.dedup();
    assert_eq!(rounds.len(), 3, "{rounds:?}");
    assert!(
        j[1]["proposer"]["job_id"].is_string(),
        "{:#}",
        j[1]["proposer"]
    );
    assert!(
        j[1]["guards"][0]["job_id"].is_string(),
        "{:#}",
        j[1]["guards"]
    );

    // Nothing of the run is left on the cluster, and status says so.
    wait_no_jobs(&w, "q", Duration::from_secs(20));
    let st = w.json(&["status", "--json"]);
    let run = &st["runs"][0];
    assert_eq!(run["cluster"]["queued"], 0);
    assert_eq!(run["cluster"]["running"], 0);
}

/// The value file picks what the metric does: `hog` allocates memory, `hang` never ends.
const METRIC: &str = r#"#!/bin/sh
v=$(cat src/value.txt)
case "$v" in
  hog) head -c 2000M /dev/zero | tail > /dev/null; echo "survived";;
  hang) exec sh -c 'sleep 1000' arctl-slurm-hang-marker;;
esac
echo "score: $v"
"#;

#[test]
fn slurm_limits_timeout_and_stop_now_end_the_jobs() {
    let Some(_c) = cluster("slurm_limits_timeout_and_stop_now_end_the_jobs") else {
        return;
    };
    let w = World::new();
    let repo = w.path().join("proj");
    common::repo(&repo, &[("metric.sh", METRIC), ("src/value.txt", "100\n")]);
    // Patches (no quick-fix calls): 1 exceeds the memory limit, 2 times out, 3 hangs.
    let hyp = w.path().join("hyp");
    for (name, value) in [("1-hog", "hog"), ("2-hang", "hang"), ("3-hang", "hang")] {
        write(&repo.join("src/value.txt"), &format!("{value}\n"));
        write(
            &hyp.join(format!("{name}.patch")),
            &format!("{}\n", git(&repo, &["diff"])),
        );
        git(&repo, &["checkout", "-q", "--", "."]);
    }
    write(
        &w.path().join("lim.toml"),
        "repo = \"proj\"\n[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\ntimeout = \"5s\"\n[scope]\ninclude = [\"src/**\"]\n[limits]\nmemory = \"200MiB\"\n[proposer]\nkind = \"patches\"\ndir = \"hyp\"\n[executor]\nkind = \"slurm\"\n",
    );
    let _d = w.daemon();
    w.ok(&["start", w.path().join("lim.toml").to_str().unwrap()]);
    // Experiment 1 exceeds the memory limit, 2 times out; 3 hangs until `stop --now`.
    let st = w.wait_run("lim", Duration::from_secs(120), |s| {
        s["experiments"] == 2 && s["step"] == "measuring" && s["cluster"]["running"] == 1
    });
    let job = st["summary"]["cluster"]["jobs"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("the hanging task", Duration::from_secs(10), || {
        !processes_with("arctl-slurm-hang-marker").is_empty()
    });
    w.ok(&["stop", "lim", "--now"]);
    let st = w.wait_finished("lim", Duration::from_secs(60));
    assert_eq!(st["summary"]["state"], "stopped", "{st:#}");
    wait_no_jobs(&w, "lim", Duration::from_secs(20));
    wait_until(
        "the cancelled task to be gone",
        Duration::from_secs(20),
        || processes_with("arctl-slurm-hang-marker").is_empty(),
    );
    assert!(!my_jobs()
        .unwrap()
        .iter()
        .any(|j| j.id.to_string() == job && j.state == "RUNNING"));

    let rows = tsv_rows(&w.path().join("proj-lim/autoresearch-lim.tsv"));
    assert_eq!(rows.len(), 3, "{rows:?}\n{}", w.log("lim"));
    assert_eq!(rows[1][3], "crash");
    assert!(rows[1][4].contains("memory limit"), "{rows:?}");
    assert_eq!(rows[2][3], "crash");
    assert!(rows[2][4].contains("timed out"), "{rows:?}");
    let j = journal(&w, "lim");
    assert_eq!(
        j[1]["measurements"][0]["exit"]["kind"], "memory_limit",
        "{:#}",
        j[1]
    );
    let timed_out = &j[2]["measurements"][0];
    assert_eq!(timed_out["exit"]["kind"], "timed_out", "{timed_out:#}");
    let wall = timed_out["wall_ms"].as_u64().unwrap();
    assert!(
        (5000..12000).contains(&wall),
        "the timeout counts the running time: {timed_out:#}"
    );
    // The worktree is back at the baseline.
    assert_eq!(
        std::fs::read_to_string(w.path().join("proj-lim/src/value.txt")).unwrap(),
        "100\n"
    );
}

#[test]
fn slurm_jobs_of_a_killed_daemon_are_cancelled_on_restart() {
    let Some(_c) = cluster("slurm_jobs_of_a_killed_daemon_are_cancelled_on_restart") else {
        return;
    };
    let w = World::new();
    let repo = w.path().join("proj");
    common::repo(&repo, &[("metric.sh", METRIC), ("src/value.txt", "hang\n")]);
    write(
        &w.path().join("k.toml"),
        "repo = \"proj\"\n[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\ntimeout = \"10m\"\n[scope]\ninclude = [\"src/**\"]\n[limits]\nmemory = \"1GiB\"\n[proposer]\ncommand = \"true\"\n[executor]\nkind = \"slurm\"\n",
    );
    let mut daemon = DaemonProcess::spawn(&w);

    // 1. Killed while its baseline job waits in the queue: the job stays queued.
    let blocker = Blocker::new();
    w.ok(&["start", w.path().join("k.toml").to_str().unwrap()]);
    w.wait_run("k", Duration::from_secs(60), |s| {
        s["cluster"]["queued"] == 1
    });
    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    daemon.wait();
    let left = live_jobs(&w, "k");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].1, "PENDING");
    let ledger = std::fs::read_to_string(w.state_dir.join("runs/k/cluster-jobs.json")).unwrap();
    assert!(ledger.contains(&left[0].0.to_string()), "{ledger}");
    daemon = DaemonProcess::spawn(&w);
    wait_until("the recovery", Duration::from_secs(30), || {
        w.log("k").contains("recovery:")
    });
    let log = w.log("k");
    assert!(
        !live_jobs(&w, "k").iter().any(|j| j.0 == left[0].0),
        "the old job was cancelled: {:?}\n{log}",
        live_jobs(&w, "k")
    );

    // 2. Killed while its metric runs on the node.
    drop(blocker);
    w.wait_run("k", Duration::from_secs(60), |s| {
        s["cluster"]["running"] == 1 && s["step"] == "baseline"
    });
    wait_until("the metric's task", Duration::from_secs(20), || {
        !processes_with("arctl-slurm-hang-marker").is_empty()
    });
    let running = live_jobs(&w, "k");
    assert_eq!(running.len(), 1, "{running:?}");
    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    daemon.wait();
    daemon = DaemonProcess::spawn(&w);
    // The old job is gone (and with it its task), whatever the new daemon runs since.
    let deadline = Instant::now() + Duration::from_secs(30);
    while live_jobs(&w, "k").iter().any(|j| j.0 == running[0].0) {
        assert!(
            Instant::now() < deadline,
            "job {} of the killed daemon still there\n{}",
            running[0].0,
            w.log("k")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    w.ok(&["shutdown"]);
    assert!(daemon.wait().success());
    // Daemon shutdown cancels the jobs of the running metric too: nothing keeps running.
    wait_no_jobs(&w, "k", Duration::from_secs(20));
    wait_until("no task left", Duration::from_secs(20), || {
        processes_with("arctl-slurm-hang-marker").is_empty()
    });
}

#[test]
fn slurm_recover_cancels_recorded_and_named_jobs_only() {
    let Some(_c) = cluster("slurm_recover_cancels_recorded_and_named_jobs_only") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let submit = |name: &str| -> u64 {
        let o = Command::new("sbatch")
            .args([
                "--parsable",
                &format!("--job-name={name}"),
                "--time=5",
                "--mem=64M",
                "--output=/dev/null",
                "--wrap",
                "sleep 300",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let tag = format!("arctl-test{}/rec/", std::process::id());
    let p = job_name(&tag);
    let named = submit(&format!("{p}3.best"));
    // Recorded under an older prefix (the state dir was moved): found by its id and name.
    let old_name = format!("arctl-moved{}.rec.4.candidate", std::process::id());
    let recorded = submit(&old_name);
    let other_run = submit(&format!("{}other.1.best", p.trim_end_matches("rec.")));
    let ledger = dir.path().join("cluster-jobs.json");
    write(
        &ledger,
        &format!(
            r#"{{"schema":1,"jobs":[{{"id":{recorded},"name":"{old_name}"}},{{"id":{other_run},"name":"x"}}]}}"#
        ),
    );
    let spec = arctl::spec::ExecutorSpec {
        kind: arctl::spec::ExecutorKind::Slurm,
        ..Default::default()
    };
    let ex = arctl::exec::executor_for(
        Some(&spec),
        arctl::exec::executor::ExecutorOptions {
            cpus: None,
            ledger: Some(ledger.clone()),
            name_prefix: tag.clone(),
        },
    );
    let notes = ex.recover().unwrap();
    let live = |id: u64| {
        my_jobs()
            .unwrap()
            .iter()
            .any(|j| j.id == id && matches!(j.state.as_str(), "PENDING" | "RUNNING"))
    };
    assert!(!live(named) && !live(recorded), "{notes:?}");
    assert!(
        live(other_run),
        "a job of another run (recorded under another name) is not touched"
    );
    assert!(
        notes[0].contains(&named.to_string()) && notes[0].contains(&recorded.to_string()),
        "{notes:?}"
    );
    assert!(!ledger.exists());
    let _ = Command::new("scancel").arg(other_run.to_string()).status();
}

/// A folder of symlinks to the tools arctl needs, without the Slurm commands.
fn path_without_slurm(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    for tool in ["sh", "git", "env", "cat"] {
        if let Some(p) = arctl::exec::slurm::which(tool) {
            let _ = std::os::unix::fs::symlink(p, dir.join(tool));
        }
    }
    dir.display().to_string()
}

#[test]
fn slurm_start_refuses_what_cannot_work_and_creates_nothing() {
    let Some(_c) = cluster("slurm_start_refuses_what_cannot_work_and_creates_nothing") else {
        return;
    };
    let w = World::new();
    let repo = w.path().join("proj");
    common::repo(&repo, &[("metric.sh", METRIC), ("src/value.txt", "1\n")]);
    let spec = |name: &str, executor: &str| {
        let p = w.path().join(format!("{name}.toml"));
        write(&p, &format!("repo = \"proj\"\n[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[proposer]\ncommand = \"true\"\n[executor]\nkind = \"slurm\"\n{executor}"));
        p.display().to_string()
    };
    let refused = |w: &World, spec: &str, id: &str, words: &[&str]| {
        let o = w.arctl(&["--no-autostart", "start", spec]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{err}");
        for word in words {
            assert!(err.contains(word), "{word:?} not in: {err}");
        }
        assert!(
            !w.state_dir.join("runs").join(id).exists(),
            "nothing created"
        );
        assert!(!w.path().join(format!("proj-{id}")).exists(), "no worktree");
        assert!(!git(&repo, &["branch", "--list"]).contains(id), "no branch");
    };

    let mut daemon = DaemonProcess::spawn(&w);
    refused(
        &w,
        &spec("part", "partition = \"nope\"\n"),
        "part",
        &["no such Slurm partition", "\"nope\"", "debug"],
    );
    let big = spec("big", "partition = \"debug\"\n");
    write(
        Path::new(&big),
        &std::fs::read_to_string(&big)
            .unwrap()
            .replace("[proposer]", "[limits]\ncpus = 4096\n[proposer]"),
    );
    refused(
        &w,
        &big,
        "big",
        &[
            "refuses a job with the run's options",
            "--cpus-per-task=4096",
        ],
    );
    refused(
        &w,
        &spec("gres", "gres = \"gpu:1\"\n"),
        "gres",
        &["refuses", "gres"],
    );
    w.ok(&["shutdown"]);
    daemon.wait();

    // The daemon config's default executor applies to a spec without [executor].
    let plain = w.path().join("plain.toml");
    write(&plain, "repo = \"proj\"\n[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[proposer]\ncommand = \"true\"\n");
    let d = w.daemon_with(arctl::config::Settings {
        executor: Some(arctl::spec::ExecutorSpec {
            kind: arctl::spec::ExecutorKind::Slurm,
            partition: Some("nowhere".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    refused(
        &w,
        plain.to_str().unwrap(),
        "plain",
        &["no such Slurm partition", "\"nowhere\""],
    );
    d.shutdown().unwrap();

    // No srun on the daemon's PATH.
    let mut daemon = DaemonProcess::spawn_with(&w, |c| {
        c.env("PATH", path_without_slurm(&w.path().join("bin")));
    });
    refused(
        &w,
        &spec("nosrun", ""),
        "nosrun",
        &["`srun` is not on PATH"],
    );
    w.ok(&["shutdown"]);
    daemon.wait();

    // No controller: a config naming a port nothing listens on.
    let conf = std::fs::read_to_string("/etc/slurm/slurm.conf").unwrap_or_default();
    let host = conf
        .lines()
        .find_map(|l| l.strip_prefix("SlurmctldHost="))
        .unwrap_or("localhost")
        .to_string();
    let bogus = w.path().join("slurm.conf");
    write(&bogus, &format!("ClusterName=nowhere\nSlurmctldHost={host}\nSlurmctldPort=9\nAuthType=auth/munge\nMessageTimeout=2\nNodeName={host} CPUs=1\nPartitionName=debug Nodes={host} Default=YES\n"));
    let mut daemon = DaemonProcess::spawn_with(&w, |c| {
        c.env("SLURM_CONF", &bogus);
    });
    refused(
        &w,
        &spec("noctl", ""),
        "noctl",
        &["controller is not reachable"],
    );
    w.ok(&["shutdown"]);
    daemon.wait();
}
