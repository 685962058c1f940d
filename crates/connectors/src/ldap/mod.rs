//! `LdapDirectory`: the identity store in an LDAP directory, OpenLDAP or Active Directory,
//! through `ldap3` (tokio; TLS by rustls: `ldaps://` or StartTLS, optionally trusting a
//! private CA file).
//!
//! Invariant: every operation runs as the configured service account on one shared,
//! reconnecting connection (a fresh connection only for a PIN check by bind), every value
//! from a caller is escaped (RFC 4515) before it enters a filter, every operation has a
//! deadline, and a lookup finds one entry or nothing: a value shared by several entries finds
//! nobody, so a claim can never pick the wrong person. No PIN, password or hash is logged or
//! put into an error.
//!
//! # What it does
//!
//! - **Find**: `(&<user_filter>(|(<attr>=<value>)...))` under `base_dn` (subtree), with the
//!   attributes listed for the lookup (`lookup.employee_id`, `.username`, `.phone`, `.email`).
//!   Phone values are matched as given: OpenLDAP's `telephoneNumber` and `mobile` use
//!   `telephoneNumberMatch`, which ignores spaces and hyphens; Active Directory compares the
//!   strings, so keep numbers there in E.164.
//! - **State**: OpenLDAP ppolicy `pwdAccountLockedTime` present = locked, the special value
//!   `000001010000Z` = administratively disabled. Active Directory: `userAccountControl`
//!   bit `ACCOUNTDISABLE` (0x2) = disabled, `lockoutTime` > 0 = locked. Disabled wins. A
//!   lock that has timed out (`pwdLockoutDuration`, AD's lockout duration) still reads as
//!   locked until the next successful logon clears it: such callers reach an agent, never a
//!   wrong reset. "Password never expires" (0x10000) and "must change at next logon"
//!   (`pwdLastSet` 0) leave the account active; the reset path reads them (`AdPassword`).
//! - **PIN check** (`pin.verify`, [`PinCheck`], see [`pin_check`]): by default
//!   `attributes.pin_hash` holds an Argon2id PHC string (written with `resetline hash-pin`),
//!   checked locally by the shared verifier (constant time, a dummy hash when there is none; a
//!   hash below the floor or above the ceiling is a backend error, never a check), so wrong
//!   PINs never touch the directory login. `pin_check: none` makes `pin.verify` take its
//!   error path. Only `pin_check: bind_counts_toward_directory_lockout` checks the PIN as the
//!   directory password by a simple bind as the user on a fresh connection, and then stops
//!   before the directory's lockout threshold. An empty PIN is always wrong (an empty simple
//!   bind would be an anonymous success).
//! - **Set**: refused without calling the server when the account is locked (`Locked`) or
//!   disabled (`not_allowed`). OpenLDAP: the Password Modify extended operation (RFC 3062)
//!   as the service account with the ppolicy request control, so the server's policy applies
//!   (never bind as the rootdn: it bypasses ppolicy). Active Directory: one modify replacing
//!   `unicodePwd` with the quoted UTF-16LE value (AD refuses it without TLS), and `pwdLastSet`
//!   with 0 when `must_change_at_next_logon` asks (not for a password that never expires: AD
//!   ignores it there, and the log says so; without it AD clears a pending "must change"),
//!   sent with the policy-hints control (a Windows DC then checks the history too). Refusals
//!   are mapped by [`refusal`] to `policy_too_short`, `policy_complexity`, `policy_reused`,
//!   `policy_too_recent` or `policy_rejected`, with the server's words kept as the reason.
//!
//! `ldap3` copies the new password into its own request buffer, which is not zeroed on drop.

pub mod pin_check;
pub mod refusal;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ldap3::controls::RawControl;
use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};
use resetline_engine::{Account, AccountState, BackendError, Secret, SetSecretError};
use resetline_flow::model::LookupBy;

