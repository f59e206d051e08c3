//! Facts about this process and this host that several operations need:
//! who runs them, what time it is in UTC, whether a host name is this host.

use std::time::SystemTime;

use time::OffsetDateTime;

/// The effective user's login name from the password database
/// (`getpwuid(geteuid())`), when it has an entry: what to record as "who"
/// when the environment names nobody (a root login shell, cron, a service).
pub fn effective_user_name() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut buf = vec![0u8; 4096];
    // SAFETY: a zeroed passwd is a valid value for getpwuid_r to fill.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` outlives the
    // use of the strings getpwuid_r points into it.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
    Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty())
}

/// Whether this process runs with the effective uid of root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn utc(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

/// `t` in UTC as `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, whole seconds).
pub fn utc_timestamp_of(t: SystemTime) -> String {
    let t = utc(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The current time as [`utc_timestamp_of`] writes it.
pub fn utc_timestamp() -> String {
    utc_timestamp_of(SystemTime::now())
}

/// `t` in UTC as `YYYYMMDDTHHMMSS.ffffffZ`: compact, sortable as text, and
/// free of `:` (file names).
pub fn utc_compact_timestamp_of(t: SystemTime) -> String {
    let t = utc(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_of_known_instants() {
        assert_eq!(utc_timestamp_of(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::new(951_782_400 + 3_661, 123_456_000);
        assert_eq!(utc_timestamp_of(leap), "2000-02-29T01:01:01Z");
        assert_eq!(utc_compact_timestamp_of(leap), "20000229T010101.123456Z");
    }

    #[test]
    fn the_effective_user_has_a_name() {
        // Tests run as root here, or as some user with a passwd entry.
        let name = effective_user_name().expect("passwd entry for the euid");
        assert!(!name.is_empty());
    }
}
