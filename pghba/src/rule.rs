//! The typed view of a record, and the server's checks on it
//! (`parse_hba_line()` and `parse_hba_auth_opt()` of hba.c), per version and
//! build.
//!
//! [`HbaRule`] is what a matcher builds on: connection type, database and
//! user tokens (keywords, `+group`, regex and literal names kept apart by
//! [`AuthToken`]), address ([`HbaAddress`]), method and options.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use crate::address;
use crate::parser::{lossy, Token};
use crate::version::ValidateOptions;

/// The first field of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionType {
    /// `local`: Unix-domain socket.
    Local,
    /// `host`: TCP, with or without SSL or GSSAPI encryption.
    Host,
    /// `hostssl`: TCP with SSL only.
    HostSsl,
    /// `hostnossl`: TCP without SSL only.
    HostNoSsl,
    /// `hostgssenc`: TCP with GSSAPI encryption only.
    HostGssEnc,
    /// `hostnogssenc`: TCP without GSSAPI encryption only.
    HostNoGssEnc,
}

impl ConnectionType {
    /// The keyword, as the view prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionType::Local => "local",
            ConnectionType::Host => "host",
            ConnectionType::HostSsl => "hostssl",
            ConnectionType::HostNoSsl => "hostnossl",
            ConnectionType::HostGssEnc => "hostgssenc",
            ConnectionType::HostNoGssEnc => "hostnogssenc",
        }
    }

    /// Parse a keyword (exact, case-sensitive, quoting ignored like the server).
    pub fn from_keyword(word: &[u8]) -> Option<Self> {
        Some(match word {
            b"local" => ConnectionType::Local,
            b"host" => ConnectionType::Host,
            b"hostssl" => ConnectionType::HostSsl,
            b"hostnossl" => ConnectionType::HostNoSsl,
            b"hostgssenc" => ConnectionType::HostGssEnc,
            b"hostnogssenc" => ConnectionType::HostNoGssEnc,
            _ => return None,
        })
    }
}

/// One token of the database or user field.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuthToken {
    /// The value, quotes removed.
    pub value: String,
    /// Whether it was quoted (then it is never a keyword nor `+group`).
    pub quoted: bool,
}

impl AuthToken {
    /// Is this the unquoted keyword `k` (`all`, `sameuser`, `samerole`,
    /// `samegroup`, `replication`)?
    pub fn is_keyword(&self, k: &str) -> bool {
        !self.quoted && self.value == k
    }

    /// `+role`: membership in the role named after the `+` (user field).
    pub fn member_of(&self) -> Option<&str> {
        if !self.quoted && self.value.starts_with('+') {
            Some(&self.value[1..])
        } else {
            None
        }
    }

    /// `/regex` (16+): the pattern after the slash (quoted tokens too, as
    /// the server does).
    pub fn regex(&self) -> Option<&str> {
        self.value.strip_prefix('/')
    }
}

/// The address field of a host record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HbaAddress {
    /// `all`: any address.
    All,
    /// `samehost`: any of the server's own addresses.
    SameHost,
    /// `samenet`: any address of the server's subnets.
    SameNet,
    /// A numeric address with its mask (from `/prefix` or the netmask
    /// column; masks need not be contiguous).
    Ip {
        /// The address as the server read it (`127.1` is `127.0.0.1`).
        addr: IpAddr,
        /// The mask.
        mask: IpAddr,
    },
    /// A host name, or a `.suffix` matching names that end with it.
    Hostname(String),
}

impl HbaAddress {
    /// Whether a client address falls in an [`HbaAddress::Ip`] range.
    pub fn contains_ip(&self, client: IpAddr) -> bool {
        match (self, client) {
            (
                HbaAddress::Ip {
                    addr: IpAddr::V4(a),
                    mask: IpAddr::V4(m),
                },
                IpAddr::V4(c),
            ) => u32::from(*a) & u32::from(*m) == u32::from(c) & u32::from(*m),
            (
                HbaAddress::Ip {
                    addr: IpAddr::V6(a),
                    mask: IpAddr::V6(m),
                },
                IpAddr::V6(c),
            ) => u128::from(*a) & u128::from(*m) == u128::from(c) & u128::from(*m),
            _ => false,
        }
    }
}

/// Authentication methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// `trust`
    Trust,
    /// `reject`
    Reject,
    /// `md5`
    Md5,
    /// `password`
    Password,
    /// `scram-sha-256`
    ScramSha256,
    /// `gss`
    Gss,
    /// `sspi`
    Sspi,
    /// `ident` (shown as `peer` on local records)
    Ident,
    /// `peer`
    Peer,
    /// `pam`
    Pam,
    /// `ldap`
    Ldap,
    /// `radius`
    Radius,
    /// `cert`
    Cert,
    /// `bsd`
    Bsd,
    /// `oauth` (18+)
    OAuth,
}

impl AuthMethod {
    /// The name, as the view prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Trust => "trust",
            AuthMethod::Reject => "reject",
            AuthMethod::Md5 => "md5",
            AuthMethod::Password => "password",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Gss => "gss",
            AuthMethod::Sspi => "sspi",
            AuthMethod::Ident => "ident",
            AuthMethod::Peer => "peer",
            AuthMethod::Pam => "pam",
            AuthMethod::Ldap => "ldap",
            AuthMethod::Radius => "radius",
            AuthMethod::Cert => "cert",
            AuthMethod::Bsd => "bsd",
            AuthMethod::OAuth => "oauth",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `clientcert` level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ClientCert {
    /// Not requested.
    #[default]
    Off,
    /// `verify-ca`
    VerifyCa,
    /// `verify-full` (implied by `cert`)
    VerifyFull,
}

/// `clientname` (14+).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ClientName {
    /// Match the certificate's CN (default).
    #[default]
    Cn,
    /// Match the full DN.
    Dn,
}

