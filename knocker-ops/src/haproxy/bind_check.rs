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
/// non-local binds) or a port that a process other than `haproxy_pids`
/// listens on.
pub fn check(bind: SocketAddr, haproxy_pids: &[u32]) -> Result<(), Error> {
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
            let overlaps = addr.port() == bind.port()
                && (addr.ip() == bind.ip()
                    || addr.ip().is_unspecified()
                    || bind.ip().is_unspecified()
                    || mapped(addr.ip()) == Some(bind.ip()));
            if overlaps {
                if let Ok(inode) = fields[9].parse() {
                    found.push((addr, inode));
                }
            }
        }
    }
    Ok(found)
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
        let e = check(addr, &[]).unwrap_err();
        assert!(e.to_string().contains("already listens"), "{e}");
        // Our own pid counts as HAProxy's: the port is "its own".
        check(addr, &[std::process::id()]).unwrap();
        drop(held);
        check(addr, &[]).unwrap();
        let e = check("192.0.2.1:443".parse().unwrap(), &[]).unwrap_err();
        assert!(e.to_string().contains("not an address of this host"), "{e}");
    }
}
