//! `arctl init --preset NAME`: ready-made metrics from the seed's domain quick-reference.
//! Each pre-fills the goal, the metric command, how its number is read and the direction;
//! the command's placeholders (`my_script.py`, `my_module`, ...) are the user's to replace.

/// How a preset's number is read (maps to one `[metric]` key, or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Regex(&'static str),
    Json(&'static str),
    /// The last number printed.
    Last,
}

#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    /// One line for `--preset list`.
    pub about: &'static str,
    pub goal: &'static str,
    pub command: &'static str,
    pub read: Read,
    /// "lower" or "higher".
    pub direction: &'static str,
    /// Extra `[metric]` keys as (key, TOML value text).
    pub extra: &'static [(&'static str, &'static str)],
    /// What to adapt before it works (shown by init).
    pub note: &'static str,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "python-runtime",
        about: "wall time of a Python script, timed by hyperfine (mean, seconds)",
        goal: "Cut the script's wall time",
        command: "hyperfine --warmup 3 --export-json /dev/stdout --style none 'python my_script.py'",
        read: Read::Json("results.0.mean"),
        direction: "lower",
        extra: &[("min_effect", "\"2%\"")],
        note: "replace my_script.py; needs hyperfine (pip install hyperfine)",
    },
    Preset {
        name: "python-memory",
        about: "peak memory of a Python function, by tracemalloc (peak_kb)",
        goal: "Lower peak memory",
        command: "python -c \"import tracemalloc, my_module; tracemalloc.start(); my_module.run(); print(f'peak_kb={tracemalloc.get_traced_memory()[1]/1024:.1f}')\"",
        read: Read::Regex(r"peak_kb=([0-9.]+)"),
        direction: "lower",
        extra: &[],
        note: "replace my_module / run()",
    },
    Preset {
        name: "pytest-passrate",
        about: "number of passing pytest tests",
        goal: "Make more of the test suite pass",
        command: "pytest --tb=no -q 2>&1 | tail -1",
        read: Read::Regex(r"([0-9]+) passed"),
        direction: "higher",
        extra: &[],
        note: "keep the tests out of scope (scope.exclude = [\"tests/**\"])",
    },
    Preset {
        name: "pytest-duration",
        about: "duration of the pytest run from its summary line (seconds)",
        goal: "Make the test suite faster",
        command: "pytest --tb=no -q 2>&1 | tail -1",
        read: Read::Regex(r" in ([0-9.]+)s"),
        direction: "lower",
        extra: &[("min_effect", "\"2%\"")],
        note: "add a guard that the same tests still pass",
    },
    Preset {
        name: "coverage",
        about: "total line coverage from pytest-cov (percent)",
        goal: "Raise test coverage",
        command: "pytest --cov=src --cov-report=term-missing --tb=no -q 2>&1 | grep TOTAL",
        read: Read::Regex(r"([0-9.]+)%"),
        direction: "higher",
        extra: &[],
        note: "needs pytest-cov; --cov=src names the package measured",
    },
    Preset {
        name: "ty-errors",
        about: "count of type errors reported by ty",
        goal: "Fix type errors reported by ty",
        command: "uv run ty check 2>/dev/null | grep -c '^error\\[' || true",
        read: Read::Last,
        direction: "lower",
        extra: &[],
        note: "needs uv and ty; add a tests guard so fixes keep behaviour",
    },
    Preset {
        name: "postgres-explain",
        about: "execution time of a query by EXPLAIN ANALYZE (ms)",
        goal: "Make the query faster",
        command: "psql \"$DATABASE_URL\" -X -q -t -A -c \"EXPLAIN (ANALYZE, FORMAT JSON) $(cat query.sql)\"",
        read: Read::Json("0.Execution Time"),
        direction: "lower",
        extra: &[("min_effect", "\"3%\"")],
        note: "replace query.sql; needs psql and DATABASE_URL",
    },
    Preset {
        name: "pgbench-tps",
        about: "PostgreSQL throughput by pgbench (transactions/s)",
        goal: "Raise database throughput",
        command: "pgbench -c 5 -T 30 \"$DATABASE_URL\" 2>&1 | grep 'tps ='",
        read: Read::Regex(r"tps = ([0-9.]+)"),
        direction: "higher",
        extra: &[],
        note: "needs pgbench and DATABASE_URL",
    },
    Preset {
        name: "ml-val-loss",
        about: "final val_loss of a training run",
        goal: "Lower the validation loss",
        command: "python train.py --epochs 10 2>&1 | grep val_loss | tail -1",
        read: Read::Regex(r"val_loss=([0-9.]+)"),
        direction: "lower",
        extra: &[("timeout", "\"90m\""), ("min_effect", "\"0.5%\"")],
        note: "train.py must print val_loss=<number>",
    },
    Preset {
        name: "sklearn-cv",
        about: "mean cross-validated F1 of a scikit-learn model",
        goal: "Raise the cross-validated F1",
        command: "python -c \"from sklearn.model_selection import cross_val_score; import numpy as np, my_model, my_data; X, y = my_data.load(); print(f'f1={np.mean(cross_val_score(my_model.build(), X, y, cv=5, scoring=\\\"f1_macro\\\")):.4f}')\"",
        read: Read::Regex(r"f1=([0-9.]+)"),
        direction: "higher",
        extra: &[],
        note: "replace my_model / my_data",
    },
    Preset {
        name: "cargo-bench",
        about: "time per iteration of a Rust benchmark (ns/iter, bencher format)",
        goal: "Make the benchmark faster",
        command: "cargo bench --bench my_bench -- --output-format bencher 2>/dev/null | grep 'bench:'",
        read: Read::Regex(r"bench:\s+([0-9,.]+) ns/iter"),
        direction: "lower",
        extra: &[("timeout", "\"15m\"")],
        note: "replace my_bench; criterion and libtest benches both print this format",
    },
];

