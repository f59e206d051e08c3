//! Addresses exactly as the server reads them: `getaddrinfo()` with
//! `AI_NUMERICHOST` (glibc: `inet_aton` leniencies such as `127.1`, hex and
//! octal parts, then `inet_pton` for IPv6 with an optional `%scope`), CIDR
//! prefix lengths through `strtol()`, and `getnameinfo()`-style printing.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// glibc's `inet_aton_exact()`: `a.b.c.d`, `a.b.c` (c: 16 bits), `a.b`
/// (b: 24 bits) or `a` (32 bits), each part decimal, `0x` hex or `0` octal.
pub(crate) fn inet_aton(s: &[u8]) -> Option<Ipv4Addr> {
    if let Some(a) = plain_dotted_quad(s) {
        return Some(a);
    }
    let mut parts = [0u32; 3];
    let mut nparts = 0usize;
    let mut i = 0;
    loop {
        if i >= s.len() || !s[i].is_ascii_digit() {
            return None;
        }
        let (val, used) = strtoul_base0(&s[i..])?;
        i += used;
        if i < s.len() && s[i] == b'.' {
            if nparts >= 3 || val > 0xff {
                return None;
            }
            parts[nparts] = val;
            nparts += 1;
            i += 1;
        } else {
            if i != s.len() {
                return None;
            }
            let max: u32 = match nparts {
                0 => u32::MAX,
                1 => 0x00ff_ffff,
                2 => 0xffff,
                _ => 0xff,
            };
            if val > max {
                return None;
            }
            let mut addr = val;
            for (k, p) in parts[..nparts].iter().enumerate() {
                addr |= p << (24 - 8 * k);
            }
            return Some(Ipv4Addr::from(addr));
        }
    }
}

/// The usual spelling, `a.b.c.d` with each part 0-255 in decimal without
/// leading zeros, read in one pass ([`inet_aton`] reads it the same way);
/// `None` for anything else.
fn plain_dotted_quad(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut val: u32 = 0;
        while i < s.len() && i - start < 3 && s[i].is_ascii_digit() {
            val = val * 10 + u32::from(s[i] - b'0');
            i += 1;
        }
        // no digit, a leading zero (octal), or above 255: the general path
        if i == start || (s[start] == b'0' && i - start > 1) || val > 255 {
            return None;
        }
        *octet = val as u8;
    }
    (i == s.len()).then(|| Ipv4Addr::from(octets))
}

/// `strtoul(s, &end, 0)` for a string starting with a digit: returns the
/// value (None when above 32 bits) and the bytes used.
fn strtoul_base0(s: &[u8]) -> Option<(u32, usize)> {
    let (base, mut i) = if s.len() >= 2 && s[0] == b'0' && (s[1] == b'x' || s[1] == b'X') {
        if s.len() > 2 && s[2].is_ascii_hexdigit() {
            (16, 2)
        } else {
            // "0x" without hex digits: strtoul takes just the "0"
            return Some((0, 1));
        }
    } else if s[0] == b'0' {
        (8, 0)
    } else {
        (10, 0)
    };
    let mut val: u64 = 0;
    let start = i;
    if base == 10 {
        // the usual case, without the general digit conversion
        while let Some(&c) = s.get(i).filter(|c| c.is_ascii_digit()) {
            val = val.saturating_mul(10).saturating_add(u64::from(c - b'0'));
            i += 1;
        }
    } else {
        while let Some(d) = s.get(i).and_then(|&c| char::from(c).to_digit(base)) {
            val = val
                .saturating_mul(u64::from(base))
                .saturating_add(u64::from(d));
            i += 1;
        }
    }
    debug_assert!(i > start || base == 8);
    if val > u32::MAX as u64 {
        return None;
    }
    Some((val as u32, i))
}

/// Which network interface names exist, for IPv6 scopes such as
/// `fe80::1%eth0`: glibc's `getaddrinfo(AI_NUMERICHOST)` accepts an interface
/// name as the scope of a link-local address only when that interface exists
/// on the machine (`if_nametoindex()`), so the verdict on such a line depends
/// on where the server runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InterfaceNames {
    /// The interfaces of this machine (`if_nametoindex()`): right when the
    /// file is for a server running here. The default.
    #[default]
    System,
    /// Exactly these interface names (a server on another machine, tests).
    Known(Vec<String>),
}

