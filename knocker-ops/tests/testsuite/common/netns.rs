//! A network namespace joined to this one by a veth pair: a "host" with
//! its own address, for what cannot choose its source address on loopback
//! (a walreceiver, pg_basebackup, a keeper). Both are removed when the
//! value is dropped, also when the test fails.

use std::process::{Command, Output};

/// A namespace with one veth pair (`10.{octet}.N.1` here, `.2` there, in
/// a /29); dropped: both gone.
pub struct Netns {
    /// The namespace's name (`ip netns exec NAME`).
    pub name: String,
    /// The host side's interface.
    pub host_if: String,
    /// The host side's address.
    pub host_ip: String,
    /// The namespace side's address.
    pub ns_ip: String,
    /// An address of the subnet that no interface has.
    pub other_ip: String,
    /// The pair's subnet (`10.{octet}.N.0/29`).
    pub subnet: String,
}

/// Runs `ip args`, failing the test with ip's message.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Makes the namespace `{prefix}-{pid}` and its veth pair in
    /// `10.{octet}.0.0/16`. Each test binary passes its own prefix and
    /// octet, so that two of them running at once never share a subnet or
    /// an interface name (at most 15 bytes: keep `prefix` to 4).
    pub fn create(prefix: &str, octet: u8) -> Netns {
        let id = std::process::id();
        let third = id % 250;
        let n = Netns {
            name: format!("{prefix}-{id}"),
            host_if: format!("{prefix}h{}", id % 100_000),
            host_ip: format!("10.{octet}.{third}.1"),
            ns_ip: format!("10.{octet}.{third}.2"),
            other_ip: format!("10.{octet}.{third}.3"),
            subnet: format!("10.{octet}.{third}.0/29"),
        };
        let ns_if = format!("{prefix}n{}", id % 100_000);
        ip(&["netns", "add", &n.name]);
        // From here on, Drop cleans up.
        ip(&[
            "link", "add", &n.host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &n.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/29", n.host_ip),
            "dev",
            &n.host_if,
        ]);
        ip(&["link", "set", &n.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &n.name, "ip"];
            all.extend(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/29", n.ns_ip), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        n
    }

    /// Runs `argv` inside the namespace as OS user `user`.
    pub fn run_as(&self, user: &str, argv: &[String]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "runuser", "-u", user, "--"])
            .args(argv)
            .output()
            .expect("run in the namespace")
    }

    /// The veth pair up or down (down on the host side takes the carrier
    /// away from both ends).
    pub fn link(&self, up: bool) {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