pub use pin_check::{BIND_MODE, BindGuard, PinCheck};
pub use refusal::PROMPTS as REFUSAL_PROMPTS;

/// The backend name in [`BackendError`]s.
const BACKEND: &str = "directory";

/// `pwdAccountLockedTime` value OpenLDAP ppolicy reads as "disabled by an administrator".
const OPENLDAP_DISABLED: &str = "000001010000Z";

/// `userAccountControl` ACCOUNTDISABLE.
const AD_ACCOUNTDISABLE: u32 = 0x2;

/// `userAccountControl` DONT_EXPIRE_PASSWORD.
const AD_DONT_EXPIRE_PASSWORD: u32 = 0x10000;

/// Which server dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// OpenLDAP with the ppolicy overlay.
    OpenLdap,
    /// Microsoft Active Directory.
    ActiveDirectory,
}

impl Flavor {
    /// The config word (`openldap`, `active_directory`).
    pub fn name(self) -> &'static str {
        match self {
            Flavor::OpenLdap => "openldap",
            Flavor::ActiveDirectory => "active_directory",
        }
    }

    /// Parses the config word.
    pub fn parse(word: &str) -> Option<Flavor> {
        match word {
            "openldap" => Some(Flavor::OpenLdap),
            "active_directory" => Some(Flavor::ActiveDirectory),
            _ => None,
        }
    }

    /// The filter every user entry matches, by default.
    pub fn default_user_filter(self) -> &'static str {
        match self {
            Flavor::OpenLdap => "(objectClass=inetOrgPerson)",
            Flavor::ActiveDirectory => "(&(objectCategory=person)(objectClass=user))",
        }
    }
}

/// Which entry attribute fills which account field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// The account id the engine keys on (uid / sAMAccountName); unique.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Mobile number of record.
    pub mobile: String,
    /// Email of record.
    pub email: String,
    /// Birth date `YYYY-MM-DD`, when the directory has one.
    pub birth_date: Option<String>,
    /// Attribute holding an Argon2id PHC hash of the phone PIN (required by
    /// [`PinCheck::Hash`], the default).
    pub pin_hash: Option<String>,
}

impl Attributes {
    /// The defaults for `flavor`.
    pub fn defaults(flavor: Flavor) -> Attributes {
        match flavor {
            Flavor::OpenLdap => Attributes {
                id: "uid".into(),
                name: "cn".into(),
                mobile: "mobile".into(),
                email: "mail".into(),
                birth_date: None,
                pin_hash: None,
            },
            Flavor::ActiveDirectory => Attributes {
                id: "sAMAccountName".into(),
                name: "displayName".into(),
                mobile: "mobile".into(),
                email: "mail".into(),
                birth_date: None,
                pin_hash: None,
            },
        }
    }
}

/// Which attributes a lookup compares, per `directory.find` `by:` (any of them matching).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookups {
    /// `by: employee_id`.
    pub employee_id: Vec<String>,
    /// `by: username`.
    pub username: Vec<String>,
    /// `by: phone`.
    pub phone: Vec<String>,
    /// `by: email`.
    pub email: Vec<String>,
}

impl Lookups {
    /// The defaults for `flavor`.
    pub fn defaults(flavor: Flavor) -> Lookups {
        let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match flavor {
            Flavor::OpenLdap => Lookups {
                employee_id: v(&["employeeNumber"]),
                username: v(&["uid"]),
                phone: v(&["mobile", "telephoneNumber"]),
                email: v(&["mail"]),
            },
            Flavor::ActiveDirectory => Lookups {
                employee_id: v(&["employeeID"]),
                username: v(&["sAMAccountName", "userPrincipalName"]),
                phone: v(&["mobile", "telephoneNumber"]),
                email: v(&["mail"]),
            },
        }
    }

    fn get(&self, by: LookupBy) -> &[String] {
        match by {
            LookupBy::EmployeeId => &self.employee_id,
            LookupBy::Username => &self.username,
            LookupBy::Phone => &self.phone,
            LookupBy::Email => &self.email,
        }
    }
}

