//! This host's addresses, to tell standbys, secondaries and web nodes where
//! the database is: the default route's interface from `/proc/net/route` and
//! the interfaces' addresses from `getifaddrs`. Nothing is ever connected to.

use std::net::{IpAddr, Ipv4Addr};

/// The interface of the IPv4 default route (lowest metric), if any.
pub fn default_route_interface(route_table: &str) -> Option<String> {
    route_table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000")
                .then(|| (f[6].parse::<u32>().unwrap_or(u32::MAX), f[0].to_string()))
        })
        .min()
        .map(|(_, name)| name)
}

/// IPv4 addresses of the interfaces, as (interface, address).
pub fn interface_addresses() -> Vec<(String, Ipv4Addr)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family we check.
            let family = unsafe { (*ifa.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                // SAFETY: family AF_INET means a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                // SAFETY: ifa_name is a NUL-terminated string.
                let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                    .to_string_lossy()
                    .into_owned();
                out.push((name, addr));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// The address to advertise and the other candidates.
pub fn advertise_candidates() -> (Option<IpAddr>, Vec<IpAddr>) {
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let default_if = default_route_interface(&route);
    let addrs: Vec<(String, Ipv4Addr)> = interface_addresses()
        .into_iter()
        .filter(|(_, a)| !a.is_loopback())
        .collect();
    let chosen = default_if
        .and_then(|i| addrs.iter().find(|(n, _)| *n == i))
        .or(addrs.first())
        .map(|(_, a)| IpAddr::V4(*a));
    let others = addrs
        .iter()
        .map(|(_, a)| IpAddr::V4(*a))
        .filter(|a| Some(*a) != chosen)
        .collect();
    (chosen, others)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_is_read_from_the_table() {
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                 eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                 wg0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(t).as_deref(), Some("wg0"));
        assert_eq!(default_route_interface("Iface\n"), None);
    }
}
