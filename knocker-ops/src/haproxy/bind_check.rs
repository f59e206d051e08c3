//! Checks that `haproxy -c` cannot make: the frontend's address belongs to
//! this host, and its port is free or already HAProxy's own. A reload that
//! cannot bind fails after `-c` passed; the master keeps the old worker, but
//! the change is lost and the operator learns it only from the log.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use crate::Error;

/// Refuses a bind address that is not local (unless the host allows
/// non-local binds), or a port that someone else listens on: a process
/// other than `haproxy_pids`, or HAProxy itself for a frontend other than
/// knocker's (whose current binds are `own_binds`). HAProxy binds with
/// SO_REUSEPORT, so two of its frontends on one port both start and split
/// the traffic between them.
pub fn check(
    bind: SocketAddr,
    haproxy_pids: &[u32],
    own_binds: &[SocketAddr],
) -> Result<(), Error> {
    let ip = bind.ip();
    if !ip.is_unspecified() && !nonlocal_bind_allowed(ip) {
        if let Err(e) = TcpListener::bind(SocketAddr::new(ip, 0)) {
            if e.kind() == io::ErrorKind::AddrNotAvailable {
                return Err(Error::refused_always(format!(
                    "--bind {bind}: {ip} is not an address of this host, so HAProxy could not \
                     listen on it (for a floating address set net.ipv{}.ip_nonlocal_bind = 1)",
                    if ip.is_ipv4() { 4 } else { 6 }
                ))
                .with_source(e));
            }
        }
    }
    let listeners = listeners_on(bind).map_err(|e| {
        Error::failed("cannot read the listening sockets (/proc/net/tcp)").with_source(e)
    })?;
    if listeners.is_empty() {
        return Ok(());
    }
    let ours = socket_inodes(haproxy_pids);
    if let Some((addr, _)) = listeners.iter().find(|(addr, inode)| {
        ours.contains(inode) && !own_binds.iter().any(|b| overlaps(*addr, *b))
    }) {
        return Err(Error::refused_always(format!(
            "--bind {bind}: another frontend of HAProxy already listens on {addr}; two \
             frontends on one port would split the traffic between them"
        )));
    }
    if let Some((addr, inode)) = listeners.iter().find(|(_, inode)| !ours.contains(inode)) {
        let owner = owner_of(*inode)
            .map(|(pid, name)| format!("{name} (pid {pid})"))
            .unwrap_or_else(|| "another process".to_string());
        return Err(Error::refused_always(format!(
            "--bind {bind}: {owner} already listens on {addr}, so HAProxy could not; choose \
             another --bind or stop it"
        )));
    }
    Ok(())
}

fn nonlocal_bind_allowed(ip: IpAddr) -> bool {
    let path = match ip {
        IpAddr::V4(_) => "/proc/sys/net/ipv4/ip_nonlocal_bind",
        IpAddr::V6(_) => "/proc/sys/net/ipv6/ip_nonlocal_bind",
    };
    fs::read_to_string(path).is_ok_and(|v| v.trim() == "1")
}

/// Listening TCP sockets whose address overlaps `bind` (same port; same
/// address, or either one a wildcard), with their inodes.
fn listeners_on(bind: SocketAddr) -> io::Result<Vec<(SocketAddr, u64)>> {
    let mut found = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = match fs::read_to_string(table) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() < 10 || fields[3] != "0A" {
                continue;
            }
            let Some(addr) = parse_proc_addr(fields[1], v6) else {
                continue;
            };
            if overlaps(addr, bind) {
                if let Ok(inode) = fields[9].parse() {
                    found.push((addr, inode));
                }
            }
        }
    }
    Ok(found)
}

/// Whether two listening addresses conflict: same port, and the same
/// address or either one a wildcard.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && (a.ip() == b.ip()
            || a.ip().is_unspecified()
            || b.ip().is_unspecified()
            || mapped(a.ip()) == Some(b.ip())
            || mapped(b.ip()) == Some(a.ip()))
}

/// Refuses a bind that a `bind` line of the file outside knocker's block
/// (byte range `block`) overlaps: `haproxy -c` accepts two frontends on one
/// port, and both would then serve it.
pub fn check_file(
    bind: SocketAddr,
    text: &str,
    block: std::ops::Range<usize>,
) -> Result<(), Error> {
    let mut offset = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += line.len();
        if block.contains(&start) {
            continue;
        }
        let mut words = line.split_whitespace();
        if words.next() != Some("bind") {
            continue;
        }
        let Some(addresses) = words.next() else {
            continue;
        };
        for address in addresses.split(',') {
            if bind_line_overlaps(address, bind) {
                return Err(Error::refused_always(format!(
                    "--bind {bind}: line {} of the file already binds {address} ({:?}); two \
                     frontends on one port would split the traffic between them",
                    number + 1,
                    line.trim()
                )));
            }
        }
    }
    Ok(())
}