/// How to reach and read the directory.
#[derive(Clone, Debug)]
pub struct LdapConfig {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// The service account's DN.
    pub bind_dn: String,
    /// The service account's password.
    pub bind_password: Secret,
    /// Where users are searched (subtree).
    pub base_dn: String,
    /// Server dialect.
    pub flavor: Flavor,
    /// Upgrade `ldap://` with StartTLS.
    pub starttls: bool,
    /// PEM file of CA certificates to trust instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// Deadline of each operation (connect, bind, search, modify).
    pub timeout: Duration,
    /// Filter every user entry matches.
    pub user_filter: String,
    /// Attribute mapping.
    pub attributes: Attributes,
    /// Lookup attributes.
    pub lookup: Lookups,
    /// Global switch: false refuses phone resets for every account.
    pub allow_phone_reset: bool,
    /// How `pin.verify` checks a PIN.
    pub pin_check: PinCheck,
    /// Active Directory: a reset also sets "must change at next logon" (`pwdLastSet` 0).
    pub must_change_at_next_logon: bool,
}

impl LdapConfig {
    /// A configuration with the flavor's defaults for filter, attributes and lookups, a 3 s
    /// timeout, no TLS options, and PIN checks against a hash attribute (which
    /// `attributes.pin_hash` must then name).
    pub fn new(
        url: &str,
        bind_dn: &str,
        bind_password: Secret,
        base_dn: &str,
        flavor: Flavor,
    ) -> LdapConfig {
        LdapConfig {
            url: url.to_owned(),
            bind_dn: bind_dn.to_owned(),
            bind_password,
            base_dn: base_dn.to_owned(),
            flavor,
            starttls: false,
            ca_file: None,
            timeout: Duration::from_secs(3),
            user_filter: flavor.default_user_filter().to_owned(),
            attributes: Attributes::defaults(flavor),
            lookup: Lookups::defaults(flavor),
            allow_phone_reset: true,
            pin_check: PinCheck::Hash,
            must_change_at_next_logon: false,
        }
    }

