//! Where `arctl init` reads its answers: a line editor at a terminal (arrows, history,
//! Ctrl-A/E, Ctrl-C — rustyline, talking to the terminal itself), plain lines otherwise
//! (a pipe, a file, a test's scripted input).

use std::io::{BufRead, Write};

/// One answer per call; `None` at the end of the input.
pub(super) trait Lines {
    fn read(&mut self, prompt: &str, ui: &mut dyn Write) -> std::io::Result<Option<String>>;
}

/// Plain lines from any reader; the prompt goes to the dialogue's output.
pub(super) struct Plain<R>(pub R);

impl<R: BufRead> Lines for Plain<R> {
    fn read(&mut self, prompt: &str, ui: &mut dyn Write) -> std::io::Result<Option<String>> {
        write!(ui, "{prompt}")?;
        ui.flush()?;
        let mut line = String::new();
        Ok((self.0.read_line(&mut line)? > 0).then_some(line))
    }
}

/// A line editor on the terminal.
pub(super) struct Editor(rustyline::DefaultEditor);

/// Ctrl-C at a prompt: the dialogue ends and nothing is written.
pub(super) const INTERRUPTED: &str = "interrupted";

impl Editor {
    /// The editor when stdin is a terminal, else None (use [`Plain`]).
    pub(super) fn at_terminal() -> Option<Editor> {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return None;
        }
        let config = rustyline::Config::builder()
            .auto_add_history(true)
            // Prompts and echo go to the terminal even when stdout is redirected.
            .behavior(rustyline::Behavior::PreferTerm)
            .build();
        rustyline::DefaultEditor::with_config(config)
            .ok()
            .map(Editor)
    }
}

impl Lines for Editor {
    fn read(&mut self, prompt: &str, ui: &mut dyn Write) -> std::io::Result<Option<String>> {
        ui.flush()?;
        match self.0.readline(prompt) {
            Ok(line) => Ok(Some(line)),
            Err(rustyline::error::ReadlineError::Eof) => Ok(None),
            Err(rustyline::error::ReadlineError::Interrupted) => {
                Err(std::io::Error::other(INTERRUPTED))
            }
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }
}
