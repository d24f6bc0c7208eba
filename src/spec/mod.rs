//! The run spec (TOML): parse, defaults, validation with file:line:column errors.
//!
//! Every value that has a textual form ("90s", "4GiB", "2x", "1%", globs, ids) is a newtype
//! whose `Deserialize` validates it, so toml attaches the value's span to the error and the
//! user sees exactly where the problem is. Cross-field rules are checked after parsing and
//! located by key.
//!
//! * `units`: the value types and their textual forms;
//! * `types`: the spec's tables;
//! * `parse`: loading, parsing and the cross-field checks, and [`check_host`], the checks
//!   that depend on the machine (kept out of [`parse()`], which does not probe the host).
//!
//! Everything is re-exported here: callers use `crate::spec::X` whatever file X is in.

use std::fmt;
use std::path::PathBuf;

pub mod extract;
mod parse;
pub mod presets;
mod types;
mod units;

pub use parse::{check_host, load, load_text, normalize, parse, parse_for_host, HostFacts};
pub use types::{
    BudgetSpec, Direction, ExecutorKind, ExecutorSpec, Extraction, GuardSpec, LimitsSpec,
    MeasureMode, MetricSpec, NotifySpec, ParamSpec, PolicySpec, ProposerKind, ProposerSpec,
    Repeats, ResolvedSpec, RunSpec, SandboxMode, SandboxSpec, ScopeSpec, SearchStrategy, SetupSpec,
    TimeMode, WebSearch,
};
pub use units::{
    build_glob, format_duration, format_size, parse_duration, parse_size, ByteSize, Glob,
    HumanDuration, MetricTimeout, Pattern, Percent, RunId,
};

/// A spec problem, located in its file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending source line, for a caret display.
    pub source_line: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(src) = &self.source_line {
            write!(
                f,
                "\n    | {}\n    | {}^",
                src,
                " ".repeat(self.column.saturating_sub(1))
            )?;
        }
        Ok(())
    }
}