impl InterfaceNames {
    /// Whether an interface of this name exists.
    pub fn exists(&self, name: &str) -> bool {
        match self {
            InterfaceNames::Known(names) => names.iter().any(|n| n == name),
            InterfaceNames::System => system_interface_exists(name),
        }
    }
}

#[cfg(unix)]
fn system_interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // if_nametoindex only reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

#[cfg(not(unix))]
fn system_interface_exists(_: &str) -> bool {
    false
}

/// A numeric host as `getaddrinfo(AI_NUMERICHOST)` accepts it on this
/// machine: IPv4 by `inet_aton`, else IPv6 with an optional `%scope`
/// ([`parse_numeric_host_in`] with [`InterfaceNames::System`]).
pub fn parse_numeric_host(s: &[u8]) -> Option<IpAddr> {
    parse_numeric_host_in(s, &InterfaceNames::System)
}

/// A numeric host as glibc's `getaddrinfo(AI_NUMERICHOST)` accepts it:
/// IPv4 by `inet_aton`, else IPv6 (`inet_pton`) with an optional scope after
/// the first `%` (`__inet6_scopeid_pton()`): for link-local unicast
/// (`fe80::/10`) and node- or link-local multicast addresses, the name of an
/// existing interface; for any IPv6 address, a decimal number up to
/// 4294967295 (leading zeros allowed, no sign or blanks). The scope is not
/// part of the result: the server neither shows it (`pg_hba_file_rules`
/// strips it) nor compares it when matching clients.
pub fn parse_numeric_host_in(s: &[u8], interfaces: &InterfaceNames) -> Option<IpAddr> {
    if let Some(v4) = inet_aton(s) {
        return Some(IpAddr::V4(v4));
    }
    // every IPv6 address has a colon: host names stop here
    if !s.contains(&b':') {
        return None;
    }
    let (addr, scope) = match s.iter().position(|&c| c == b'%') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let addr = inet_pton6(addr)?;
    if let Some(scope) = scope {
        let scope = std::str::from_utf8(scope).ok()?;
        if !scope_is_valid(&addr, scope, interfaces) {
            return None;
        }
    }
    Some(IpAddr::V6(addr))
}

/// glibc's `inet_pton6()`: up to eight groups of at most four hex digits,
/// one `::` standing for at least one zero group, and optionally a dotted
/// quad ([`inet_pton4`]) as the last 32 bits.
pub(crate) fn inet_pton6(s: &[u8]) -> Option<Ipv6Addr> {
    let mut out = [0u8; 16];
    let mut tp = 0;
    let mut colon_at: Option<usize> = None;
    let mut i = 0;
    // a leading colon must be the start of "::"
    if s.first() == Some(&b':') {
        if s.get(1) != Some(&b':') {
            return None;
        }
        i = 1;
    }
    if s.is_empty() {
        return None;
    }
    let mut token_start = i;
    let mut digits = 0;
    let mut val: u16 = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if let Some(d) = char::from(c).to_digit(16) {
            if digits == 4 {
                return None;
            }
            val = (val << 4) | d as u16;
            digits += 1;
            continue;
        }
        if c == b':' {
            token_start = i;
            if digits == 0 {
                if colon_at.is_some() {
                    return None;
                }
                colon_at = Some(tp);
                continue;
            }
            if i == s.len() || tp + 2 > 16 {
                return None;
            }
            out[tp..tp + 2].copy_from_slice(&val.to_be_bytes());
            tp += 2;
            digits = 0;
            val = 0;
            continue;
        }
        if c == b'.' && tp + 4 <= 16 {
            if let Some(quad) = inet_pton4(&s[token_start..]) {
                out[tp..tp + 4].copy_from_slice(&quad);
                tp += 4;
                digits = 0;
                break;
            }
        }
        return None;
    }
    if digits > 0 {
        if tp + 2 > 16 {
            return None;
        }
        out[tp..tp + 2].copy_from_slice(&val.to_be_bytes());
        tp += 2;
    }
    if let Some(at) = colon_at {
        // "::" must stand for at least one group
        if tp == 16 {
            return None;
        }
        let n = tp - at;
        out.copy_within(at..tp, 16 - n);
        out[at..16 - n].fill(0);
        tp = 16;
    }
    (tp == 16).then(|| Ipv6Addr::from(out))
}