    /// Every problem with this configuration, each naming its key (`directory.<key>`).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("", ""));
        let host = rest
            .split('/')
            .next()
            .unwrap_or("")
            .rsplit_once(':')
            .map_or(rest.split('/').next().unwrap_or(""), |(h, _)| h);
        match scheme {
            "ldaps" if self.starttls => problems.push(
                "`directory.starttls`: an ldaps:// URL is already encrypted; drop `starttls` or use ldap://".into(),
            ),
            "ldaps" => {}
            "ldap" if !self.starttls && !is_loopback(host) => problems.push(format!(
                "`directory.url`: `{}` would send passwords unencrypted; use ldaps:// or `starttls: true` (plain ldap:// is only for 127.0.0.1 / localhost)",
                self.url
            )),
            "ldap" => {}
            _ => problems.push(format!(
                "`directory.url`: `{}` must be ldap://host[:port] or ldaps://host[:port]",
                self.url
            )),
        }
        if host.is_empty() && !scheme.is_empty() {
            problems.push(format!("`directory.url`: `{}` names no host", self.url));
        }
        for (key, dn) in [("bind_dn", &self.bind_dn), ("base_dn", &self.base_dn)] {
            if !dn.contains('=') {
                problems.push(format!(
                    "`directory.{key}`: `{dn}` is not a DN such as cn=resetline,ou=services,dc=example,dc=com"
                ));
            }
        }
        if let Some(ca) = &self.ca_file
            && !ca.is_file()
        {
            problems.push(format!(
                "`directory.ca_file`: {} is not a file",
                ca.display()
            ));
        }
        if !(100..=10_000).contains(&self.timeout.as_millis()) {
            problems.push(format!(
                "`directory.timeout_ms`: {} must be between 100 and 10000",
                self.timeout.as_millis()
            ));
        }
        if ldap3::parse_filter(&self.user_filter).is_err() {
            problems.push(format!(
                "`directory.user_filter`: `{}` is not an LDAP filter such as (objectClass=inetOrgPerson)",
                self.user_filter
            ));
        }
        let a = &self.attributes;
        let mut named: Vec<(String, &str)> = vec![
            ("attributes.id".into(), &a.id),
            ("attributes.name".into(), &a.name),
            ("attributes.mobile".into(), &a.mobile),
            ("attributes.email".into(), &a.email),
        ];
        if let Some(b) = &a.birth_date {
            named.push(("attributes.birth_date".into(), b));
        }
        if let Some(p) = &a.pin_hash {
            named.push(("attributes.pin_hash".into(), p));
        }
        for (key, list) in [
            ("employee_id", &self.lookup.employee_id),
            ("username", &self.lookup.username),
            ("phone", &self.lookup.phone),
            ("email", &self.lookup.email),
        ] {
            if list.is_empty() {
                problems.push(format!(
                    "`directory.lookup.{key}`: list at least one attribute"
                ));
            }
            for (i, attr) in list.iter().enumerate() {
                named.push((format!("lookup.{key}[{i}]"), attr));
            }
        }
        for (key, attr) in named {
            if !is_attribute_name(attr) {
                problems.push(format!(
                    "`directory.{key}`: `{attr}` is not an attribute name (letters, digits, `-`, starting with a letter)"
                ));
            }
        }
        if self.must_change_at_next_logon && self.flavor != Flavor::ActiveDirectory {
            problems.push("`directory.must_change_at_next_logon` is for `flavor: active_directory` (it writes pwdLastSet 0); OpenLDAP marks a reset with its policy's pwdMustChange".into());
        }
        problems.extend(self.pin_check_problems());
        problems
    }

    /// `pin_check` and `attributes.pin_hash` agree, and bind mode can find its threshold.
    fn pin_check_problems(&self) -> Vec<String> {
        match (&self.pin_check, &self.attributes.pin_hash) {
            (PinCheck::Hash, None) => vec![format!(
                "`directory.attributes.pin_hash`: name the attribute that holds each user's Argon2id PIN hash (written with `resetline hash-pin`), or set `directory.pin_check: none` if no flow checks PINs. Checking a PIN by binding as the user counts every wrong PIN toward the directory's own lockout; it needs `pin_check: {BIND_MODE}`"
            )],
            (PinCheck::Hash, Some(_)) => Vec::new(),
            (other, Some(_)) => vec![format!(
                "`directory.attributes.pin_hash` is not read with `pin_check: {}`; drop one of them",
                other.name()
            )],
            (PinCheck::Off, None) => Vec::new(),
            (PinCheck::BindCountsTowardDirectoryLockout(guard), None) => guard.problems(),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An attribute description as RFC 4512 `descr` (what can go into a filter unescaped).
fn is_attribute_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Why an [`LdapDirectory`] could not be built.
#[derive(Debug)]
pub enum LdapConfigError {
    /// The configuration has problems (see [`LdapConfig::problems`]).
    Invalid(Vec<String>),
    /// The CA file could not be read or holds no certificate.
    CaFile(String),
}

impl fmt::Display for LdapConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LdapConfigError::Invalid(p) => write!(f, "{}", p.join("; ")),
            LdapConfigError::CaFile(m) => write!(f, "`directory.ca_file`: {m}"),
        }
    }
}

impl std::error::Error for LdapConfigError {}

/// A directory in LDAP. See the module docs.
pub struct LdapDirectory {
    cfg: Arc<LdapConfig>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The bound service connection, reused by every operation until it closes.
    shared: tokio::sync::Mutex<Option<Ldap>>,
    /// Failed PIN binds per account (bind mode only).
    tallies: pin_check::Tallies,
}

