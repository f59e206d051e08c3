//! `knocker hba lint FILE [--pg-version N] [--json] [--without FEATURE]...`
//!
//! Exit status: 0 when PostgreSQL N would load the file, 1 when it would
//! not, 2 when the file cannot be read or the usage is wrong.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use pghba::check::canonicalize_path;
use pghba::{
    check_bytes, check_problems, BuildFeatures, Diagnostic, FsLoader, PgVersion, RuleRow,
    ValidateOptions,
};

/// A feature the server may be built without.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Feature {
    /// SSL (then hostssl lines warn and `cert` is unsupported).
    Ssl,
    /// LDAP.
    Ldap,
    /// GSSAPI (then hostgssenc lines warn and `gss` is unsupported).
    Gssapi,
    /// PAM.
    Pam,
}

/// Arguments of `knocker hba lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// The pg_hba.conf file to check.
    pub file: PathBuf,
    /// PostgreSQL major version whose rules apply (13 to 18).
    #[arg(long = "pg-version", value_name = "N", default_value_t = 18,
          value_parser = clap::value_parser!(u32).range(13..=18))]
    pub pg_version: u32,
    /// Print the rows of pg_hba_file_rules, one JSON object per line, and nothing else.
    #[arg(long)]
    pub json: bool,
    /// The server is built without this feature (repeatable; npm builds lack ldap, gssapi, pam).
    #[arg(long, value_enum, value_name = "FEATURE", value_delimiter = ',')]
    pub without: Vec<Feature>,
    /// Also report rules that can never match because an earlier rule
    /// catches all their connections (quadratic in the number of rules;
    /// printed as warnings, on stderr with --json; the exit status is
    /// unchanged).
    #[arg(long)]
    pub shadowing: bool,
}

fn options(args: &LintArgs) -> ValidateOptions {
    let mut build = BuildFeatures::default();
    for f in &args.without {
        match f {
            Feature::Ssl => build.ssl = false,
            Feature::Ldap => build.ldap = false,
            Feature::Gssapi => build.gssapi = false,
            Feature::Pam => build.pam = false,
        }
    }
    ValidateOptions {
        // the range check of clap makes this infallible
        version: PgVersion::new(args.pg_version).unwrap_or(PgVersion::LATEST),
        build,
        ..ValidateOptions::default()
    }
}

/// Run the command; returns the exit status.
pub fn run(args: &LintArgs) -> ExitCode {
    let given = args.file.to_string_lossy().into_owned();
    let contents = match Contents::read(&args.file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("knocker: cannot read {given}: {e}");
            return ExitCode::from(2);
        }
    };
    let bytes: &[u8] = &contents;
    // The server names files by absolute path; so do the JSON rows.
    let absolute = std::path::absolute(&args.file)
        .map(|p| canonicalize_path(&p.to_string_lossy()))
        .unwrap_or_else(|_| given.clone());
    let opts = options(args);

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut write_error: Option<io::Error> = None;
    // every row for --json; else only the lines with a message, which a
    // large file may have checked on two threads
    let check = if args.json {
        check_bytes
    } else {
        check_problems
    };
    let verdict = check(&absolute, bytes, &mut FsLoader, &opts, &mut |line| {
        if write_error.is_some() {
            return;
        }
        let result = if args.json {
            serde_json::to_writer(&mut out, &RuleRow::from_checked(line))
                .map_err(io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
        } else if let Some(mut d) = Diagnostic::from_checked(line) {
            if d.file_name == absolute {
                d.file_name.clone_from(&given);
            }
            writeln!(out, "{d}")
        } else {
            Ok(())
        };
        if let Err(e) = result {
            write_error = Some(e);
        }
    });
    if !args.json {
        // what the server only logs (e.g. an included directory) is a warning
        for problem in &verdict.logged {
            let mut d = Diagnostic::from_logged(problem);
            if d.file_name == absolute {
                d.file_name.clone_from(&given);
            }
            if let Err(e) = writeln!(out, "{d}") {
                write_error.get_or_insert(e);
            }
        }
        if let Some(msg) = &verdict.file_error {
            let msg = msg.replace(&absolute, &given);
            if let Err(e) = writeln!(out, "{given}:1:1: {msg}") {
                write_error.get_or_insert(e);
            }
        }
    }
    if args.shadowing && write_error.is_none() {
        let result = if args.json {
            write_shadowing(&mut io::stderr().lock(), &absolute, &given, bytes, &opts)
        } else {
            write_shadowing(&mut out, &absolute, &given, bytes, &opts)
        };
        if let Err(e) = result {
            write_error = Some(e);
        }
    }
    if let Err(e) = out.flush() {
        write_error.get_or_insert(e);
    }
    if let Some(e) = write_error {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("knocker: {e}");
            return ExitCode::from(2);
        }
    }
    if verdict.loads {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Files from this size on are mapped rather than read.
const MAP_FROM: u64 = 1 << 20;

/// The bytes of the file to lint. A large regular file is mapped: reading
/// it would first have the kernel zero a buffer of its size and then copy
/// the file into it, which costs as much as linting it (a 100k-rule file:
/// ~8 MB, 2000 page faults); a mapping shares the page cache.
enum Contents {
    Read(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl Contents {
    fn read(path: &std::path::Path) -> io::Result<Contents> {
        let mut file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_file() && meta.len() >= MAP_FROM {
            // SAFETY: the mapping is private and read-only and lives as long
            // as the slices taken from it. Another process truncating the
            // file while it is linted would end this process with SIGBUS
            // (editors and knocker itself replace pg_hba.conf by renaming a
            // new file, which leaves this mapping intact); changing it in
            // place would only give a lint of mixed contents.
            if let Ok(map) = unsafe { memmap2::MmapOptions::new().populate().map(&file) } {
                return Ok(Contents::Mapped(map));
            }
        }
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes)?;
        Ok(Contents::Read(bytes))
    }
}

impl std::ops::Deref for Contents {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Contents::Read(bytes) => bytes,
            Contents::Mapped(map) => map,
        }
    }
}

/// `--shadowing`: one warning per rule an earlier rule makes unreachable.
fn write_shadowing(
    out: &mut dyn Write,
    absolute: &str,
    given: &str,
    bytes: &[u8],
    opts: &ValidateOptions,
) -> io::Result<()> {
    let rules = pghba::matcher::RuleSet::load(absolute, bytes, &mut FsLoader, opts);
    let name = |f: &str| {
        if f == absolute {
            given.to_string()
        } else {
            f.to_string()
        }
    };
    for s in pghba::shadow::shadowed_rules(&rules) {
        let (rule, by) = (&rules.rules[s.rule], &rules.rules[s.by]);
        let by_place = if by.file == rule.file {
            format!("line {}", by.line)
        } else {
            format!("{}:{}", name(&by.file), by.line)
        };
        writeln!(
            out,
            "{}:{}:1: warning: rule can never match: {by_place} catches every connection it would",
            name(&rule.file),
            rule.line
        )?;
    }
    Ok(())
}
