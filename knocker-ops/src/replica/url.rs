//! `--print-url`: the connection string web nodes use, naming every node
//! so that libpq-style drivers find the primary after a failover.

use pgctl::conninfo::{ConnInfo, Keyword};

use super::block;
use super::target::{Admin, AppConn};
use super::Report;
use crate::Error;

/// Seconds a web node waits for each host before trying the next.
pub const CONNECT_TIMEOUT_S: u32 = 5;

/// The string for web nodes: the remote role with `PASSWORD` in place of
/// its password (knocker does not keep it), every host with its port,
/// `target_session_attrs=read-write` (a fenced old primary is read-only
/// without being in recovery, which `primary` would still accept),
/// `connect_timeout`, and `sslmode=require` when the server has SSL on.
pub fn web_url(role: &str, database: &str, hosts: &[String], port: u16, ssl: bool) -> String {
    let mut b = ConnInfo::builder()
        .user(role)
        .password("PASSWORD")
        .hosts(hosts.iter().cloned())
        .ports(hosts.iter().map(|_| port))
        .dbname(database)
        .set(Keyword::TargetSessionAttrs, "read-write")
        .connect_timeout(CONNECT_TIMEOUT_S);
    if ssl {
        b = b.sslmode(pgctl::connect::SslMode::Require);
    }
    b.build().to_uri()
}

pub(super) fn print_url(app: &AppConn, admin: &Admin, report: &mut Report) -> Result<(), Error> {
    let (_, text) = admin.read_hba()?;
    let version = admin.version()?;
    let mut hosts = Vec::new();
    match crate::network::advertise_candidates().0 {
        Some(a) => hosts.push(a.to_string()),
        None => {
            report
                .warnings
                .push("no network address found for this host: replace PRIMARY_HOST".into());
            hosts.push("PRIMARY_HOST".into());
        }
    }
    for a in block::allowed(&text, version)? {
        if a.cidr.prefix_len() == a.cidr.max_prefix_len() {
            let h = a.cidr.addr().to_string();
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        } else {
            report.warnings.push(format!(
                "standby {} is allowed from the network {}, not one address: add its host by hand",
                a.name, a.cidr
            ));
        }
    }
    if hosts.len() == 1 {
        report
            .warnings
            .push("no standby is allowed yet: the string names only this server".into());
    }
    let port = admin.facts.port;
    report.url = Some(web_url(
        &app.derived_role(crate::exposedb::REMOTE_ROLE_SUFFIX),
        &app.database,
        &hosts,
        port,
        admin.facts.ssl,
    ));
    let list: Vec<String> = hosts.iter().map(|h| format!("{h}:{port}")).collect();
    report.installer_command = Some(format!("knocknoc-installer --db-hosts {}", list.join(",")));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_url_names_every_host_and_wants_a_writable_one() {
        let url = web_url(
            "knocknoc_remote",
            "knocknoc",
            &["10.0.0.1".into(), "10.0.0.2".into()],
            5432,
            true,
        );
        assert_eq!(
            url,
            "postgresql://knocknoc_remote:PASSWORD@10.0.0.1:5432,10.0.0.2:5432/knocknoc?connect_timeout=5&sslmode=require&target_session_attrs=read-write"
        );
        let back = ConnInfo::parse(&url).unwrap();
        assert_eq!(back.get(Keyword::Host), Some("10.0.0.1,10.0.0.2"));
    }
}