/// Options of a record, as the server stores them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct AuthOptions {
    pub map: Option<String>,
    pub clientcert: ClientCert,
    pub clientname: ClientName,
    pub pamservice: Option<String>,
    pub pam_use_hostname: bool,
    pub ldapserver: Option<String>,
    pub ldapport: i32,
    pub ldapscheme: Option<String>,
    pub ldaptls: bool,
    pub ldapprefix: Option<String>,
    pub ldapsuffix: Option<String>,
    pub ldapbasedn: Option<String>,
    pub ldapbinddn: Option<String>,
    pub ldapbindpasswd: Option<String>,
    pub ldapsearchattribute: Option<String>,
    pub ldapsearchfilter: Option<String>,
    pub ldapscope: i32,
    pub krb_realm: Option<String>,
    pub include_realm: bool,
    pub compat_realm: bool,
    pub upn_username: bool,
    pub radiusservers: Option<Vec<String>>,
    pub radiusservers_s: Option<String>,
    pub radiussecrets: Option<Vec<String>>,
    pub radiussecrets_s: Option<String>,
    pub radiusidentifiers: Option<Vec<String>>,
    pub radiusidentifiers_s: Option<String>,
    pub radiusports: Option<Vec<String>>,
    pub radiusports_s: Option<String>,
    pub oauth_issuer: Option<String>,
    pub oauth_scope: Option<String>,
    pub oauth_validator: Option<String>,
    pub oauth_skip_usermap: bool,
}

/// A record the server accepted, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HbaRule {
    /// Connection type.
    pub connection_type: ConnectionType,
    /// Database tokens (after `@file` expansion).
    pub databases: Vec<AuthToken>,
    /// User tokens (after `@file` expansion).
    pub users: Vec<AuthToken>,
    /// Address (`None` for local records).
    pub address: Option<HbaAddress>,
    /// Method (`ident` on local records already turned into `peer`).
    pub method: AuthMethod,
    /// Options.
    pub options: AuthOptions,
}

impl HbaRule {
    /// A rule to fill in place (see `parse_fields_into`).
    fn placeholder() -> HbaRule {
        HbaRule {
            connection_type: ConnectionType::Local,
            databases: Vec::new(),
            users: Vec::new(),
            address: None,
            method: AuthMethod::Reject,
            options: AuthOptions::default(),
        }
    }

    /// The `options` column of `pg_hba_file_rules` (`get_hba_options()`).
    pub fn view_options(&self) -> Vec<String> {
        let o = &self.options;
        let m = self.method;
        let mut out = Vec::new();
        if m == AuthMethod::Gss || m == AuthMethod::Sspi {
            if o.include_realm {
                out.push("include_realm=true".to_string());
            }
            if let Some(r) = &o.krb_realm {
                out.push(format!("krb_realm={r}"));
            }
        }
        if let Some(map) = &o.map {
            out.push(format!("map={map}"));
        }
        match o.clientcert {
            ClientCert::Off => {}
            ClientCert::VerifyCa => out.push("clientcert=verify-ca".into()),
            ClientCert::VerifyFull => out.push("clientcert=verify-full".into()),
        }
        if let Some(s) = &o.pamservice {
            out.push(format!("pamservice={s}"));
        }
        if m == AuthMethod::Ldap {
            let mut push = |k: &str, v: &Option<String>| {
                if let Some(v) = v {
                    out.push(format!("{k}={v}"));
                }
            };
            push("ldapserver", &o.ldapserver);
            if o.ldapport != 0 {
                out.push(format!("ldapport={}", o.ldapport));
            }
            let mut push = |k: &str, v: &Option<String>| {
                if let Some(v) = v {
                    out.push(format!("{k}={v}"));
                }
            };
            push("ldapscheme", &o.ldapscheme);
            if o.ldaptls {
                out.push("ldaptls=true".into());
            }
            let mut push = |k: &str, v: &Option<String>| {
                if let Some(v) = v {
                    out.push(format!("{k}={v}"));
                }
            };
            push("ldapprefix", &o.ldapprefix);
            push("ldapsuffix", &o.ldapsuffix);
            push("ldapbasedn", &o.ldapbasedn);
            push("ldapbinddn", &o.ldapbinddn);
            push("ldapbindpasswd", &o.ldapbindpasswd);
            push("ldapsearchattribute", &o.ldapsearchattribute);
            push("ldapsearchfilter", &o.ldapsearchfilter);
            if o.ldapscope != 0 {
                out.push(format!("ldapscope={}", o.ldapscope));
            }
        }
        if m == AuthMethod::Radius {
            for (k, v) in [
                ("radiusservers", &o.radiusservers_s),
                ("radiussecrets", &o.radiussecrets_s),
                ("radiusidentifiers", &o.radiusidentifiers_s),
                ("radiusports", &o.radiusports_s),
            ] {
                if let Some(v) = v {
                    out.push(format!("{k}={v}"));
                }
            }
        }
        if m == AuthMethod::OAuth {
            for (k, v) in [
                ("issuer", &o.oauth_issuer),
                ("scope", &o.oauth_scope),
                ("validator", &o.oauth_validator),
            ] {
                if let Some(v) = v {
                    out.push(format!("{k}={v}"));
                }
            }
            if o.oauth_skip_usermap {
                out.push("delegate_ident_mapping=true".into());
            }
        }
        out
    }

