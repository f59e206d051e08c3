//! Checking `--add`/`--remove`/`--explain` arguments before anything is
//! touched: only numeric addresses and CIDRs, host bits clear.

use std::net::IpAddr;

use ipnet::IpNet;

/// Why an argument is not a CIDR we accept; the text is the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCidr(pub String);

fn shown(arg: &str) -> String {
    format!("{arg:?}")
}

/// Read a CIDR argument: `addr/prefix`, or a bare address meaning one host
/// (/32 or /128). Host bits set, host names, and anything with blanks,
/// quotes, `#` or control characters are refused.
pub fn parse_cidr(arg: &str, force: bool) -> Result<IpNet, BadCidr> {
    if arg.is_empty() {
        return Err(BadCidr("empty CIDR".into()));
    }
    if arg.len() > 64 {
        return Err(BadCidr(format!(
            "{}...: too long to be a CIDR",
            shown(&arg[..arg.char_indices().nth(20).map_or(arg.len(), |(i, _)| i)])
        )));
    }
    if let Some(c) = arg
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '\'' | '#' | ','))
    {
        return Err(BadCidr(format!(
            "{}: contains {c:?}; give a numeric address or CIDR such as 203.0.113.7/32",
            shown(arg)
        )));
    }
    let net = match arg.split_once('/') {
        None => {
            let addr: IpAddr = arg.parse().map_err(|_| not_numeric(arg))?;
            IpNet::from(addr)
        }
        Some((addr, prefix)) => {
            let addr: IpAddr = addr.parse().map_err(|_| not_numeric(arg))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= max && !prefix.starts_with('+'))
                .ok_or_else(|| {
                    BadCidr(format!(
                        "{}: the prefix length must be a number from 0 to {max}",
                        shown(arg)
                    ))
                })?;
            let net = IpNet::new(addr, prefix).map_err(|_| not_numeric(arg))?;
            if net.trunc() != net {
                return Err(BadCidr(format!(
                    "{}: host bits are set; did you mean {} (the network) or {}/{max} (one host)?",
                    shown(arg),
                    net.trunc(),
                    addr
                )));
            }
            net
        }
    };
    if net.prefix_len() == 0 && !force {
        return Err(BadCidr(format!(
            "{net} admits every address on the Internet; add --force if that is really meant"
        )));
    }
    Ok(net)
}

fn not_numeric(arg: &str) -> BadCidr {
    BadCidr(format!(
        "{}: not a numeric IPv4/IPv6 address or CIDR (host names are not accepted); \
         example: 203.0.113.7/32",
        shown(arg)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_are_single_hosts() {
        assert_eq!(
            parse_cidr("203.0.113.7", false).unwrap().to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(
            parse_cidr("2001:db8::1", false).unwrap().to_string(),
            "2001:db8::1/128"
        );
    }

    #[test]
    fn host_bits_suggest_the_network() {
        let e = parse_cidr("203.0.113.7/24", false).unwrap_err();
        assert!(e.0.contains("203.0.113.0/24"), "{}", e.0);
    }

    #[test]
    fn everything_needs_force() {
        assert!(parse_cidr("0.0.0.0/0", false).is_err());
        assert!(parse_cidr("::/0", false).is_err());
        assert!(parse_cidr("0.0.0.0/0", true).is_ok());
    }

    #[test]
    fn hostile_input_is_refused() {
        for bad in [
            "example.com",
            "10.0.0.1/33",
            "10.0.0.1\nhost all all all trust",
            "\"10.0.0.1\"",
            "10.0.0.1 # x",
            "10.0.0.1/+8",
            "010.0.0.1",
            "10.0.0.1/",
            "/8",
            "1.2.3",
            "",
            "10.0.0.0/8,11.0.0.0/8",
        ] {
            assert!(parse_cidr(bad, true).is_err(), "{bad:?}");
        }
    }
}
