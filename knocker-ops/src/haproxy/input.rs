//! Checks of everything the operator typed, before anything is touched.
//! Every value ends up as a token of haproxy.cfg, whose tokenizer treats
//! blanks, `#`, quotes, backslashes and line breaks specially: none of them
//! is accepted anywhere.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::Error;

/// The web nodes' port when a node is given without one.
pub const KNOCKNOC_PORT: u16 = 8756;

/// Refuses text that could break out of its haproxy.cfg token.
pub fn check_token(what: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::usage(format!("{what} is empty")));
    }
    if let Some(c) = value.chars().find(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '#' | '"' | '\'' | '\\' | '$' | '{' | '}')
    }) {
        return Err(Error::usage(format!(
            "{what} {value:?} contains {c:?}: blanks, '#', quotes, backslashes, '$', braces \
             and line breaks are not allowed"
        )));
    }
    Ok(())
}

/// A web node: `IP[:PORT]`, IPv6 as `[IP]:PORT` or a bare IPv6 address.
pub fn parse_node(text: &str) -> Result<SocketAddr, Error> {
    check_token("the node address", text)?;
    let addr = if let Ok(ip) = text.parse::<IpAddr>() {
        SocketAddr::new(ip, KNOCKNOC_PORT)
    } else {
        text.parse::<SocketAddr>().map_err(|_| {
            Error::usage(format!(
                "{text:?} is not a node address: give IP or IP:PORT (IPv6 as [IP]:PORT)"
            ))
        })?
    };
    if addr.port() == 0 {
        return Err(Error::usage(format!("{text:?}: port 0 is not a port")));
    }
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(Error::usage(format!(
            "{text:?}: a web node needs a unicast address"
        )));
    }
    Ok(addr)
}

/// The frontend's `ADDR:PORT`.
pub fn parse_bind(text: &str) -> Result<SocketAddr, Error> {
    check_token("--bind", text)?;
    let addr = text.parse::<SocketAddr>().map_err(|_| {
        Error::usage(format!(
            "--bind {text:?} is not ADDR:PORT (such as 0.0.0.0:443 or [::]:443)"
        ))
    })?;
    if addr.port() == 0 {
        return Err(Error::usage("--bind: port 0 is not a port"));
    }
    Ok(addr)
}

/// `--check-path`: an absolute request path.
pub fn check_path(path: &str) -> Result<(), Error> {
    check_token("--check-path", path)?;
    if !path.starts_with('/') || path.len() > 1024 {
        return Err(Error::usage(format!(
            "--check-path {path:?} must be an absolute path such as / or /healthz"
        )));
    }
    Ok(())
}

/// `--cookie`: an RFC 6265 cookie name (a token).
pub fn check_cookie(name: &str) -> Result<(), Error> {
    check_token("--cookie", name)?;
    if name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!%&*+-.^_`|~".contains(&b))
    {
        return Err(Error::usage(format!(
            "--cookie {name:?} is not a cookie name (letters, digits and -_. only, at most 64)"
        )));
    }
    Ok(())
}

/// A path given on the command line (`--cert`, `--haproxy-config`).
pub fn check_file_path(what: &str, path: &Path) -> Result<(), Error> {
    let text = path
        .to_str()
        .ok_or_else(|| Error::usage(format!("{what} {path:?} is not UTF-8")))?;
    check_token(what, text)
}

/// `haproxy.cfg` spelling of a socket address (IPv6 in brackets).
pub fn haproxy_addr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_default_to_the_knocknoc_port_and_hostile_text_is_refused() {
        assert_eq!(
            parse_node("10.0.0.5").unwrap(),
            "10.0.0.5:8756".parse().unwrap()
        );
        assert_eq!(parse_node("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(parse_node("::1").unwrap(), "[::1]:8756".parse().unwrap());
        for bad in [
            "10.0.0.5 #",
            "10.0.0.5\nserver x",
            "\"10.0.0.5\"",
            "10.0.0.5:0",
            "0.0.0.0",
            "host.example",
            "10.0.0.256",
            "",
        ] {
            let e = parse_node(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Usage, "{bad:?}");
        }
        assert!(check_cookie("KNOCKER_NODE").is_ok());
        assert!(check_cookie("a;b").is_err());
        assert!(check_path("/healthz").is_ok());
        assert!(check_path("healthz").is_err());
        assert!(check_path("/a b").is_err());
    }
}