impl fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapDirectory")
            .field("url", &self.cfg.url)
            .field("bind_dn", &self.cfg.bind_dn)
            .field("base_dn", &self.cfg.base_dn)
            .field("flavor", &self.cfg.flavor)
            .finish_non_exhaustive()
    }
}

/// What a search for one entry found.
enum Found {
    None,
    One(Box<SearchEntry>),
    Many,
}

fn transport(e: &LdapError) -> BackendError {
    BackendError::new(BACKEND, format!("LDAP: {e}"))
}

/// `(&<user_filter>(|(<a1>=<value>)(<a2>=<value>)...))` with `value` escaped per RFC 4515
/// (`*`, `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`), so a caller's
/// input is always one literal value. Attribute names were checked when the config loaded.
fn filter(user_filter: &str, attrs: &[String], value: &str) -> String {
    let escaped = ldap3::ldap_escape(value);
    let any: String = attrs.iter().map(|a| format!("({a}={escaped})")).collect();
    format!("(&{user_filter}(|{any}))")
}

/// The first value of `name` (attribute names compare case-insensitively).
fn first(entry: &SearchEntry, name: &str) -> Option<String> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first().cloned())
}

impl LdapDirectory {
    /// Checks `cfg` and prepares TLS. Connects lazily, on the first operation.
    pub fn new(cfg: LdapConfig) -> Result<LdapDirectory, LdapConfigError> {
        let problems = cfg.problems();
        if !problems.is_empty() {
            return Err(LdapConfigError::Invalid(problems));
        }
        let tls = match &cfg.ca_file {
            None => None,
            Some(path) => Some(Arc::new(client_config(path)?)),
        };
        Ok(LdapDirectory {
            cfg: Arc::new(cfg),
            tls,
            shared: tokio::sync::Mutex::new(None),
            tallies: pin_check::Tallies::default(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &LdapConfig {
        &self.cfg
    }

    /// Runs `fut` within the operation deadline.
    async fn within<T>(
        &self,
        fut: impl Future<Output = Result<T, LdapError>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(self.cfg.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(transport(&e)),
            Err(_) => Err(BackendError::timeout(BACKEND)),
        }
    }

    /// A new connection (not bound), its driver running on the runtime.
    async fn connect(&self) -> Result<Ldap, BackendError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.timeout)
            .set_starttls(self.cfg.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(Arc::clone(tls));
        }
        let (conn, ldap) = self
            .within(LdapConnAsync::with_settings(settings, &self.cfg.url))
            .await?;
        tokio::spawn(async move {
            if let Err(error) = conn.drive().await {
                tracing::debug!(%error, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// The shared service connection, connecting and binding when there is none or it closed.
    async fn service(&self) -> Result<Ldap, BackendError> {
        let mut shared = self.shared.lock().await;
        if let Some(ldap) = shared.as_mut()
            && !ldap.is_closed()
        {
            return Ok(ldap.clone());
        }
        *shared = None;
        let mut ldap = self.connect().await?;
        let res = self
            .within(ldap.simple_bind(&self.cfg.bind_dn, self.cfg.bind_password.expose()))
            .await?;
        if res.rc != 0 {
            close(ldap).await;
            return Err(BackendError::new(
                BACKEND,
                format!(
                    "the service account `{}` could not bind: {} (LDAP result {})",
                    self.cfg.bind_dn, res.text, res.rc
                ),
            ));
        }
        tracing::debug!(url = %self.cfg.url, "LDAP service connection bound");
        *shared = Some(ldap.clone());
        Ok(ldap)
    }

    /// Forgets the shared connection after a transport failure or a timeout.
    async fn drop_shared(&self) {
        let old = self.shared.lock().await.take();
        if let Some(ldap) = old {
            close(ldap).await;
        }
    }

    /// Searches for the one user entry matching any of `attrs` = `value`, reading `wanted`.
    /// A stale shared connection is replaced and the search tried once more.
    async fn search(
        &self,
        attrs: &[String],
        value: &str,
        wanted: &[&str],
    ) -> Result<Found, BackendError> {
        let filter = filter(&self.cfg.user_filter, attrs, value);
        let mut retried = false;
        loop {
            let mut ldap = self.service().await?;
            let result = self
                .within(
                    ldap.with_search_options(ldap3::SearchOptions::new().sizelimit(2))
                        .with_timeout(self.cfg.timeout)
                        .search(&self.cfg.base_dn, Scope::Subtree, &filter, wanted.to_vec()),
                )
                .await;
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    self.drop_shared().await;
                    if retried || e.timeout {
                        return Err(e);
                    }
                    retried = true;
                    continue;
                }
            };
            let res = result.1;
            // `search` keeps entries only: search references (Active Directory returns them
            // for its partitions) are neither followed nor counted.
            let mut entries = result.0.into_iter();
            return match res.rc {
                0 => Ok(match (entries.next(), entries.next()) {
                    (None, _) => Found::None,
                    (Some(e), None) => Found::One(Box::new(SearchEntry::construct(e))),
                    (Some(_), Some(_)) => Found::Many,
                }),
                // sizeLimitExceeded: more than one entry.
                4 => Ok(Found::Many),
                // noSuchObject: the base itself is missing.
                32 => Err(BackendError::new(
                    BACKEND,
                    format!("`{}` does not exist: {}", self.cfg.base_dn, res.text),
                )),
                rc => Err(BackendError::new(
                    BACKEND,
                    format!("search failed: {} (LDAP result {rc})", res.text),
                )),
            };
        }
    }

    /// Attributes read for an account.
    fn account_attributes(&self) -> Vec<&str> {
        let a = &self.cfg.attributes;
        let mut v = vec![
            a.id.as_str(),
            a.name.as_str(),
            a.mobile.as_str(),
            a.email.as_str(),
        ];
        if let Some(b) = &a.birth_date {
            v.push(b);
        }
        match self.cfg.flavor {
            Flavor::OpenLdap => v.push("pwdAccountLockedTime"),
            Flavor::ActiveDirectory => v.extend(["userAccountControl", "lockoutTime"]),
        }
        v
    }

    fn state(&self, entry: &SearchEntry) -> AccountState {
        match self.cfg.flavor {
            Flavor::OpenLdap => match first(entry, "pwdAccountLockedTime") {
                Some(t) if t == OPENLDAP_DISABLED => AccountState::Disabled,
                Some(_) => AccountState::Locked,
                None => AccountState::Active,
            },
            Flavor::ActiveDirectory => {
                let uac = first(entry, "userAccountControl")
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .unwrap_or(0);
                let lockout = first(entry, "lockoutTime")
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .unwrap_or(0);
                // userAccountControl is a signed 32-bit integer on the wire.
                if (uac as u32) & AD_ACCOUNTDISABLE != 0 {
                    AccountState::Disabled
                } else if lockout > 0 {
                    AccountState::Locked
                } else {
                    AccountState::Active
                }
            }
        }
    }

    fn account(&self, entry: &SearchEntry) -> Result<Account, BackendError> {
        let a = &self.cfg.attributes;
        let id = first(entry, &a.id).ok_or_else(|| {
            BackendError::new(
                BACKEND,
                format!("entry `{}` has no `{}` (attributes.id)", entry.dn, a.id),
            )
        })?;
        Ok(Account {
            name: first(entry, &a.name).unwrap_or_else(|| id.clone()),
            id,
            mobile: first(entry, &a.mobile),
            email: first(entry, &a.email),
            state: self.state(entry),
            allow_phone_reset: self.cfg.allow_phone_reset,
            birth_date: a.birth_date.as_deref().and_then(|b| first(entry, b)),
        })
    }

    /// The entry of account `id` (by `attributes.id`), reading `wanted`.
    async fn entry_of(
        &self,
        id: &str,
        wanted: &[&str],
    ) -> Result<Option<SearchEntry>, BackendError> {
        let attr = std::slice::from_ref(&self.cfg.attributes.id);
        match self.search(attr, id, wanted).await? {
            Found::One(e) => Ok(Some(*e)),
            Found::None => Ok(None),
            Found::Many => Err(BackendError::new(
                BACKEND,
                format!(
                    "several entries share the account id (`{}` must be unique)",
                    self.cfg.attributes.id
                ),
            )),
        }
    }

    async fn find_now(&self, by: LookupBy, value: &str) -> Result<Option<Account>, BackendError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let wanted = self.account_attributes();
        match self.search(self.cfg.lookup.get(by), value, &wanted).await? {
            Found::One(e) => self.account(&e).map(Some),
            Found::None => Ok(None),
            Found::Many => {
                tracing::info!(
                    by = ?by,
                    "several directory entries match the claim; treating it as not found"
                );
                Ok(None)
            }
        }
    }

    async fn verify_now(&self, account: &str, pin: &Secret) -> Result<bool, BackendError> {
        if pin.is_empty() {
            return Ok(false);
        }
        match &self.cfg.pin_check {
            PinCheck::Hash => self.verify_by_hash(account, pin).await,
            PinCheck::Off => Err(BackendError::new(
                BACKEND,
                "this directory checks no PINs (`directory.pin_check: none`)",
            )),
            PinCheck::BindCountsTowardDirectoryLockout(guard) => {
                self.verify_by_bind(account, pin, guard).await
            }
        }
    }

    async fn set_now(&self, account: &str, secret: &Secret) -> Result<(), SetSecretError> {
        let mut wanted = self.account_attributes();
        if self.cfg.flavor == Flavor::ActiveDirectory {
            wanted.push("pwdLastSet");
        }
        let entry = self
            .entry_of(account, &wanted)
            .await
            .map_err(SetSecretError::Backend)?
            .ok_or_else(|| {
                SetSecretError::Backend(BackendError::new(BACKEND, "no such account"))
            })?;
        crate::embedded::refuse_reset(self.state(&entry), self.cfg.allow_phone_reset)?;
        if secret.is_empty() {
            return Err(SetSecretError::Rejected {
                prompt: "policy_too_short".into(),
                reason: "empty secret".into(),
            });
        }
        let ldap = self.service().await.map_err(SetSecretError::Backend)?;
        match self.cfg.flavor {
            Flavor::OpenLdap => self.set_openldap(ldap, &entry, secret).await,
            Flavor::ActiveDirectory => self.set_active_directory(ldap, &entry, secret).await,
        }
    }

    /// OpenLDAP: the Password Modify extended operation with the ppolicy request control.
    async fn set_openldap(
        &self,
        mut ldap: Ldap,
        entry: &SearchEntry,
        secret: &Secret,
    ) -> Result<(), SetSecretError> {
        let exop = PasswordModify {
            user_id: Some(&entry.dn),
            old_pass: None,
            new_pass: Some(secret.expose()),
        };
        let request = RawControl {
            ctype: refusal::PPOLICY_OID.to_owned(),
            crit: false,
            val: None,
        };
        let result = self
            .within(
                ldap.with_controls(request)
                    .with_timeout(self.cfg.timeout)
                    .extended(exop),
            )
            .await;
        let res = match result {
            Ok(r) => r.1,
            Err(e) => {
                self.drop_shared().await;
                return Err(SetSecretError::Backend(e));
            }
        };
        if res.rc == 0 {
            return Ok(());
        }
        let ppolicy = res
            .ctrls
            .iter()
            .find(|c| c.1.ctype == refusal::PPOLICY_OID)
            .and_then(|c| c.1.val.as_deref())
            .and_then(refusal::ppolicy_error);
        Err(refusal::openldap(res.rc, &res.text, ppolicy))
    }

    /// Active Directory: one modify replacing `unicodePwd` (and `pwdLastSet` with 0 when the
    /// config asks for "must change at next logon"), with the policy-hints control so that a
    /// Windows DC checks the password history as for a change.
    async fn set_active_directory(
        &self,
        mut ldap: Ldap,
        entry: &SearchEntry,
        secret: &Secret,
    ) -> Result<(), SetSecretError> {
        let flags = AdPassword::of(entry);
        let must_change = self.cfg.must_change_at_next_logon && !flags.never_expires;
        if self.cfg.must_change_at_next_logon && flags.never_expires {
            tracing::warn!(
                "the account's password never expires (userAccountControl 0x10000), so Active Directory ignores \"must change at next logon\": reset without it"
            );
        }
        let mut change = vec![Mod::Replace(
            b"unicodePwd".to_vec(),
            HashSet::from([refusal::unicode_pwd(secret)]),
        )];
        if must_change {
            change.push(Mod::Replace(
                b"pwdLastSet".to_vec(),
                HashSet::from([b"0".to_vec()]),
            ));
        }
        let result = self
            .within(
                ldap.with_controls(refusal::policy_hints())
                    .with_timeout(self.cfg.timeout)
                    .modify(&entry.dn, change),
            )
            .await;
        let res = match result {
            Ok(r) => r,
            Err(e) => {
                self.drop_shared().await;
                return Err(SetSecretError::Backend(e));
            }
        };
        if res.rc != 0 {
            return Err(refusal::active_directory(res.rc, &res.text));
        }
        if flags.must_change && !must_change {
            tracing::info!(
                "the account had to change its password at next logon; the new secret, chosen on the call, replaces that temporary password"
            );
        }
        Ok(())
    }
}

/// The password flags of an Active Directory entry the reset path acts on. Neither changes the
/// account's state at lookup (both are [`AccountState::Active`]): "never expires" changes
/// nothing about a reset but makes AD ignore "must change at next logon"; "must change"
/// (`pwdLastSet` 0) means the current password is a temporary one, which a reset replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AdPassword {
    /// `userAccountControl` DONT_EXPIRE_PASSWORD (0x10000).
    never_expires: bool,
    /// `pwdLastSet` is 0: the person must change the password at next logon.
    must_change: bool,
}

impl AdPassword {
    fn of(entry: &SearchEntry) -> AdPassword {
        let uac = first(entry, "userAccountControl")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        AdPassword {
            // userAccountControl is a signed 32-bit integer on the wire.
            never_expires: (uac as u32) & AD_DONT_EXPIRE_PASSWORD != 0,
            must_change: first(entry, "pwdLastSet").is_some_and(|v| v.trim() == "0"),
        }
    }
}

/// Unbinds and closes a connection, giving up after a moment (a hung server must not hold a
/// call); dropping the last handle ends the connection's driver anyway.
async fn close(mut ldap: Ldap) {
    let _ = tokio::time::timeout(Duration::from_millis(200), ldap.unbind()).await;
}

/// A rustls client config trusting only the certificates in `path` (PEM).
pub(crate) fn client_config(
    path: &std::path::Path,
) -> Result<rustls::ClientConfig, LdapConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| LdapConfigError::CaFile(format!("cannot read {}: {e}", path.display())))?;
    for cert in certs {
        let cert = cert
            .map_err(|e| LdapConfigError::CaFile(format!("{} is not PEM: {e}", path.display())))?;
        roots.add(cert).map_err(|e| {
            LdapConfigError::CaFile(format!("unusable certificate in {}: {e}", path.display()))
        })?;
    }
    if roots.is_empty() {
        return Err(LdapConfigError::CaFile(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapConfigError::CaFile(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

crate::own_methods_directory!(LdapDirectory);

#[cfg(test)]
mod tests;
