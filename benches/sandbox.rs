//! What the sandbox costs per child (issue 16): the wall time of running `true` through
//! `exec::run_sandboxed` with each containment, against a plain `fork` + `exec` of the same
//! command measured in the same run (`std::process::Command`), and the ratios. Run with
//! `cargo bench --bench sandbox` (ARCTL_BENCH_N = children per case, default 200).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arctl::exec::{self, Cancel, CommandSpec, Sandbox};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("ARCTL_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let wt = dir.path().join("wt");
    std::fs::create_dir_all(&wt).unwrap();
    let spec = |i: usize| {
        CommandSpec::new(
            "true",
            &wt,
            dir.path().join("out"),
            dir.path().join("err"),
            format!("arctl-bench-sandbox/{i}"),
        )
    };
    let reference = median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                std::process::Command::new("/bin/sh")
                    .args(["-c", "true"])
                    .status()
                    .unwrap();
                t.elapsed()
            })
            .collect(),
    );
    let writable: Option<Vec<PathBuf>> = Some(vec![wt.clone()]);
    let cases = [
        ("exec::run (keeper, subreaper)", Sandbox::default()),
        (
            "+ PID and mount namespace",
            Sandbox {
                isolate: true,
                ..Sandbox::default()
            },
        ),
        (
            "+ Landlock",
            Sandbox {
                isolate: true,
                writable: writable.clone(),
                ..Sandbox::default()
            },
        ),
        (
            "+ network namespace",
            Sandbox {
                isolate: true,
                writable,
                network: false,
            },
        ),
    ];
    println!("sandbox cost per child ({n} children each; `sh -c true`)");
    println!(
        "  reference: std::process::Command   median {:>8.2} ms",
        reference.as_secs_f64() * 1e3
    );
    println!("  {}", exec::containment());
    for (name, sb) in cases {
        let cancel = Cancel::new();
        let times: Vec<Duration> = (0..n)
            .map(|i| {
                let t = Instant::now();
                let o = exec::run_sandboxed(&spec(i), &sb, &cancel).unwrap();
                assert!(o.exit.success());
                t.elapsed()
            })
            .collect();
        let m = median(times);
        println!(
            "  {name:<34} median {:>8.2} ms   ratio {:>5.2}   overhead {:>+7.2} ms",
            m.as_secs_f64() * 1e3,
            m.as_secs_f64() / reference.as_secs_f64(),
            (m.as_secs_f64() - reference.as_secs_f64()) * 1e3
        );
    }
}