    /// The `address` and `netmask` columns of `pg_hba_file_rules`.
    pub fn view_address(&self) -> (Option<String>, Option<String>) {
        match &self.address {
            None => (None, None),
            Some(HbaAddress::All) => (Some("all".into()), None),
            Some(HbaAddress::SameHost) => (Some("samehost".into()), None),
            Some(HbaAddress::SameNet) => (Some("samenet".into()), None),
            Some(HbaAddress::Hostname(h)) => (Some(h.clone()), None),
            Some(HbaAddress::Ip { addr, mask }) => (
                Some(address::format_ip(addr)),
                Some(address::format_ip(mask)),
            ),
        }
    }
}

/// One token handed to [`parse_hba_line`]: a value, whether it was quoted,
/// and where to point at for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputToken<'a> {
    /// Value with quotes removed.
    pub value: Cow<'a, [u8]>,
    /// Quoted before the first character.
    pub quoted: bool,
    /// Offset in the line content of the token (or of the `@file` token it
    /// was read through).
    pub offset: usize,
}

impl InputToken<'_> {
    /// `@file`: an unquoted value starting with `@` followed by something.
    pub fn is_file_reference(&self) -> bool {
        !self.quoted && self.value.len() > 1 && self.value[0] == b'@'
    }
}

impl<'a> From<Token<'a>> for InputToken<'a> {
    fn from(t: Token<'a>) -> Self {
        InputToken {
            value: t.value,
            quoted: t.quoted,
            offset: t.start,
        }
    }
}

/// What the server concluded about one tokenized line.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LineVerdict {
    /// The typed rule when the server keeps the line (it may still carry a
    /// warning in `error`, e.g. `hostgssenc` without GSSAPI).
    pub rule: Option<HbaRule>,
    /// The `error` column of `pg_hba_file_rules`.
    pub error: Option<String>,
    /// The first message the server logs for the line (same as `error` in
    /// most cases; some bad option values are only logged) and the content
    /// offset it is about.
    pub message: Option<(String, usize)>,
}

impl LineVerdict {
    /// Whether the server keeps this line when loading the file.
    pub fn loads(&self) -> bool {
        self.rule.is_some()
    }
}

struct Ctx<'o> {
    opts: &'o ValidateOptions,
    err_msg: Option<String>,
    message: Option<(String, usize)>,
}

impl Ctx<'_> {
    /// ereport + *err_msg = ...
    fn error(&mut self, msg: String, at: usize) {
        if self.message.is_none() {
            self.message = Some((msg.clone(), at));
        }
        self.err_msg = Some(msg);
    }

    /// ereport without *err_msg.
    fn log(&mut self, msg: String, at: usize) {
        if self.message.is_none() {
            self.message = Some((msg, at));
        }
    }

    /// ereport + *err_msg = ..., and the line is not kept.
    fn fail(&mut self, msg: String, at: usize) -> bool {
        self.error(msg, at);
        false
    }
}

fn s(v: &[u8]) -> String {
    let mut text = String::new();
    set_text(&mut text, v);
    text
}

/// A new name buffer for a rule filled in place: room for the usual name,
/// so that the lines after it rarely grow it.
fn name_buffer(v: &[u8]) -> String {
    let mut text = String::with_capacity(v.len().max(32));
    set_text(&mut text, v);
    text
}

/// Replace the text of `dst` by `v`, lossily decoded, in `dst`'s buffer.
fn set_text(dst: &mut String, v: &[u8]) {
    dst.clear();
    // `from_utf8` is much faster than `from_utf8_lossy` on the usual
    // (valid) text, and gives the same string; ASCII is faster still.
    if v.is_ascii() {
        // SAFETY: ASCII is valid UTF-8 (checking it is the common case,
        // and much cheaper than a full UTF-8 validation of a short name).
        dst.push_str(unsafe { std::str::from_utf8_unchecked(v) });
        return;
    }
    match std::str::from_utf8(v) {
        Ok(text) => dst.push_str(text),
        Err(_) => dst.push_str(&lossy(v)),
    }
}