/// Whether one address of a `bind` line (`:443`, `*:443`, `1.2.3.4:80`,
/// `[::]:443`, `ipv4@:80`, `:8000-8010`) overlaps `bind`; unix sockets and
/// other families never do.
fn bind_line_overlaps(address: &str, bind: SocketAddr) -> bool {
    let address = address
        .strip_prefix("ipv4@")
        .or_else(|| address.strip_prefix("ipv6@"))
        .unwrap_or(address);
    if address.contains('@') || address.starts_with('/') {
        return false;
    }
    let Some((host, ports)) = address.rsplit_once(':') else {
        return false;
    };
    let (low, high) = match ports.split_once('-') {
        Some((l, h)) => (l.parse::<u16>(), h.parse::<u16>()),
        None => (ports.parse::<u16>(), ports.parse::<u16>()),
    };
    let (Ok(low), Ok(high)) = (low, high) else {
        return false;
    };
    if !(low..=high).contains(&bind.port()) {
        return false;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host {
        "" | "*" => true,
        _ => host
            .parse::<IpAddr>()
            .is_ok_and(|ip| overlaps(SocketAddr::new(ip, bind.port()), bind)),
    }
}

fn mapped(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

/// `0100007F:1F90` (IPv4, each 32-bit word in host order) or the IPv6 form
/// with four such words.
fn parse_proc_addr(text: &str, v6: bool) -> Option<SocketAddr> {
    let (ip_hex, port_hex) = text.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip_hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_le_bytes())
    };
    let ip = if v6 {
        let mut bytes = [0u8; 16];
        for i in 0..4 {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Some(SocketAddr::new(ip, port))
}

fn socket_inodes(pids: &[u32]) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for pid in pids {
        let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Some(inode) = fs::read_link(entry.path())
                .ok()
                .and_then(|t| socket_inode(&t.to_string_lossy()))
            {
                inodes.insert(inode);
            }
        }
    }
    inodes
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The process holding a socket, for the message.
fn owner_of(inode: u64) -> Option<(u32, String)> {
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if socket_inodes(&[pid]).contains(&inode) {
            let name = fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_default();
            return Some((pid, name));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_lines_of_other_frontends_are_found() {
        let bind: SocketAddr = "127.0.0.1:443".parse().unwrap();
        for line in [
            ":443",
            "*:443",
            "0.0.0.0:443",
            "127.0.0.1:443",
            "[::]:443",
            "ipv4@:443",
            ":80,:440-450",
        ] {
            assert!(
                check_file(
                    bind,
                    &format!("frontend x\n    bind {line} ssl crt x\n"),
                    0..0
                )
                .is_err(),
                "{line}"
            );
        }
        for line in [
            "127.0.0.2:443",
            ":80",
            "/run/x.sock",
            "unix@x",
            "abns@y",
            ":4430",
        ] {
            assert!(
                check_file(bind, &format!("frontend x\n  bind {line}\n"), 0..0).is_ok(),
                "{line}"
            );
        }
        // knocker's own block does not count.
        let text = "frontend x\n  bind :443\n";
        assert!(check_file(bind, text, 11..text.len()).is_ok());
    }

    #[test]
    fn proc_net_addresses_decode() {
        assert_eq!(
            parse_proc_addr("0100007F:1F90", false),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("00000000000000000000000001000000:0050", true),
            Some("[::1]:80".parse().unwrap())
        );
    }

    #[test]
    fn a_port_held_by_another_process_is_refused_and_a_free_one_passes() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let e = check(addr, &[], &[]).unwrap_err();
        assert!(e.to_string().contains("already listens"), "{e}");
        // Our own pid counts as HAProxy's: the port is its own when
        // knocker's frontend has it, another frontend's otherwise.
        check(addr, &[std::process::id()], &[addr]).unwrap();
        let e = check(addr, &[std::process::id()], &[]).unwrap_err();
        assert!(e.to_string().contains("another frontend"), "{e}");
        drop(held);
        check(addr, &[], &[]).unwrap();
        let e = check("203.0.113.77:443".parse().unwrap(), &[], &[]).unwrap_err();
        assert!(e.to_string().contains("not an address of this host"), "{e}");
    }
}