/// glibc's `inet_pton4()`: exactly four decimal parts 0-255, no leading
/// zeros (stricter than [`inet_aton`]).
fn inet_pton4(s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut k = 0;
    let mut octets = 0;
    let mut saw_digit = false;
    for &c in s {
        if c.is_ascii_digit() {
            if saw_digit && out[k] == 0 {
                return None;
            }
            let new = u32::from(out[k]) * 10 + u32::from(c - b'0');
            if new > 255 {
                return None;
            }
            out[k] = new as u8;
            if !saw_digit {
                octets += 1;
                if octets > 4 {
                    return None;
                }
                saw_digit = true;
            }
        } else if c == b'.' && saw_digit {
            if octets == 4 {
                return None;
            }
            k += 1;
            saw_digit = false;
        } else {
            return None;
        }
    }
    (octets == 4).then_some(out)
}

/// glibc's `__inet6_scopeid_pton()`.
fn scope_is_valid(addr: &Ipv6Addr, scope: &str, interfaces: &InterfaceNames) -> bool {
    let o = addr.octets();
    let link_local = o[0] == 0xfe && (o[1] & 0xc0) == 0x80;
    let multicast_local = o[0] == 0xff && matches!(o[1] & 0x0f, 0x01 | 0x02);
    if (link_local || multicast_local) && !scope.is_empty() && interfaces.exists(scope) {
        return true;
    }
    // strtoull(scope, &end, 10) after a leading digit, whole string, 32 bits
    !scope.is_empty()
        && scope.bytes().all(|c| c.is_ascii_digit())
        && scope
            .bytes()
            .try_fold(0u64, |n, c| {
                let n = n * 10 + u64::from(c - b'0');
                (n <= u64::from(u32::MAX)).then_some(n)
            })
            .is_some()
}

/// `strtol(s, &end, 10)` that must consume the whole string (leading
/// whitespace and a sign allowed), as `pg_sockaddr_cidr_mask()` uses it.
pub(crate) fn strtol_whole(s: &[u8]) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut val: i64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        val = val.saturating_mul(10).saturating_add((s[i] - b'0') as i64);
        i += 1;
    }
    if i == digits_start {
        // no conversion: end = start of string, which is not its end
        return None;
    }
    if i != s.len() {
        return None;
    }
    Some(if neg { -val } else { val })
}

/// The netmask of a prefix length, per family (`pg_sockaddr_cidr_mask()`).
pub fn cidr_mask(bits: &[u8], v6: bool) -> Option<IpAddr> {
    let n = strtol_whole(bits)?;
    if v6 {
        if !(0..=128).contains(&n) {
            return None;
        }
        let m: u128 = if n == 0 { 0 } else { u128::MAX << (128 - n) };
        Some(IpAddr::V6(Ipv6Addr::from(m)))
    } else {
        if !(0..=32).contains(&n) {
            return None;
        }
        let m: u32 = if n == 0 { 0 } else { u32::MAX << (32 - n) };
        Some(IpAddr::V4(Ipv4Addr::from(m)))
    }
}

/// Print an address as `getnameinfo(NI_NUMERICHOST)` does on glibc
/// (`inet_ntop`), without a scope.
pub fn format_ip(addr: &IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format_ipv6(a),
    }
}

