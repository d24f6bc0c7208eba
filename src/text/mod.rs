//! The human text of the wire types (status, results, report, merge and cleanup reports):
//! pure functions over `protocol`, shared by the client, which prints them, and the daemon,
//! which renders a run's report for the user's notification commands.

pub mod render;
pub mod reports;
