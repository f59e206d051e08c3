//! Terminal input and output: prompts, notes, errors, and whether escape
//! sequences may be used.

use std::io::{self, BufRead, IsTerminal, Write};

/// Standard input and output for the dialogue.
#[derive(Debug)]
pub struct Term {
    color: bool,
    /// `--yes`: standard input must never be read.
    never_read: bool,
}

impl Term {
    /// Colour only on a terminal, and never under `TERM=dumb` or `NO_COLOR`
    /// (any value, as no-color.org says).
    pub fn new(never_read: bool) -> Term {
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        let no_color = std::env::var_os("NO_COLOR").is_some();
        Term {
            color: io::stdout().is_terminal() && !dumb && !no_color,
            never_read,
        }
    }

    /// Whether prompting is allowed.
    pub fn can_prompt(&self) -> bool {
        !self.never_read
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A line of plain output.
    pub fn say(&self, text: &str) {
        println!("{text}");
    }

    /// A heading (bold).
    pub fn heading(&self, text: &str) {
        println!("{}", self.paint("1", text));
    }

    /// Something went well (green).
    pub fn ok(&self, text: &str) {
        println!("{}", self.paint("32", text));
    }

    /// A problem with an answer or a check, before asking again (yellow on
    /// stdout, so it reads in order with the prompts).
    pub fn problem(&self, text: &str) {
        println!("{}", self.paint("33", text));
    }

    /// A fatal error, on standard error.
    pub fn error(&self, text: &str) {
        let _ = io::stdout().flush();
        let painted = if self.color && io::stderr().is_terminal() {
            format!("\x1b[31merror:\x1b[0m {text}")
        } else {
            format!("error: {text}")
        };
        eprintln!("{painted}");
    }

    /// Prints `prompt` (no newline) and reads one line. `None` at end of
    /// input. Never called with `--yes`.
    pub fn ask(&mut self, prompt: &str) -> Option<String> {
        debug_assert!(!self.never_read, "--yes must never read standard input");
        print!("{prompt}");
        let _ = io::stdout().flush();
        let mut line = String::new();
        match io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => {
                println!();
                None
            }
            Ok(_) => {
                let trimmed = line.trim_end_matches(['\n', '\r']);
                Some(trimmed.trim().to_owned())
            }
        }
    }
}