fn format_ipv6(a: &Ipv6Addr) -> String {
    let w = a.segments();
    // longest run of zero words (first one wins), at least 2 long
    let (mut best_base, mut best_len) = (usize::MAX, 0);
    let (mut cur_base, mut cur_len) = (usize::MAX, 0);
    for (i, &word) in w.iter().enumerate() {
        if word == 0 {
            if cur_base == usize::MAX {
                cur_base = i;
                cur_len = 1;
            } else {
                cur_len += 1;
            }
        } else if cur_base != usize::MAX {
            if best_base == usize::MAX || cur_len > best_len {
                best_base = cur_base;
                best_len = cur_len;
            }
            cur_base = usize::MAX;
        }
    }
    if cur_base != usize::MAX && (best_base == usize::MAX || cur_len > best_len) {
        best_base = cur_base;
        best_len = cur_len;
    }
    if best_base != usize::MAX && best_len < 2 {
        best_base = usize::MAX;
    }
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if best_base != usize::MAX && i >= best_base && i < best_base + best_len {
            if i == best_base {
                out.push(':');
            }
            i += 1;
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)) {
            let o = a.octets();
            let _ = write!(out, "{}.{}.{}.{}", o[12], o[13], o[14], o[15]);
            return out;
        }
        let _ = write!(out, "{:x}", w[i]);
        i += 1;
    }
    if best_base != usize::MAX && best_base + best_len == 8 {
        out.push(':');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    extern "C" {
        fn inet_pton(
            af: libc::c_int,
            src: *const libc::c_char,
            dst: *mut libc::c_void,
        ) -> libc::c_int;
    }

    /// What glibc itself says.
    fn glibc_pton6(s: &str) -> Option<Ipv6Addr> {
        let c = std::ffi::CString::new(s).ok()?;
        let mut out = [0u8; 16];
        // SAFETY: `c` is NUL-terminated and `out` has the 16 bytes an
        // AF_INET6 address needs.
        let r = unsafe { inet_pton(libc::AF_INET6, c.as_ptr(), out.as_mut_ptr().cast()) };
        (r == 1).then(|| Ipv6Addr::from(out))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// `inet_pton6` agrees with glibc's on near-addresses (group
        /// lengths 0-5, `::` anywhere, dotted tails with bad parts)...
        #[test]
        fn inet_pton6_is_glibc_on_address_shapes(
            s in "(([0-9a-fA-F]{0,5}|[0-9]{1,3}(\\.[0-9]{1,4}){0,4}):{1,2}){0,9}([0-9a-fA-F]{0,5}|0?[0-9]{1,3}(\\.0?[0-9]{1,3}){2,4})"
        ) {
            prop_assert_eq!(inet_pton6(s.as_bytes()), glibc_pton6(&s), "{}", s);
        }

        /// ...and on arbitrary strings of the bytes that matter.
        #[test]
        fn inet_pton6_is_glibc_on_noise(s in "[0-9a-gA-G:.x ]{0,42}") {
            prop_assert_eq!(inet_pton6(s.as_bytes()), glibc_pton6(&s), "{}", s);
        }
    }

    #[test]
    fn inet_pton6_cases_glibc_decides() {
        for s in [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::8",
            "1:2:3:4:5:6:7:8::",
            ":1::",
            "1:::2",
            "::ffff:1.2.3.4",
            "::1.2.3.04",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "::12345",
            "00000::",
            "1:",
            "::1.2.3",
            "1.2.3.4",
            "::256.1.1.1",
            "fe80::1",
            "a::b.1.2.3",
            "",
            ":",
        ] {
            assert_eq!(inet_pton6(s.as_bytes()), glibc_pton6(s), "{s:?}");
        }
    }

    fn v4(s: &str) -> Option<String> {
        inet_aton(s.as_bytes()).map(|a| a.to_string())
    }

    #[test]
    fn inet_aton_leniencies() {
        assert_eq!(v4("127.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(v4("10.1.2").as_deref(), Some("10.1.0.2"));
        assert_eq!(v4("2130706433").as_deref(), Some("127.0.0.1"));
        assert_eq!(v4("0x7f.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(v4("0177.0.0.01").as_deref(), Some("127.0.0.1"));
        assert_eq!(v4("0").as_deref(), Some("0.0.0.0"));
        assert_eq!(v4("1.2.3.4.5"), None);
        assert_eq!(v4("256.1.1.1"), None);
        assert_eq!(v4("1.2.3.256"), None);
        assert_eq!(v4("1.2.65535").as_deref(), Some("1.2.255.255"));
        assert_eq!(v4("08"), None);
        assert_eq!(v4("0x"), None);
        assert_eq!(v4("1.2.3."), None);
        assert_eq!(v4(" 1.2.3.4"), None);
        assert_eq!(v4("1.2.3.4 "), None);
        assert_eq!(v4("4294967296"), None);
    }

    #[test]
    fn ipv6_and_scope() {
        assert!(parse_numeric_host(b"::1").is_some());
        assert!(parse_numeric_host(b"fe80::1%2").is_some());
        assert!(parse_numeric_host(b"::ffff:1.2.3.4").is_some());
        assert!(parse_numeric_host(b"example.com").is_none());
    }

    /// Regression (known-lint-bugs `addr-ipv6-scope.conf`): glibc takes an
    /// existing interface's name as the scope of a link-local address; every
    /// expectation below is what `getaddrinfo(AI_NUMERICHOST)` said on glibc
    /// 2.36 with interfaces lo and eth0.
    #[test]
    fn ipv6_scopes_like_glibc() {
        let here = InterfaceNames::Known(vec!["lo".into(), "eth0".into()]);
        let ok = |s: &str| parse_numeric_host_in(s.as_bytes(), &here).is_some();
        for good in [
            "fe80::1%lo",
            "fe80::1%eth0",
            "febf::1%lo",
            "ff02::1%lo",
            "ff01::1%lo",
            "ff12::1%lo",
            "ff32::1%eth0",
            "fe80::1%1",
            "fe80::1%0",
            "fe80::1%01",
            "fe80::1%99999",
            "fe80::1%4294967295",
            "2001:db8::1%1",
            "::1%0",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "fe80::1%nosuchif",
            "fe80::1%",
            "fe80::1%LO",
            "fe80::1%lo%lo",
            "::1%lo",
            "2001:db8::1%lo",
            "fec0::1%lo",
            "fe80::1%4294967296",
            "fe80::1%-1",
            "fe80::1%+1",
            "fe80::1% 1",
            "fe80::1%1x",
            "fe80::1%0x1",
            "1.2.3.4%lo",
            "1.2.3.4%1",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        // the scope is dropped, as the view and the matcher do
        assert_eq!(
            parse_numeric_host_in(b"fe80::1%lo", &here),
            Some("fe80::1".parse().unwrap())
        );
        // the loopback interface exists on any Linux machine
        #[cfg(target_os = "linux")]
        assert!(parse_numeric_host(b"fe80::1%lo").is_some());
        assert!(parse_numeric_host(b"fe80::1%nosuchif0").is_none());
    }

    #[test]
    fn prefix_lengths_like_strtol() {
        assert_eq!(strtol_whole(b"24"), Some(24));
        assert_eq!(strtol_whole(b"+24"), Some(24));
        assert_eq!(strtol_whole(b" 024"), Some(24));
        assert_eq!(strtol_whole(b"-0"), Some(0));
        assert_eq!(strtol_whole(b""), None);
        assert_eq!(strtol_whole(b"24 "), None);
        assert_eq!(strtol_whole(b"x"), None);
        assert!(cidr_mask(b"33", false).is_none());
        assert!(cidr_mask(b"-1", false).is_none());
        assert_eq!(
            format_ip(&cidr_mask(b"20", false).unwrap()),
            "255.255.240.0"
        );
        assert_eq!(
            format_ip(&cidr_mask(b"64", true).unwrap()),
            "ffff:ffff:ffff:ffff::"
        );
    }

    #[test]
    fn ipv6_printing_like_inet_ntop() {
        let p = |s: &str| format_ip(&s.parse::<IpAddr>().unwrap());
        assert_eq!(p("::1"), "::1");
        assert_eq!(p("::"), "::");
        assert_eq!(p("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(p("::1.2.3.4"), "::1.2.3.4");
        assert_eq!(p("1:0:0:1:0:0:0:1"), "1:0:0:1::1");
        assert_eq!(p("1:0:1:1:1:1:1:1"), "1:0:1:1:1:1:1:1");
        assert_eq!(p("fe80::"), "fe80::");
        assert_eq!(p("1:0:0:2:0:0:3:4"), "1::2:0:0:3:4");
    }
}
