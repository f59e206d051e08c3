//! `.pgpass` lookup, as libpq's `passwordFromFile` does it.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Something libpq would print as a `WARNING:` while looking for a password.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResolveWarning {
    /// The password file is not a regular file; it was ignored.
    PassfileNotPlainFile(PathBuf),
    /// The password file is readable or writable by group or others; it was
    /// ignored.
    PassfileInsecure(PathBuf),
}

impl fmt::Display for ResolveWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveWarning::PassfileNotPlainFile(p) => {
                write!(f, "password file \"{}\" is not a plain file", p.display())
            }
            ResolveWarning::PassfileInsecure(p) => write!(
                f,
                "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
                p.display()
            ),
        }
    }
}

/// One lookup key. `host` and `port` are the raw list entries of the
/// connection (libpq compares text, not parsed numbers).
pub(crate) struct PassfileKey<'a> {
    pub host: &'a str,
    pub port: &'a str,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The password of the first matching line, or `None`. Problems that libpq
/// only warns about are pushed to `warnings`; unreadable files are ignored
/// silently, as libpq ignores them.
pub(crate) fn lookup(
    path: &Path,
    key: &PassfileKey<'_>,
    default_socket_dir: &str,
    warnings: &mut Vec<ResolveWarning>,
) -> Option<String> {
    if key.dbname.is_empty() || key.user.is_empty() {
        return None;
    }
    // 'localhost' matches an empty host and the default socket directory.
    let host = if key.host.is_empty()
        || ((key.host.starts_with('/') || key.host.starts_with('@'))
            && key.host == default_socket_dir)
    {
        "localhost"
    } else {
        key.host
    };
    let port = if key.port.is_empty() {
        "5432"
    } else {
        key.port
    };

    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        push_once(
            warnings,
            ResolveWarning::PassfileNotPlainFile(path.to_owned()),
        );
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        push_once(warnings, ResolveWarning::PassfileInsecure(path.to_owned()));
        return None;
    }
    let content = std::fs::read(path).ok()?;
    for line in content.split(|&b| b == b'\n') {
        if line.first() == Some(&b'#') {
            continue;
        }
        let mut end = line.len();
        while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
            end -= 1;
        }
        let line = &line[..end];
        if line.is_empty() {
            continue;
        }
        let rest = [host, port, key.dbname, key.user]
            .iter()
            .try_fold(line, |rest, token| matches_field(rest, token.as_bytes()));
        if let Some(rest) = rest {
            // A password that is not UTF-8 cannot be used by this crate;
            // libpq would stop at this line too, so stop here.
            return String::from_utf8(unescape_password(rest)).ok();
        }
    }
    None
}

fn push_once(warnings: &mut Vec<ResolveWarning>, w: ResolveWarning) {
    if !warnings.contains(&w) {
        warnings.push(w);
    }
}

/// libpq's `pwdfMatchesString`: the rest of the line after the field when
/// it matches `token` (or is `*`), else `None`. `\` escapes the next byte.
fn matches_field<'a>(buf: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if buf.starts_with(b"*:") {
        return Some(&buf[2..]);
    }
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut b, mut t) = (0, 0);
    let mut escaped = false;
    while at(buf, b) != 0 {
        if at(buf, b) == b'\\' && !escaped {
            b += 1;
            escaped = true;
        }
        if at(buf, b) == b':' && at(token, t) == 0 && !escaped {
            return Some(&buf[b + 1..]);
        }
        escaped = false;
        if at(token, t) == 0 {
            return None;
        }
        if at(buf, b) == at(token, t) {
            b += 1;
            t += 1;
        } else {
            return None;
        }
    }
    None
}

/// The password field: up to the first unescaped `:`, `\x` meaning `x`.
fn unescape_password(rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rest.len() && rest[i] != b':' {
        if rest[i] == b'\\' && i + 1 < rest.len() {
            i += 1;
        }
        out.push(rest[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_matching_follows_libpq() {
        assert_eq!(matches_field(b"host:rest", b"host"), Some(&b"rest"[..]));
        assert_eq!(matches_field(b"*:rest", b"anything"), Some(&b"rest"[..]));
        assert_eq!(matches_field(b"ho\\:st:rest", b"ho:st"), Some(&b"rest"[..]));
        assert_eq!(matches_field(b"hostx:rest", b"host"), None);
        assert_eq!(matches_field(b"hos:rest", b"host"), None);
        assert_eq!(matches_field(b"host", b"host"), None);
        // '*' only counts as a wildcard for the whole field.
        assert_eq!(matches_field(b"h*:rest", b"host"), None);
    }

    #[test]
    fn password_unescaping_stops_at_unescaped_colon() {
        assert_eq!(unescape_password(b"pa\\:ss\\\\w:extra"), b"pa:ss\\w");
        assert_eq!(unescape_password(b"trailing\\"), b"trailing\\");
    }
}
