//! arctl: a daemon that runs many autoresearch loops at once, safely, overnight.
//!
//! Layers (imports point down; see docs/Architecture.md):
//! `main` → `app` → `client` / `demo` / `init` / `validate` / `daemon`; `client` → `protocol`, `spec`,
//! `cli`;
//! `daemon` → `ops` → `run` → `git`, `exec`, `stats`, `store`, `spec`, `protocol`.
//! Leaves used anywhere: `config` (where things live), `host` (what this machine offers).

pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod exec;
pub mod git;
pub mod host;
pub mod init;
pub mod ops;
pub mod plot;
pub mod protocol;
pub mod run;
pub mod spec;
pub mod stats;
pub mod store;
pub mod text;
pub mod validate;
