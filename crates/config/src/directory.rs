//! `directory:` (embedded users file, LDAP / Active Directory, SCIM 2.0, Okta) and
//! `pin_hashing:` (the process-wide bound on Argon2 work). The LDAP settings fill
//! [`resetline_connectors::LdapConfig`], whose own checks are reported with the others; the
//! SCIM and Okta ones are read by `connectors`. Problems are added to the caller's list, like
//! every other section's.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use resetline_engine::Secret;

use crate::connectors::{self, IdpConfig};
use crate::secret_env;

/// `pin_hashing:`: the process-wide bound on Argon2 work.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPinHashing {
    /// Hashes at once; default: the number of CPU cores.
    max_concurrent: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDirectory {
    kind: String,
    path: Option<PathBuf>,
    // `kind: ldap` (see `resetline_connectors::ldap`):
    url: Option<String>,
    bind_dn: Option<String>,
    bind_password_env: Option<String>,
    base_dn: Option<String>,
    flavor: Option<String>,
    starttls: Option<bool>,
    ca_file: Option<PathBuf>,
    timeout_ms: Option<u64>,
    user_filter: Option<String>,
    allow_phone_reset: Option<bool>,
    attributes: Option<RawLdapAttributes>,
    lookup: Option<RawLdapLookup>,
    pin_check: Option<String>,
    pin_bind: Option<RawPinBind>,
    must_change_at_next_logon: Option<bool>,
    // `kind: scim | okta` (see `config::connectors`; `timeout_ms` above is theirs too):
    base_url: Option<String>,
    token_env: Option<String>,
    employee_id_attribute: Option<String>,
    pin_hash_attribute: Option<String>,
    unlock: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLdapAttributes {
    id: Option<String>,
    name: Option<String>,
    mobile: Option<String>,
    email: Option<String>,
    birth_date: Option<String>,
    pin_hash: Option<String>,
}

/// `directory.pin_bind:` (only with `pin_check: bind_counts_toward_directory_lockout`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPinBind {
    policy_dn: Option<String>,
    max_failures: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLdapLookup {
    employee_id: Option<Vec<String>>,
    username: Option<Vec<String>>,
    phone: Option<Vec<String>>,
    email: Option<Vec<String>>,
}

/// Which directory backs lookups.
#[derive(Clone, Debug)]
pub enum DirectoryConfig {
    /// A YAML file of users (`examples/demo/users.yaml` format).
    Embedded {
        /// The file.
        path: PathBuf,
    },
    /// An LDAP directory (OpenLDAP or Active Directory), already checked.
    Ldap(Box<resetline_connectors::LdapConfig>),
    /// A SCIM 2.0 service provider.
    Scim(IdpConfig),
    /// An Okta org.
    Okta(IdpConfig),
}

/// Checks `directory:` and `pin_hashing:`; returns the directory (`None` when unusable, a
/// problem says why) and the most Argon2 hashes at once.
pub(crate) fn directory(
    raw: RawDirectory,
    pin_hashing: RawPinHashing,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> (Option<DirectoryConfig>, usize) {
    let idp = connectors::RawIdp {
        base_url: raw.base_url.clone(),
        token_env: raw.token_env.clone(),
        timeout_ms: raw.timeout_ms,
        employee_id_attribute: raw.employee_id_attribute.clone(),
        pin_hash_attribute: raw.pin_hash_attribute.clone(),
        unlock: raw.unlock,
    };
    if raw.kind != "ldap" && (raw.pin_check.is_some() || raw.pin_bind.is_some()) {
        problems.push("`directory.pin_check` and `directory.pin_bind` are for `kind: ldap`; the other directories check PINs against a hash attribute only".into());
    }
    if raw.kind != "ldap" && raw.must_change_at_next_logon.is_some() {
        problems.push("`directory.must_change_at_next_logon` is for `kind: ldap` with `flavor: active_directory`".into());
    }
    let pin_hashing_max_concurrent = pin_hashing
        .max_concurrent
        .unwrap_or_else(resetline_connectors::PinHashing::default_limit);
    if !(1..=256).contains(&pin_hashing_max_concurrent) {
        problems.push(format!(
            "`pin_hashing.max_concurrent`: {pin_hashing_max_concurrent} must be between 1 and 256 (each hash holds 19 MiB at the shipped cost)"
        ));
    }
    let directory = match (raw.kind.clone().as_str(), raw.path.clone()) {
        (kind @ ("scim" | "okta"), path) => {
            if path.is_some() {
                problems.push(format!(
                    "`directory.path`: the {kind} directory has no users file"
                ));
            }
            connectors::idp(kind, idp, env, problems).map(|c| {
                if kind == "scim" {
                    DirectoryConfig::Scim(c)
                } else {
                    DirectoryConfig::Okta(c)
                }
            })
        }
        ("embedded", path) => {
            if raw.url.is_some() || raw.bind_dn.is_some() {
                problems.push(
                    "`directory`: `url` and `bind_dn` are for `kind: ldap`, not the embedded directory".into(),
                );
            }
            if idp.any() {
                problems.push("`directory`: base_url, token_env, timeout_ms, employee_id_attribute, pin_hash_attribute and unlock belong to the ldap, scim and okta kinds, not the embedded directory".into());
            }
            match path {
                Some(p) => {
                    let p = resolve(&p);
                    if !p.is_file() {
                        problems.push(format!("`directory.path`: {} is not a file", p.display()));
                    }
                    Some(DirectoryConfig::Embedded { path: p })
                }
                None => {
                    problems.push(
                        "`directory.path`: the embedded directory needs the path of its users file"
                            .into(),
                    );
                    None
                }
            }
        }
        ("ldap", path) => {
            if path.is_some() {
                problems.push("`directory.path` is for `kind: embedded`; an LDAP directory takes `url`, `bind_dn`, `bind_password_env` and `base_dn`".into());
            }
            ldap_directory(raw, resolve, env, problems)
        }
        (other, _) => {
            problems.push(format!(
                "`directory.kind`: `{other}` is not supported (supported: embedded, ldap, scim, okta)"
            ));
            None
        }
    };
    (directory, pin_hashing_max_concurrent)
}

/// An LDAP directory's timeout must leave room in the backend budget.
pub(crate) fn within_budget(
    directory: Option<&DirectoryConfig>,
    budget_ms: u64,
    problems: &mut Vec<String>,
) {
    if let Some(DirectoryConfig::Ldap(l)) = directory
        && l.timeout.as_millis() >= u128::from(budget_ms)
    {
        problems.push(format!(
            "`directory.timeout_ms`: {} must be below `budget_ms` ({}), or a slow directory uses up the whole backend budget",
            l.timeout.as_millis(),
            budget_ms
        ));
    }
}

/// Checks `directory:` for `kind: ldap`: the required keys, then every rule of
/// [`resetline_connectors::LdapConfig::problems`], all reported together.
fn ldap_directory(
    raw: RawDirectory,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<DirectoryConfig> {
    use resetline_connectors::ldap::{
        Attributes, BIND_MODE, BindGuard, Flavor, LdapConfig, Lookups, PinCheck,
    };
    let mut required = |key: &str, value: Option<String>, example: &str| {
        if value.is_none() {
            problems.push(format!(
                "`directory.{key}`: required for `kind: ldap` (e.g. {example})"
            ));
        }
        value
    };
    let url = required("url", raw.url, "ldaps://ldap.example.com");
    let bind_dn = required(
        "bind_dn",
        raw.bind_dn,
        "cn=resetline,ou=services,dc=example,dc=com",
    );
    let base_dn = required("base_dn", raw.base_dn, "ou=people,dc=example,dc=com");
    let password_env = required(
        "bind_password_env",
        raw.bind_password_env,
        "LDAP_BIND_PASSWORD",
    );
    let flavor = match raw.flavor.as_deref() {
        None => Some(Flavor::OpenLdap),
        Some(word) => {
            let f = Flavor::parse(word);
            if f.is_none() {
                problems.push(format!(
                    "`directory.flavor`: `{word}` must be openldap or active_directory"
                ));
            }
            f
        }
    };
    let password = password_env
        .and_then(|name| secret_env(env, &name, "`directory.bind_password_env`", 1, problems));
    let (Some(url), Some(bind_dn), Some(base_dn), Some(flavor)) = (url, bind_dn, base_dn, flavor)
    else {
        return None;
    };
    // A missing password is already reported; the other keys are still checked.
    let usable = password.is_some();
    let password = password.unwrap_or_else(|| Secret::new(""));
    let mut cfg = LdapConfig::new(&url, &bind_dn, password, &base_dn, flavor);
    cfg.starttls = raw.starttls.unwrap_or(false);
    cfg.ca_file = raw.ca_file.as_deref().map(resolve);
    if let Some(ms) = raw.timeout_ms {
        cfg.timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(f) = raw.user_filter {
        cfg.user_filter = f;
    }
    cfg.allow_phone_reset = raw.allow_phone_reset.unwrap_or(true);
    cfg.must_change_at_next_logon = raw.must_change_at_next_logon.unwrap_or(false);
    let a = raw.attributes.unwrap_or_default();
    let d = Attributes::defaults(flavor);
    cfg.attributes = Attributes {
        id: a.id.unwrap_or(d.id),
        name: a.name.unwrap_or(d.name),
        mobile: a.mobile.unwrap_or(d.mobile),
        email: a.email.unwrap_or(d.email),
        birth_date: a.birth_date,
        pin_hash: a.pin_hash,
    };
    cfg.pin_check = match (raw.pin_check.as_deref(), raw.pin_bind) {
        (None | Some("hash"), None) => PinCheck::Hash,
        (Some("none"), None) => PinCheck::Off,
        (Some(BIND_MODE), bind) => {
            let bind = bind.unwrap_or_default();
            PinCheck::BindCountsTowardDirectoryLockout(BindGuard {
                policy_dn: bind.policy_dn,
                max_failures: bind.max_failures,
            })
        }
        (Some("hash" | "none") | None, Some(_)) => {
            problems.push(format!(
                "`directory.pin_bind` is only read with `pin_check: {BIND_MODE}`"
            ));
            PinCheck::Hash
        }
        (Some(other), _) => {
            problems.push(format!(
                "`directory.pin_check`: `{other}` must be hash, none or {BIND_MODE}"
            ));
            PinCheck::Hash
        }
    };
    let l = raw.lookup.unwrap_or_default();
    let d = Lookups::defaults(flavor);
    cfg.lookup = Lookups {
        employee_id: l.employee_id.unwrap_or(d.employee_id),
        username: l.username.unwrap_or(d.username),
        phone: l.phone.unwrap_or(d.phone),
        email: l.email.unwrap_or(d.email),
    };
    let found = cfg.problems();
    if found.is_empty() && usable {
        Some(DirectoryConfig::Ldap(Box::new(cfg)))
    } else {
        problems.extend(found);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{BASE as LDAP, env, write};
    use crate::{Raw, load, validate};

    #[test]
    fn an_ldap_directory_loads_with_flavor_defaults_and_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), "x").ok();
        let text = format!(
            "{LDAP}directory:\n  kind: ldap\n  url: ldaps://dc1.corp.example.com\n  bind_dn: CN=svc-resetline,OU=Services,DC=corp,DC=example,DC=com\n  bind_password_env: TOKEN\n  base_dn: OU=Staff,DC=corp,DC=example,DC=com\n  flavor: active_directory\n  ca_file: ca.pem\n  timeout_ms: 1500\n  attributes: {{ mobile: otherMobile, pin_hash: resetlinePinHash }}\n  lookup: {{ phone: [otherMobile] }}\n  must_change_at_next_logon: true\n"
        );
        let c = load(&write(dir.path(), &text), &env).expect("config");
        let DirectoryConfig::Ldap(l) = c.directory else {
            panic!("not ldap");
        };
        assert_eq!(l.flavor, resetline_connectors::Flavor::ActiveDirectory);
        assert!(l.must_change_at_next_logon);
        assert_eq!(l.bind_password.expose(), "tok");
        assert_eq!(l.timeout.as_millis(), 1500);
        assert_eq!(l.attributes.id, "sAMAccountName", "flavor default");
        assert_eq!(l.attributes.mobile, "otherMobile", "override");
        assert_eq!(l.lookup.phone, vec!["otherMobile".to_string()]);
        assert_eq!(l.lookup.employee_id, vec!["employeeID".to_string()]);
        assert_eq!(
            l.ca_file,
            Some(dir.path().join("ca.pem")),
            "relative to the file"
        );
    }

    #[test]
    fn ldap_pins_are_checked_against_a_hash_unless_bind_mode_is_named() {
        use resetline_connectors::{BindGuard, PinCheck};
        let dir = tempfile::tempdir().expect("tempdir");
        let ldap = |extra: &str| {
            format!(
                "{LDAP}directory: {{ kind: ldap, url: \"ldaps://ldap.example.com\", bind_dn: \"cn=r,dc=x\", bind_password_env: TOKEN, base_dn: \"dc=x\"{extra} }}\n"
            )
        };
        let pin_check = |extra: &str| {
            let c = load(&write(dir.path(), &ldap(extra)), &env).unwrap_or_else(|e| panic!("{e}"));
            let DirectoryConfig::Ldap(l) = c.directory else {
                panic!("not ldap");
            };
            l.pin_check
        };
        assert_eq!(
            pin_check(", attributes: { pin_hash: resetlinePinHash }"),
            PinCheck::Hash
        );
        assert_eq!(pin_check(", pin_check: none"), PinCheck::Off);
        assert_eq!(
            pin_check(
                ", pin_check: bind_counts_toward_directory_lockout, pin_bind: { policy_dn: \"cn=default,ou=policies,dc=x\", max_failures: 5 }"
            ),
            PinCheck::BindCountsTowardDirectoryLockout(BindGuard {
                policy_dn: Some("cn=default,ou=policies,dc=x".into()),
                max_failures: Some(5),
            })
        );
        let problems = |extra: &str| {
            load(&write(dir.path(), &ldap(extra)), &env)
                .expect_err("invalid")
                .to_string()
        };
        let text = problems("");
        assert!(
            text.contains("`directory.attributes.pin_hash`")
                && text.contains("pin_check: none")
                && text.contains("counts every wrong PIN toward the directory's own lockout"),
            "{text}"
        );
        for (extra, want) in [
            (", pin_check: bind", "`directory.pin_check`: `bind` must be"),
            (
                ", pin_check: bind_counts_toward_directory_lockout",
                "`directory.pin_bind`: `pin_check: bind_counts_toward_directory_lockout` needs",
            ),
            (
                ", attributes: { pin_hash: h }, pin_bind: { max_failures: 5 }",
                "`directory.pin_bind` is only read with",
            ),
        ] {
            let text = problems(extra);
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let embedded = format!(
            "{LDAP}directory: {{ kind: embedded, path: users.yaml, pin_check: none }}\npin_hashing: {{ max_concurrent: 0 }}\n"
        );
        let text = load(&write(dir.path(), &embedded), &env)
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("`directory.pin_check` and `directory.pin_bind` are for `kind: ldap`")
                && text.contains("`pin_hashing.max_concurrent`: 0"),
            "{text}"
        );
    }

    #[test]
    fn every_ldap_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing =
            format!("{LDAP}directory: {{ kind: ldap, path: users.yaml, flavor: novell }}\n");
        let text = load(&write(dir.path(), &missing), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`directory.path` is for `kind: embedded`",
            "`directory.url`: required",
            "`directory.bind_dn`: required",
            "`directory.base_dn`: required",
            "`directory.bind_password_env`: required",
            "`directory.flavor`",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let bad = format!(
            "{LDAP}directory: {{ kind: ldap, url: \"ldap://ldap.example.com\", bind_dn: resetline, bind_password_env: UNSET, base_dn: \"dc=example,dc=com\", timeout_ms: 50, ca_file: nope.pem, attributes: {{ id: \"uid)(x\" }}, lookup: {{ email: [] }} }}\n"
        );
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`directory.bind_password_env`",
            "UNSET",
            "`directory.timeout_ms`",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let bad = bad.replace("UNSET", "TOKEN");
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`directory.url`: `ldap://ldap.example.com` would send passwords unencrypted",
            "`directory.bind_dn`",
            "`directory.timeout_ms`",
            "`directory.ca_file`",
            "`directory.attributes.id`",
            "`directory.lookup.email`",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let slow = format!(
            "{LDAP}budget_ms: 2000\ndirectory: {{ kind: ldap, url: \"ldaps://ldap.example.com\", bind_dn: \"cn=r,dc=x\", bind_password_env: TOKEN, base_dn: \"dc=x\", timeout_ms: 2000, pin_check: none }}\n"
        );
        let text = load(&write(dir.path(), &slow), &env)
            .expect_err("invalid")
            .to_string();
        assert!(text.contains("must be below `budget_ms`"), "{text}");
        let embedded_with_url = format!(
            "{LDAP}directory: {{ kind: embedded, path: users.yaml, url: \"ldaps://x\" }}\n"
        );
        let text = load(&write(dir.path(), &embedded_with_url), &env)
            .expect_err("invalid")
            .to_string();
        assert!(text.contains("are for `kind: ldap`"), "{text}");
    }

    #[test]
    fn the_example_ldap_section_loads() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let text = std::fs::read_to_string(deploy.join("resetline.example.yaml")).expect("example");
        let (mut out, mut block, mut skip) = (String::new(), false, false);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().copied().enumerate() {
            if line.starts_with("directory:") {
                skip = true;
                continue;
            }
            // The commented LDAP example (other commented directories follow it).
            if line.starts_with("# directory:")
                && lines
                    .get(i + 1)
                    .is_some_and(|n| n.trim_start_matches(['#', ' ']) == "kind: ldap")
            {
                block = true;
                skip = false;
            }
            if block && line.is_empty() {
                block = false;
            }
            if block {
                if !line.contains("ca_file:") {
                    out.push_str(line.strip_prefix("# ").unwrap_or(line));
                    out.push('\n');
                }
            } else if !(skip && line.starts_with("  ")) {
                skip = false;
                out.push_str(line);
                out.push('\n');
            }
        }
        let raw: Raw = serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        let c = validate(raw, &deploy, &|_| Some("k".repeat(40)))
            .unwrap_or_else(|p| panic!("{p:?}\n{out}"));
        let DirectoryConfig::Ldap(l) = c.directory else {
            panic!("the example's LDAP section did not load as ldap:\n{out}");
        };
        assert_eq!(l.url, "ldaps://ldap.example.com");
        assert_eq!(
            l.lookup.phone,
            vec!["mobile".to_string(), "telephoneNumber".to_string()]
        );
    }
}