/// `parse_hba_line()`: check one tokenized record line (fields of tokens,
/// `@file` already expanded) the way the given server would.
pub fn parse_hba_line(fields: &[Vec<InputToken<'_>>], opts: &ValidateOptions) -> LineVerdict {
    parse_fields(fields, opts)
}

/// The fields of one tokenized line, however they are stored.
pub(crate) trait Fields {
    /// Number of fields.
    fn count(&self) -> usize;
    /// Field `i` (never empty), if there is one.
    fn get(&self, i: usize) -> Option<&[InputToken<'_>]>;
}

impl Fields for [Vec<InputToken<'_>>] {
    fn count(&self) -> usize {
        self.len()
    }
    fn get(&self, i: usize) -> Option<&[InputToken<'_>]> {
        <[_]>::get(self, i).map(Vec::as_slice)
    }
}

/// Fields stored flat: all tokens one after the other, and the index just
/// past each field's last token (as [`crate::parser::tokenize_into`] makes them).
pub(crate) struct FlatFields<'t, 'a> {
    /// The tokens of every field.
    pub tokens: &'t [InputToken<'a>],
    /// End index in `tokens` of each field.
    pub ends: &'t [usize],
}

impl Fields for FlatFields<'_, '_> {
    fn count(&self) -> usize {
        self.ends.len()
    }
    fn get(&self, i: usize) -> Option<&[InputToken<'_>]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.tokens[start..end])
    }
}

/// [`parse_hba_line`] on any [`Fields`].
pub(crate) fn parse_fields<F: Fields + ?Sized>(fields: &F, opts: &ValidateOptions) -> LineVerdict {
    let mut verdict = LineVerdict::default();
    parse_fields_into(fields, opts, &mut verdict, &mut false);
    verdict
}

/// [`parse_fields`] into `out`, reusing the storage of the rule it holds
/// (the names, the host name): checking a file line after line allocates
/// nothing once the buffers have grown. `options_dirty` tells whether the
/// options of that rule may differ from the defaults (the caller keeps it
/// with `out`, false for a new one): resetting the big options struct of
/// every line costs more than the rest of a common line's checks.
pub(crate) fn parse_fields_into<F: Fields + ?Sized>(
    fields: &F,
    opts: &ValidateOptions,
    out: &mut LineVerdict,
    options_dirty: &mut bool,
) {
    let mut cx = Ctx {
        opts,
        err_msg: None,
        message: None,
    };
    let rule = out.rule.get_or_insert_with(HbaRule::placeholder);
    let keep = fill_rule(fields, &mut cx, rule, options_dirty);
    if !keep {
        out.rule = None;
    }
    out.error = cx.err_msg;
    out.message = cx.message;
}

/// The body of `parse_hba_line()`: fills `rule` in place and tells whether
/// the server keeps the line (the messages are in `cx`).
fn fill_rule<F: Fields + ?Sized>(
    fields: &F,
    cx: &mut Ctx<'_>,
    rule: &mut HbaRule,
    options_dirty: &mut bool,
) -> bool {
    let opts = cx.opts;
    let build = opts.build;
    let v = opts.version;
    let mut fi = 0;

    // connection type
    let first = fields.get(0).expect("a record line has a field");
    if first.len() > 1 {
        return cx.fail(
            "multiple values specified for connection type".into(),
            first[0].offset,
        );
    }
    let tok = &first[0];
    let Some(conn) = ConnectionType::from_keyword(&tok.value) else {
        return cx.fail(
            format!("invalid connection type \"{}\"", lossy(&tok.value)),
            tok.offset,
        );
    };
    match conn {
        ConnectionType::HostSsl => {
            if !build.ssl {
                cx.error(
                    "hostssl record cannot match because SSL is not supported by this build".into(),
                    tok.offset,
                );
            } else if !opts.ssl_enabled {
                cx.error(
                    "hostssl record cannot match because SSL is disabled".into(),
                    tok.offset,
                );
            }
        }
        ConnectionType::HostGssEnc if !build.gssapi => cx.error(
            "hostgssenc record cannot match because GSSAPI is not supported by this build".into(),
            tok.offset,
        ),
        _ => {}
    }
    let line_end = fields
        .count()
        .checked_sub(1)
        .and_then(|i| fields.get(i))
        .and_then(|f| f.last())
        .map(|t| t.offset)
        .unwrap_or(0);

    rule.connection_type = conn;

    // databases and roles
    for (k, what) in ["database", "role"].iter().enumerate() {
        fi += 1;
        let Some(field) = fields.get(fi) else {
            return cx.fail(format!("end-of-line before {what} specification"), line_end);
        };
        let list = if k == 0 {
            &mut rule.databases
        } else {
            &mut rule.users
        };
        list.truncate(field.len());
        for (i, t) in field.iter().enumerate() {
            if v.has_regex() && t.value.first() == Some(&b'/') {
                if let Some(e) = crate::regex_check::regex_error(&t.value[1..]) {
                    return cx.fail(
                        format!(
                            "invalid regular expression \"{}\": {e}",
                            lossy(&t.value[1..])
                        ),
                        t.offset,
                    );
                }
            }
            match list.get_mut(i) {
                Some(slot) => {
                    set_text(&mut slot.value, &t.value);
                    slot.quoted = t.quoted;
                }
                None => list.push(AuthToken {
                    value: name_buffer(&t.value),
                    quoted: t.quoted,
                }),
            }
        }
    }

    // address
    let mut address = None;
    if conn != ConnectionType::Local {
        fi += 1;
        let Some(field) = fields.get(fi) else {
            return cx.fail(
                "end-of-line before IP address specification".into(),
                line_end,
            );
        };
        if field.len() > 1 {
            return cx.fail(
                "multiple values specified for host address".into(),
                field[0].offset,
            );
        }
        let t = &field[0];
        let kw = |k: &str| !t.quoted && &*t.value == k.as_bytes();
        if kw("all") {
            address = Some(HbaAddress::All);
        } else if kw("samehost") {
            address = Some(HbaAddress::SameHost);
        } else if kw("samenet") {
            address = Some(HbaAddress::SameNet);
        } else {
            let value: &[u8] = &t.value;
            let (host, prefix) = match value.iter().position(|&c| c == b'/') {
                Some(i) => (&value[..i], Some(&value[i + 1..])),
                None => (value, None),
            };
            match address::parse_numeric_host_in(host, &cx.opts.interfaces) {
                None => {
                    if prefix.is_some() {
                        return cx.fail(
                            format!(
                                "specifying both host name and CIDR mask is invalid: \"{}\"",
                                lossy(value)
                            ),
                            t.offset,
                        );
                    }
                    // the old rule's host name buffer, if it had one
                    let mut name = match rule.address.take() {
                        Some(HbaAddress::Hostname(old)) => old,
                        _ => String::with_capacity(host.len().max(32)),
                    };
                    set_text(&mut name, host);
                    address = Some(HbaAddress::Hostname(name));
                }
                Some(addr) => {
                    let mask = if let Some(bits) = prefix {
                        match address::cidr_mask(bits, addr.is_ipv6()) {
                            Some(m) => m,
                            None => {
                                return cx.fail(
                                    format!("invalid CIDR mask in address \"{}\"", lossy(value)),
                                    t.offset,
                                )
                            }
                        }
                    } else {
                        fi += 1;
                        let Some(mfield) = fields.get(fi) else {
                            return cx
                                .fail("end-of-line before netmask specification".into(), line_end);
                        };
                        if mfield.len() > 1 {
                            return cx.fail(
                                "multiple values specified for netmask".into(),
                                mfield[0].offset,
                            );
                        }
                        let mt = &mfield[0];
                        let Some(mask) =
                            address::parse_numeric_host_in(&mt.value, &cx.opts.interfaces)
                        else {
                            return cx.fail(
                                format!(
                                    "invalid IP mask \"{}\": Name or service not known",
                                    lossy(&mt.value)
                                ),
                                mt.offset,
                            );
                        };
                        if mask.is_ipv6() != addr.is_ipv6() {
                            return cx.fail("IP address and mask do not match".into(), mt.offset);
                        }
                        mask
                    };
                    address = Some(HbaAddress::Ip { addr, mask });
                }
            }
        }
    }

    // method
    fi += 1;
    let Some(field) = fields.get(fi) else {
        return cx.fail("end-of-line before authentication method".into(), line_end);
    };
    if field.len() > 1 {
        return cx.fail(
            "multiple values specified for authentication type".into(),
            field[0].offset,
        );
    }
    let t = &field[0];
    let (method, supported) = match &*t.value {
        b"trust" => (AuthMethod::Trust, true),
        b"ident" => (AuthMethod::Ident, true),
        b"peer" => (AuthMethod::Peer, true),
        b"password" => (AuthMethod::Password, true),
        b"gss" => (AuthMethod::Gss, build.gssapi),
        b"sspi" => (AuthMethod::Sspi, false),
        b"reject" => (AuthMethod::Reject, true),
        b"md5" => (AuthMethod::Md5, true),
        b"scram-sha-256" => (AuthMethod::ScramSha256, true),
        b"pam" => (AuthMethod::Pam, build.pam),
        b"bsd" => (AuthMethod::Bsd, false),
        b"ldap" => (AuthMethod::Ldap, build.ldap),
        b"cert" => (AuthMethod::Cert, build.ssl),
        b"radius" => (AuthMethod::Radius, true),
        b"oauth" if v.has_oauth() => (AuthMethod::OAuth, true),
        other => {
            return cx.fail(
                format!("invalid authentication method \"{}\"", lossy(other)),
                t.offset,
            )
        }
    };
    if !supported {
        return cx.fail(
            format!(
                "invalid authentication method \"{}\": not supported by this build",
                lossy(&t.value)
            ),
            t.offset,
        );
    }
    let method = if conn == ConnectionType::Local && method == AuthMethod::Ident {
        AuthMethod::Peer
    } else {
        method
    };
    if conn == ConnectionType::Local && method == AuthMethod::Gss {
        return cx.fail(
            "gssapi authentication is not supported on local sockets".into(),
            t.offset,
        );
    }
    if conn != ConnectionType::Local && method == AuthMethod::Peer {
        return cx.fail(
            "peer authentication is only supported on local sockets".into(),
            t.offset,
        );
    }
    if conn != ConnectionType::HostSsl && method == AuthMethod::Cert {
        return cx.fail(
            "cert authentication is only supported on hostssl connections".into(),
            t.offset,
        );
    }

    rule.address = address;
    rule.method = method;
    if *options_dirty {
        rule.options = AuthOptions::default();
    }
    // what follows sets options: the method's defaults, the option fields
    *options_dirty = matches!(
        method,
        AuthMethod::Gss | AuthMethod::Sspi | AuthMethod::Cert | AuthMethod::OAuth
    ) || fi + 1 < fields.count();
    if method == AuthMethod::Gss || method == AuthMethod::Sspi {
        rule.options.include_realm = true;
    }
    if method == AuthMethod::Sspi {
        rule.options.compat_realm = true;
    }

    // options
    for field in (fi + 1..fields.count()).filter_map(|i| fields.get(i)) {
        for t in field {
            let value: &[u8] = &t.value;
            let Some(eq) = value.iter().position(|&c| c == b'=') else {
                return cx.fail(
                    format!(
                        "authentication option not in name=value format: {}",
                        lossy(value)
                    ),
                    t.offset,
                );
            };
            if !parse_option(cx, rule, &value[..eq], &value[eq + 1..], t.offset) {
                return false;
            }
        }
    }

    // mandatory arguments and consistency
    let o = &rule.options;
    if method == AuthMethod::Ldap {
        if o.ldapprefix.is_some() || o.ldapsuffix.is_some() {
            if o.ldapbasedn.is_some()
                || o.ldapbinddn.is_some()
                || o.ldapbindpasswd.is_some()
                || o.ldapsearchattribute.is_some()
                || o.ldapsearchfilter.is_some()
            {
                let msg = if v.major() >= 18 {
                    "cannot mix options for simple bind and search+bind modes"
                } else {
                    "cannot use ldapbasedn, ldapbinddn, ldapbindpasswd, ldapsearchattribute, ldapsearchfilter, or ldapurl together with ldapprefix"
                };
                return cx.fail(msg.into(), t.offset);
            }
        } else if o.ldapbasedn.is_none() {
            return cx.fail(
                "authentication method \"ldap\" requires argument \"ldapbasedn\", \"ldapprefix\", or \"ldapsuffix\" to be set".into(),
                t.offset,
            );
        }
        if o.ldapsearchattribute.is_some() && o.ldapsearchfilter.is_some() {
            return cx.fail(
                "cannot use ldapsearchattribute together with ldapsearchfilter".into(),
                t.offset,
            );
        }
    }
    if method == AuthMethod::Radius {
        let servers = match &o.radiusservers {
            Some(l) if !l.is_empty() => l.len(),
            _ => return cx.fail(
                "authentication method \"radius\" requires argument \"radiusservers\" to be set"
                    .into(),
                t.offset,
            ),
        };
        let secrets = match &o.radiussecrets {
            Some(l) if !l.is_empty() => l.len(),
            _ => return cx.fail(
                "authentication method \"radius\" requires argument \"radiussecrets\" to be set"
                    .into(),
                t.offset,
            ),
        };
        if !(secrets == 1 || secrets == servers) {
            return cx.fail(
                format!("the number of RADIUS secrets ({secrets}) must be 1 or the same as the number of RADIUS servers ({servers})"),
                t.offset,
            );
        }
        let ports = o.radiusports.as_ref().map_or(0, Vec::len);
        if !(ports == 0 || ports == 1 || ports == servers) {
            return cx.fail(
                format!("the number of RADIUS ports ({ports}) must be 1 or the same as the number of RADIUS servers ({servers})"),
                t.offset,
            );
        }
        let ids = o.radiusidentifiers.as_ref().map_or(0, Vec::len);
        if !(ids == 0 || ids == 1 || ids == servers) {
            return cx.fail(
                format!("the number of RADIUS identifiers ({ids}) must be 1 or the same as the number of RADIUS servers ({servers})"),
                t.offset,
            );
        }
    }
    if method == AuthMethod::Cert {
        rule.options.clientcert = ClientCert::VerifyFull;
    }
    if method == AuthMethod::OAuth {
        if rule.options.oauth_scope.is_none() {
            return cx.fail(
                "authentication method \"oauth\" requires argument \"scope\" to be set".into(),
                t.offset,
            );
        }
        if rule.options.oauth_issuer.is_none() {
            return cx.fail(
                "authentication method \"oauth\" requires argument \"issuer\" to be set".into(),
                t.offset,
            );
        }
        if !check_oauth_validator(cx, rule, t.offset) {
            return false;
        }
        if rule.options.oauth_skip_usermap && rule.options.map.is_some() {
            return cx.fail(
                "map cannot be used in combination with delegate_ident_mapping".into(),
                t.offset,
            );
        }
    }
    true
}

fn check_oauth_validator(cx: &mut Ctx<'_>, rule: &mut HbaRule, at: usize) -> bool {
    cx.err_msg = None;
    let libs = &cx.opts.oauth_validator_libraries;
    if libs.is_empty() {
        cx.error(
            "oauth_validator_libraries must be set for authentication method oauth".into(),
            at,
        );
        return false;
    }
    match &rule.options.oauth_validator {
        None => {
            if libs.len() == 1 {
                rule.options.oauth_validator = Some(libs[0].clone());
                return true;
            }
            cx.error("authentication method \"oauth\" requires argument \"validator\" to be set when oauth_validator_libraries contains multiple options".into(), at);
            false
        }
        Some(v) => {
            if libs.iter().any(|l| l == v) {
                return true;
            }
            cx.error(
                format!("validator \"{v}\" is not permitted by oauth_validator_libraries"),
                at,
            );
            false
        }
    }
}

/// `SplitGUCList()`: a comma list with optional double-quoted items.
pub(crate) fn split_guc_list(val: &[u8]) -> Option<Vec<String>> {
    let isspace = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\x0b');
    let mut out = Vec::new();
    let mut i = 0;
    while i < val.len() && isspace(val[i]) {
        i += 1;
    }
    if i == val.len() {
        return Some(out);
    }
    loop {
        let name = if val[i] == b'"' {
            let mut buf = Vec::new();
            i += 1;
            loop {
                if i >= val.len() {
                    return None;
                }
                if val[i] == b'"' {
                    if i + 1 < val.len() && val[i + 1] == b'"' {
                        buf.push(b'"');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                buf.push(val[i]);
                i += 1;
            }
            buf
        } else {
            let start = i;
            while i < val.len() && val[i] != b',' && !isspace(val[i]) {
                i += 1;
            }
            if start == i {
                return None;
            }
            val[start..i].to_vec()
        };
        while i < val.len() && isspace(val[i]) {
            i += 1;
        }
        out.push(s(&name));
        if i < val.len() && val[i] == b',' {
            i += 1;
            while i < val.len() && isspace(val[i]) {
                i += 1;
            }
            if i >= val.len() {
                // "a," : the next name is empty and unquoted
                return None;
            }
        } else if i >= val.len() {
            return Some(out);
        } else {
            return None;
        }
    }
}

/// C `atoi()`.
pub(crate) fn atoi(v: &[u8]) -> i32 {
    let mut i = 0;
    while i < v.len() && matches!(v[i], b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\x0b') {
        i += 1;
    }
    let mut neg = false;
    if i < v.len() && (v[i] == b'+' || v[i] == b'-') {
        neg = v[i] == b'-';
        i += 1;
    }
    let mut n: i64 = 0;
    while i < v.len() && v[i].is_ascii_digit() {
        n = (n * 10 + (v[i] - b'0') as i64).min(i64::from(u32::MAX) * 2);
        i += 1;
    }
    let n = if neg { -n } else { n };
    n as i32
}

/// Whether a RADIUS server name would resolve. Numeric addresses and
/// `localhost` do; other names are assumed to when they look like host
/// names (lint never does DNS lookups).
fn radius_server_resolves(name: &str) -> bool {
    if address::parse_numeric_host(name.as_bytes()).is_some() || name == "localhost" {
        return true;
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

fn parse_option(cx: &mut Ctx<'_>, rule: &mut HbaRule, name: &[u8], val: &[u8], at: usize) -> bool {
    let v = cx.opts.version;
    let m = rule.method;
    let o = &mut rule.options;
    // parse_hba_auth_opt() resets the LDAP scope on every option
    if cx.opts.build.ldap {
        o.ldapscope = 2;
    }
    let only = |cx: &mut Ctx<'_>, ok: bool, opt: &str, methods: &str| -> bool {
        if !ok {
            cx.error(
                format!("authentication option \"{opt}\" is only valid for authentication methods {methods}"),
                at,
            );
        }
        ok
    };
    let flag = |val: &[u8]| val == b"1";
    match name {
        b"map" => {
            let ok = matches!(
                m,
                AuthMethod::Ident
                    | AuthMethod::Peer
                    | AuthMethod::Gss
                    | AuthMethod::Sspi
                    | AuthMethod::Cert
            ) || (m == AuthMethod::OAuth);
            let methods = if v.has_oauth() {
                "ident, peer, gssapi, sspi, cert, and oauth"
            } else {
                "ident, peer, gssapi, sspi, and cert"
            };
            if !only(cx, ok, "map", methods) {
                return false;
            }
            o.map = Some(s(val));
        }
        b"clientcert" => {
            if rule.connection_type != ConnectionType::HostSsl {
                cx.error(
                    "clientcert can only be configured for \"hostssl\" rows".into(),
                    at,
                );
                return false;
            }
            if v.major() <= 13 {
                match val {
                    b"1" | b"verify-ca" => o.clientcert = ClientCert::VerifyCa,
                    b"verify-full" => o.clientcert = ClientCert::VerifyFull,
                    b"0" | b"no-verify" => {
                        if m == AuthMethod::Cert {
                            cx.error("clientcert cannot be set to \"no-verify\" when using \"cert\" authentication".into(), at);
                            return false;
                        }
                        o.clientcert = ClientCert::Off;
                    }
                    _ => {
                        cx.log(
                            format!("invalid value for clientcert: \"{}\"", lossy(val)),
                            at,
                        );
                        return false;
                    }
                }
            } else {
                match val {
                    b"verify-full" => o.clientcert = ClientCert::VerifyFull,
                    b"verify-ca" => {
                        if m == AuthMethod::Cert {
                            cx.error("clientcert can only be set to \"verify-full\" when using \"cert\" authentication".into(), at);
                            return false;
                        }
                        o.clientcert = ClientCert::VerifyCa;
                    }
                    _ => {
                        cx.log(
                            format!("invalid value for clientcert: \"{}\"", lossy(val)),
                            at,
                        );
                        return false;
                    }
                }
            }
        }
        b"clientname" if v.has_clientname() => {
            if rule.connection_type != ConnectionType::HostSsl {
                cx.error(
                    "clientname can only be configured for \"hostssl\" rows".into(),
                    at,
                );
                return false;
            }
            match val {
                b"CN" => o.clientname = ClientName::Cn,
                b"DN" => o.clientname = ClientName::Dn,
                _ => {
                    cx.log(
                        format!("invalid value for clientname: \"{}\"", lossy(val)),
                        at,
                    );
                    return false;
                }
            }
        }
        b"pamservice" => {
            if !only(cx, m == AuthMethod::Pam, "pamservice", "pam") {
                return false;
            }
            o.pamservice = Some(s(val));
        }
        b"pam_use_hostname" => {
            if !only(cx, m == AuthMethod::Pam, "pam_use_hostname", "pam") {
                return false;
            }
            o.pam_use_hostname = flag(val);
        }
        b"ldapurl" => {
            if !only(cx, m == AuthMethod::Ldap, "ldapurl", "ldap") {
                return false;
            }
            return parse_ldap_url(cx, o, val, at);
        }
        b"ldaptls"
        | b"ldapscheme"
        | b"ldapserver"
        | b"ldapport"
        | b"ldapbinddn"
        | b"ldapbindpasswd"
        | b"ldapsearchattribute"
        | b"ldapsearchfilter"
        | b"ldapbasedn"
        | b"ldapprefix"
        | b"ldapsuffix" => {
            if !only(cx, m == AuthMethod::Ldap, &s(name), "ldap") {
                return false;
            }
            let text = Some(s(val));
            match name {
                b"ldaptls" => o.ldaptls = flag(val),
                b"ldapscheme" => {
                    if val != b"ldap" && val != b"ldaps" {
                        cx.log(format!("invalid ldapscheme value: \"{}\"", lossy(val)), at);
                    }
                    o.ldapscheme = text;
                }
                b"ldapserver" => o.ldapserver = text,
                b"ldapport" => {
                    o.ldapport = atoi(val);
                    if o.ldapport == 0 {
                        cx.error(format!("invalid LDAP port number: \"{}\"", lossy(val)), at);
                        return false;
                    }
                }
                b"ldapbinddn" => o.ldapbinddn = text,
                b"ldapbindpasswd" => o.ldapbindpasswd = text,
                b"ldapsearchattribute" => o.ldapsearchattribute = text,
                b"ldapsearchfilter" => o.ldapsearchfilter = text,
                b"ldapbasedn" => o.ldapbasedn = text,
                b"ldapprefix" => o.ldapprefix = text,
                _ => o.ldapsuffix = text,
            }
        }
        b"krb_realm" => {
            if !only(
                cx,
                matches!(m, AuthMethod::Gss | AuthMethod::Sspi),
                "krb_realm",
                "gssapi and sspi",
            ) {
                return false;
            }
            o.krb_realm = Some(s(val));
        }
        b"include_realm" => {
            if !only(
                cx,
                matches!(m, AuthMethod::Gss | AuthMethod::Sspi),
                "include_realm",
                "gssapi and sspi",
            ) {
                return false;
            }
            o.include_realm = flag(val);
        }
        b"compat_realm" => {
            if !only(cx, m == AuthMethod::Sspi, "compat_realm", "sspi") {
                return false;
            }
            o.compat_realm = flag(val);
        }
        b"upn_username" => {
            if !only(cx, m == AuthMethod::Sspi, "upn_username", "sspi") {
                return false;
            }
            o.upn_username = flag(val);
        }
        b"radiusservers" => {
            if !only(cx, m == AuthMethod::Radius, "radiusservers", "radius") {
                return false;
            }
            let Some(list) = split_guc_list(val) else {
                cx.log(
                    format!("could not parse RADIUS server list \"{}\"", lossy(val)),
                    at,
                );
                return false;
            };
            for server in &list {
                if !radius_server_resolves(server) {
                    cx.log(
                        format!("could not translate RADIUS server name \"{server}\" to address: Name or service not known"),
                        at,
                    );
                    return false;
                }
            }
            o.radiusservers = Some(list);
            o.radiusservers_s = Some(s(val));
        }
        b"radiusports" => {
            if !only(cx, m == AuthMethod::Radius, "radiusports", "radius") {
                return false;
            }
            let Some(list) = split_guc_list(val) else {
                cx.log(
                    format!("could not parse RADIUS port list \"{}\"", lossy(val)),
                    at,
                );
                cx.err_msg = Some(format!("invalid RADIUS port number: \"{}\"", lossy(val)));
                return false;
            };
            if list.iter().any(|p| atoi(p.as_bytes()) == 0) {
                cx.log(
                    format!("invalid RADIUS port number: \"{}\"", lossy(val)),
                    at,
                );
                return false;
            }
            o.radiusports = Some(list);
            o.radiusports_s = Some(s(val));
        }
        b"radiussecrets" | b"radiusidentifiers" => {
            let opt = s(name);
            if !only(cx, m == AuthMethod::Radius, &opt, "radius") {
                return false;
            }
            let what = if name == b"radiussecrets" {
                "secret"
            } else {
                "identifiers"
            };
            let Some(list) = split_guc_list(val) else {
                cx.log(
                    format!("could not parse RADIUS {what} list \"{}\"", lossy(val)),
                    at,
                );
                return false;
            };
            if name == b"radiussecrets" {
                o.radiussecrets = Some(list);
                o.radiussecrets_s = Some(s(val));
            } else {
                o.radiusidentifiers = Some(list);
                o.radiusidentifiers_s = Some(s(val));
            }
        }
        b"issuer" | b"scope" | b"validator" | b"delegate_ident_mapping" if v.has_oauth() => {
            if !only(cx, m == AuthMethod::OAuth, &s(name), "oauth") {
                return false;
            }
            match name {
                b"issuer" => o.oauth_issuer = Some(s(val)),
                b"scope" => o.oauth_scope = Some(s(val)),
                b"validator" => o.oauth_validator = Some(s(val)),
                _ => o.oauth_skip_usermap = flag(val),
            }
        }
        _ => {
            cx.error(
                format!(
                    "unrecognized authentication option name: \"{}\"",
                    lossy(name)
                ),
                at,
            );
            return false;
        }
    }
    true
}

/// A small `ldap_url_parse()`: `ldap[s]://host[:port]/basedn?attr?scope?filter`.
fn parse_ldap_url(cx: &mut Ctx<'_>, o: &mut AuthOptions, val: &[u8], at: usize) -> bool {
    let text = s(val);
    let lower = text.to_ascii_lowercase();
    let Some((scheme, rest)) = ["ldaps://", "ldap://", "ldapi://", "cldap://"]
        .iter()
        .find(|p| lower.starts_with(*p))
        .map(|p| (&p[..p.len() - 3], &text[p.len()..]))
    else {
        cx.error(
            format!("could not parse LDAP URL \"{text}\": Time limit exceeded"),
            at,
        );
        return false;
    };
    if scheme != "ldap" && scheme != "ldaps" {
        cx.error(format!("unsupported LDAP URL scheme: {scheme}"), at);
        return false;
    }
    o.ldapscheme = Some(scheme.to_string());
    let (hostport, path) = match rest.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, atoi(p.as_bytes())),
        _ => (hostport, 0),
    };
    if !host.is_empty() {
        o.ldapserver = Some(host.to_string());
    }
    o.ldapport = port;
    o.ldapscope = 0;
    if let Some(path) = path {
        let mut parts = path.split('?');
        if let Some(dn) = parts.next() {
            if !dn.is_empty() {
                o.ldapbasedn = Some(dn.to_string());
            }
        }
        if let Some(attrs) = parts.next() {
            if let Some(first) = attrs.split(',').next().filter(|a| !a.is_empty()) {
                o.ldapsearchattribute = Some(first.to_string());
            }
        }
        if let Some(scope) = parts.next() {
            o.ldapscope = match scope.to_ascii_lowercase().as_str() {
                "one" | "onelevel" => 1,
                "sub" | "subtree" => 2,
                _ => 0,
            };
        }
        if let Some(filter) = parts.next() {
            if !filter.is_empty() {
                o.ldapsearchfilter = Some(filter.to_string());
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guc_lists() {
        assert_eq!(split_guc_list(b"a, b"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(
            split_guc_list(b"\"a,b\",c"),
            Some(vec!["a,b".into(), "c".into()])
        );
        assert_eq!(split_guc_list(b""), Some(vec![]));
        assert_eq!(split_guc_list(b"a,,b"), None);
        assert_eq!(split_guc_list(b"a,"), None);
        assert_eq!(split_guc_list(b"\"a"), None);
        assert_eq!(split_guc_list(b"a b"), None);
    }

    #[test]
    fn atoi_like_c() {
        assert_eq!(atoi(b"1812"), 1812);
        assert_eq!(atoi(b" 12x"), 12);
        assert_eq!(atoi(b"x"), 0);
        assert_eq!(atoi(b"-3"), -3);
    }
}
