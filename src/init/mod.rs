//! `arctl init`: the seed's Phase 1 (setup questions and confirmation table) as a terminal
//! dialogue, or non-interactively from `--set KEY=VALUE` and a preset. Writes a spec that
//! `arctl validate` accepts, after running the metric once to show the number it reads.
//!
//! The answers live in a TOML table (the draft) keyed exactly like the spec, so a preset,
//! `--set` and the dialogue all fill the same thing, and every question's default is the
//! draft's current value (which makes "edit" a second pass over the questions).
//!
//! One module per part: `keys` (the spec's keys and `--set` values), `draft` (the answers,
//! the written file and the table), `checks` (scope globs and the metric's trial run
//! against the repo), `command` (the entry point and writing the file), `dialogue` (the
//! questions).

mod checks;
mod command;
mod dialogue;
mod draft;
mod keys;
mod lines;
pub mod presets;

pub use command::run;