/// The presets' names, for completion.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The `--preset list` text.
pub fn list() -> String {
    let w = PRESETS.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut out = String::from("presets (arctl init --preset NAME):\n");
    for p in PRESETS {
        out.push_str(&format!(
            "  {:<w$}  {} ({} is better)\n",
            p.name, p.about, p.direction
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_reads_its_sample_output() {
        use crate::spec::extract::extract;
        use crate::spec::Extraction;
        let samples = [
            (
                "python-runtime",
                r#"{"results":[{"command":"python x.py","mean":0.123,"stddev":0.01}]}"#,
            ),
            ("python-memory", "peak_kb=1234.5\n"),
            ("pytest-passrate", "3 failed, 12 passed in 0.52s\n"),
            ("pytest-duration", "12 passed in 0.52s\n"),
            ("coverage", "TOTAL     120     12    90%\n"),
            ("ty-errors", "7\n"),
            (
                "postgres-explain",
                r#"[{"Plan": {}, "Planning Time": 0.1, "Execution Time": 12.5}]"#,
            ),
            (
                "pgbench-tps",
                "tps = 1234.567 (without initial connection time)\n",
            ),
            ("ml-val-loss", "epoch 10 val_loss=0.4321\n"),
            ("sklearn-cv", "f1=0.8123\n"),
            (
                "cargo-bench",
                "test parse ... bench:       1,234 ns/iter (+/- 56)\n",
            ),
        ];
        assert_eq!(samples.len(), PRESETS.len());
        for (name, out) in samples {
            let p = find(name).unwrap();
            let how = match p.read {
                Read::Regex(r) => Extraction::Regex(regex::Regex::new(r).unwrap()),
                Read::Json(j) => Extraction::Json(j.into()),
                Read::Last => Extraction::LastNumber,
            };
            let v = extract(&how, out, "").unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(v > 0.0, "{name}: {v}");
        }
        assert_eq!(find("coverage").map(|p| p.direction), Some("higher"));
        assert!(list().contains("cargo-bench"));
    }

    #[test]
    fn init_help_names_every_preset() {
        use clap::CommandFactory;
        let mut cli = crate::cli::Cli::command();
        let init = cli.find_subcommand_mut("init").unwrap();
        let help = init.render_long_help().to_string().replace('\n', " ");
        for p in PRESETS {
            assert!(
                help.contains(p.name),
                "`arctl init --help` does not name {}:\n{help}",
                p.name
            );
        }
    }
}
