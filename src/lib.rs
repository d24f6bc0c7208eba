//! arctl: a daemon that runs many autoresearch loops at once, safely, overnight.
//!
//! Layers (imports point down): `cli`/`client`/`daemon` → `run` → `git`, `exec`, `stats`,
//! `store`, `spec`, `protocol`.

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod exec;
pub mod git;
pub mod plot;
pub mod protocol;
pub mod run;
pub mod spec;
pub mod stats;
pub mod store;
