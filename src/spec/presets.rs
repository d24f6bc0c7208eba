//! Agent presets: a non-interactive command line each tool documents, the folders it keeps
//! its own state in (the sandbox must let it write there), and how it reports its usage.
//! `proposer.preset = "claude"` expands to these; `arctl validate` prints the expansion.
//!
//! The command lines, as each tool's documentation gives them (checked 2026-12):
//! - Claude Code: `claude -p` (print mode, the prompt on stdin), `--output-format json` (a
//!   final JSON object with `total_cost_usd` and `usage`), `--permission-mode acceptEdits`
//!   plus `--allowedTools` for the shell: it edits files and runs commands without asking.
//!   (`--dangerously-skip-permissions` is refused when running as root, common on GPU
//!   clouds, so it is not used.)
//! - Codex CLI: `codex exec` (non-interactive; `-` reads the prompt from stdin) with
//!   `--sandbox workspace-write` (edits in the working folder) and `--json` (JSONL events,
//!   token counts in `turn.completed`).
//! - aider: `--yes-always` (never asks), `--no-auto-commits` (arctl commits),
//!   `--message-file /dev/stdin`; it prints `Cost: $X message, $Y session.`
//! - Gemini CLI: headless when stdin is not a terminal, `--yolo` (approves its tools),
//!   `--output-format json` (`stats` with token counts).
//! - opencode: `opencode run MESSAGE` (non-interactive); no usage report.

use serde::{Deserialize, Serialize};

/// How a tool reports what a call cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    /// One JSON object on stdout with `total_cost_usd` and `usage.*_tokens` (Claude Code).
    ClaudeJson,
    /// JSONL events on stdout; token counts in `usage` objects (Codex).
    CodexJsonl,
    /// A `Cost: $X message` line (aider).
    AiderText,
    /// One JSON object on stdout with `stats` token counts (Gemini CLI).
    GeminiJson,
    /// Nothing to read.
    None,
}

/// One agent CLI.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentPreset {
    pub name: &'static str,
    /// Run with `sh -c` in the worktree, the prompt on stdin.
    pub command: &'static str,
    /// Folders (and files) under `$HOME` it writes its own state to.
    pub home_writable: &'static [&'static str],
    pub usage: Usage,
}

pub const AGENT_PRESETS: &[AgentPreset] = &[
    AgentPreset {
        name: "claude",
        command: "claude -p --output-format json --permission-mode acceptEdits --allowedTools 'Bash Edit Write Read Glob Grep'",
        home_writable: &[".claude", ".claude.json", ".config/claude", ".cache/claude"],
        usage: Usage::ClaudeJson,
    },
    AgentPreset {
        name: "codex",
        command: "codex exec --sandbox workspace-write --json -",
        home_writable: &[".codex"],
        usage: Usage::CodexJsonl,
    },
    AgentPreset {
        name: "aider",
        command: "aider --yes-always --no-auto-commits --no-check-update --message-file /dev/stdin",
        home_writable: &[".aider", ".aider.chat.history.md", ".aider.input.history", ".cache/aider"],
        usage: Usage::AiderText,
    },
    AgentPreset {
        name: "gemini",
        command: "gemini --yolo --output-format json",
        home_writable: &[".gemini", ".cache/gemini"],
        usage: Usage::GeminiJson,
    },
    AgentPreset {
        name: "opencode",
        command: "opencode run \"$(cat)\"",
        home_writable: &[".local/share/opencode", ".config/opencode", ".cache/opencode"],
        usage: Usage::None,
    },
];

pub fn find(name: &str) -> Option<&'static AgentPreset> {
    AGENT_PRESETS.iter().find(|p| p.name == name)
}

pub fn names() -> Vec<&'static str> {
    AGENT_PRESETS.iter().map(|p| p.name).collect()
}

/// What a call cost and used, as far as the tool said.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    pub cost_usd: Option<f64>,
    pub tokens: Option<u64>,
}

/// Read a tool's usage report from its stdout.
pub fn read_usage(usage: Usage, stdout: &str) -> Spent {
    match usage {
        Usage::ClaudeJson => last_json(stdout)
            .map(|v| Spent {
                cost_usd: v.get("total_cost_usd").and_then(|c| c.as_f64()),
                tokens: tokens_in(v.get("usage")),
            })
            .unwrap_or_default(),
        Usage::CodexJsonl => {
            let tokens: u64 = stdout
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| tokens_in(v.get("usage")))
                .sum();
            Spent {
                cost_usd: None,
                tokens: (tokens > 0).then_some(tokens),
            }
        }
        Usage::AiderText => Spent {
            cost_usd: stdout
                .lines()
                .rev()
                .find_map(|l| l.split_once("Cost: $"))
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok()),
            tokens: None,
        },
        Usage::GeminiJson => last_json(stdout)
            .map(|v| Spent {
                cost_usd: None,
                tokens: v
                    .get("stats")
                    .and_then(|s| s.get("totalTokens").or_else(|| s.get("total_tokens")))
                    .and_then(|t| t.as_u64()),
            })
            .unwrap_or_default(),
        Usage::None => Spent::default(),
    }
}

/// The sum of the `*_tokens` counts of a usage object.
fn tokens_in(usage: Option<&serde_json::Value>) -> Option<u64> {
    let u = usage?.as_object()?;
    let n: u64 = u
        .iter()
        .filter(|(k, _)| k.ends_with("_tokens"))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    (n > 0).then_some(n)
}

/// The whole of stdout as JSON, else its last line that is.
fn last_json(stdout: &str) -> Option<serde_json::Value> {
    serde_json::from_str(stdout.trim()).ok().or_else(|| {
        stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l.trim()).ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tools_usage_report_is_read() {
        let claude = r#"{"type":"result","result":"done","total_cost_usd":0.0421,"usage":{"input_tokens":1200,"output_tokens":300,"cache_read_input_tokens":50}}"#;
        assert_eq!(
            read_usage(Usage::ClaudeJson, claude),
            Spent {
                cost_usd: Some(0.0421),
                tokens: Some(1550)
            }
        );
        let codex = "{\"type\":\"thread.started\"}\n{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":900,\"output_tokens\":100}}\n";
        assert_eq!(read_usage(Usage::CodexJsonl, codex).tokens, Some(1000));
        let aider = "Applied edit to src/x.py\nTokens: 2.3k sent, 120 received. Cost: $0.0042 message, $0.0130 session.\n";
        assert_eq!(read_usage(Usage::AiderText, aider).cost_usd, Some(0.0042));
        let gemini = r#"{"response":"ok","stats":{"totalTokens":20}}"#;
        assert_eq!(read_usage(Usage::GeminiJson, gemini).tokens, Some(20));
        assert_eq!(read_usage(Usage::ClaudeJson, "not json"), Spent::default());
    }

    #[test]
    fn every_preset_is_found_by_name() {
        for n in names() {
            assert_eq!(find(n).unwrap().name, n);
        }
        assert!(find("cursor").is_none());
    }
}
