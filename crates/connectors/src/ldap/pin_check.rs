//! How the LDAP directory checks a PIN ([`PinCheck`]): against an Argon2id hash attribute (the
//! default), or by a bind as the user behind a guard that keeps those binds from locking the
//! person's directory login.
//!
//! A bind as the user counts every wrong PIN toward the directory's own lockout (OpenLDAP
//! ppolicy `pwdMaxFailure`, Active Directory's lockout threshold), so a stranger guessing on
//! the phone could lock the real person out of their desktop. The default is therefore an
//! Argon2id hash in an attribute, which never touches the login; bind mode must be asked for
//! by a name that says what it risks, and then this guard stops Resetline's own binds early.
//!
//! Invariant (bind mode): before each bind the guard knows the directory's threshold `t` (the
//! policy entry, or the configured `max_failures`; unknown means no bind at all) and the
//! failures on record (`max` of what the entry says and what this process caused), and binds
//! only while one more failure would leave the count below `t - 1`, so the person keeps at
//! least two attempts of their own. A bind under way counts as a failure until it ends (one
//! abandoned mid-way stays counted), so parallel calls cannot both pass the guard on the same
//! reading. Several replicas each keep their own count; the entry's count is shared by all.
//!
//! The attribute names per flavour sit in one table ([`Names`]), so the rule itself is the
//! same for OpenLDAP and Active Directory.
//!
//! Unknown accounts take as long as known ones in every mode: a search, then a dummy Argon2
//! check (hash mode), or the same policy read and a bind to an entry that does not exist
//! (bind mode), so the answer's timing does not tell whether the ID exists.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use ldap3::{Scope, SearchEntry};
use resetline_engine::{BackendError, Secret};

use super::{BACKEND, Flavor, LdapDirectory, close, first, refusal};
use crate::pin::PinHashing;

/// The id-attribute value of the entry a bind for an unknown account goes to (it never
/// exists, so the bind fails without counting against anybody).
const NO_SUCH_ENTRY: &str = "resetline-no-such-entry";

impl LdapDirectory {
    /// Hash mode: the Argon2id PHC string in `attributes.pin_hash`, checked by the shared
    /// verifier (a dummy of the same cost when the account or its hash is missing).
    pub(super) async fn verify_by_hash(
        &self,
        account: &str,
        pin: &Secret,
    ) -> Result<bool, BackendError> {
        let Some(attr) = self.cfg.attributes.pin_hash.as_deref() else {
            return Err(BackendError::new(
                BACKEND,
                "`directory.attributes.pin_hash` is not set: no PIN to check",
            ));
        };
        let stored = self
            .entry_of(account, &[attr])
            .await?
            .and_then(|e| first(&e, attr));
        PinHashing::shared()
            .check(pin, stored.as_deref())
            .await
            .map_err(|m| BackendError::new(BACKEND, format!("`{attr}` of `{account}`: {m}")))
    }

    /// Bind mode: a simple bind as the user on a fresh connection, only while the guard allows
    /// one more failure (see the module docs). A refusal is a `BackendError`: the flow's error
    /// path, never a wrong PIN.
    pub(super) async fn verify_by_bind(
        &self,
        account: &str,
        pin: &Secret,
        guard: &BindGuard,
    ) -> Result<bool, BackendError> {
        let names = Names::of(self.cfg.flavor);
        let entry = self
            .entry_of(account, &[names.user_policy, names.failures])
            .await?;
        let own_policy = entry.as_ref().and_then(|e| first(e, names.user_policy));
        let threshold = self.threshold(names, own_policy, guard).await?;
        let Some(entry) = entry else {
            // As long as a wrong PIN for a real account; whatever the server says, it is wrong.
            let _ = self.bind(&self.no_such_entry(), pin).await;
            return Ok(false);
        };
        let reserved = self
            .tallies
            .reserve(account, names.failures(&entry), threshold)
            .map_err(|count| {
                tracing::warn!(
                    failures = count,
                    threshold = threshold.unwrap_or(0),
                    "PIN check by bind refused: one more failure would leave the person a single attempt before the directory locks the account"
                );
                BackendError::new(
                    BACKEND,
                    format!(
                        "PIN check by bind refused before the directory lockout: {count} failures on record or under way, the directory locks at {}",
                        threshold.unwrap_or(0)
                    ),
                )
            })?;
        let matched = self.bind(&entry.dn, pin).await?;
        reserved.done(matched);
        Ok(matched)
    }

    /// A simple bind as `dn` on a fresh connection: `true` for success, `false` for invalid
    /// credentials, an error for anything else. Active Directory's refusals say more (the
    /// `data` code, [`refusal::ad_bind`]): a right password that must be changed is `true`, an
    /// account that cannot log in at all (locked, disabled) an error, never a wrong PIN.
    async fn bind(&self, dn: &str, pin: &Secret) -> Result<bool, BackendError> {
        let mut ldap = self.connect().await?;
        let res = self
            .within(
                ldap.with_timeout(self.cfg.timeout)
                    .simple_bind(dn, pin.expose()),
            )
            .await;
        close(ldap).await;
        let res = res?;
        match res.rc {
            0 => Ok(true),
            refusal::INVALID_CREDENTIALS => match self.cfg.flavor {
                Flavor::OpenLdap => Ok(false),
                Flavor::ActiveDirectory => refusal::ad_bind(&res.text),
            },
            rc => Err(BackendError::new(
                BACKEND,
                format!("PIN check by bind failed: {} (LDAP result {rc})", res.text),
            )),
        }
    }

    /// The DN a bind for an unknown account goes to: under `base_dn`, never an entry.
    fn no_such_entry(&self) -> String {
        format!(
            "{}={NO_SUCH_ENTRY},{}",
            self.cfg.attributes.id, self.cfg.base_dn
        )
    }

    /// The directory's lockout threshold for a user (`None`: failures never lock): the user's
    /// own policy entry, else the configured default policy entry, else `max_failures`. When
    /// none of them says, no bind is made (an error).
    async fn threshold(
        &self,
        names: Names,
        own_policy: Option<String>,
        guard: &BindGuard,
    ) -> Result<Option<u32>, BackendError> {
        let (dn, attr) = match own_policy {
            Some(dn) => (Some(dn), names.user_threshold),
            None => (guard.policy_dn.clone(), names.default_threshold),
        };
        if let Some(dn) = &dn {
            let wanted: Vec<&str> = [Some(attr), names.lockout_switch]
                .into_iter()
                .flatten()
                .collect();
            match self.read(dn, &wanted).await {
                Ok(Some(policy)) => {
                    if let Some(t) = names.threshold(&policy, attr) {
                        return Ok(t);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, policy = %dn, "password policy unreadable"),
            }
        }
        guard.max_failures.map(Some).ok_or_else(|| {
            BackendError::new(
                BACKEND,
                format!(
                    "cannot read the lockout threshold ({attr}) from {}; set `directory.pin_bind.max_failures` so PIN checks by bind can stop before it",
                    dn.as_deref().unwrap_or("any policy entry")
                ),
            )
        })
    }

    /// The entry at `dn` with `attrs`, as the service account; `None` when there is none.
    async fn read(&self, dn: &str, attrs: &[&str]) -> Result<Option<SearchEntry>, BackendError> {
        let mut ldap = self.service().await?;
        let result = self
            .within(ldap.with_timeout(self.cfg.timeout).search(
                dn,
                Scope::Base,
                "(objectClass=*)",
                attrs.to_vec(),
            ))
            .await;
        let (entries, res) = match result {
            Ok(r) => (r.0, r.1),
            Err(e) => {
                self.drop_shared().await;
                return Err(e);
            }
        };
        match res.rc {
            0 => Ok(entries.into_iter().next().map(SearchEntry::construct)),
            // noSuchObject
            32 => Ok(None),
            rc => Err(BackendError::new(
                BACKEND,
                format!("reading {dn} failed: {} (LDAP result {rc})", res.text),
            )),
        }
    }
}

/// The config word of bind mode.
pub const BIND_MODE: &str = "bind_counts_toward_directory_lockout";

/// How `pin.verify` checks a PIN against the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinCheck {
    /// `hash` (the default): against an Argon2id hash in `attributes.pin_hash` (written with
    /// `resetline hash-pin`). The directory login is never touched.
    Hash,
    /// `none`: the directory holds no PINs; `pin.verify` takes its error path.
    Off,
    /// `bind_counts_toward_directory_lockout`: the PIN is the directory password, checked by
    /// a bind as the user, so every wrong PIN counts toward the directory's lockout; the
    /// guard stops before its threshold.
    BindCountsTowardDirectoryLockout(BindGuard),
}

impl PinCheck {
    /// The config word.
    pub fn name(&self) -> &'static str {
        match self {
            PinCheck::Hash => "hash",
            PinCheck::Off => "none",
            PinCheck::BindCountsTowardDirectoryLockout(_) => BIND_MODE,
        }
    }
}

/// Where bind mode learns the directory's lockout threshold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindGuard {
    /// The policy entry for users without one of their own: OpenLDAP's default ppolicy entry
    /// (`olcPPolicyDefault`), Active Directory's domain object (`lockoutThreshold`).
    pub policy_dn: Option<String>,
    /// The threshold to assume when no policy entry can be read.
    pub max_failures: Option<u32>,
}

impl BindGuard {
    /// Problems with this guard, each naming its key.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.policy_dn.is_none() && self.max_failures.is_none() {
            problems.push(format!(
                "`directory.pin_bind`: `pin_check: {BIND_MODE}` needs `policy_dn` (the default password policy entry, or AD's domain object) or `max_failures` (the directory's lockout threshold), so Resetline can stop before the directory locks the account"
            ));
        }
        if let Some(dn) = &self.policy_dn
            && !dn.contains('=')
        {
            problems.push(format!(
                "`directory.pin_bind.policy_dn`: `{dn}` is not a DN such as cn=default,ou=policies,dc=example,dc=com"
            ));
        }
        if self.max_failures == Some(0) {
            problems.push("`directory.pin_bind.max_failures` must be at least 1 (the failures at which the directory locks an account)".into());
        }
        problems
    }
}

/// The attributes the guard reads, per flavour.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Names {
    /// On the user: the DN of a policy of its own.
    pub user_policy: &'static str,
    /// On that policy entry: the threshold.
    pub user_threshold: &'static str,
    /// On the default policy entry: the threshold.
    pub default_threshold: &'static str,
    /// On a policy entry: whether failures lock at all (absent: assume they do).
    pub lockout_switch: Option<&'static str>,
    /// On the user: the failures on record.
    pub failures: &'static str,
    /// Whether `failures` holds one value per failure (ppolicy) or a count (AD).
    pub failures_are_values: bool,
}

impl Names {
    pub(crate) fn of(flavor: Flavor) -> Names {
        match flavor {
            Flavor::OpenLdap => Names {
                user_policy: "pwdPolicySubentry",
                user_threshold: "pwdMaxFailure",
                default_threshold: "pwdMaxFailure",
                lockout_switch: Some("pwdLockout"),
                failures: "pwdFailureTime",
                failures_are_values: true,
            },
            Flavor::ActiveDirectory => Names {
                user_policy: "msDS-ResultantPSO",
                user_threshold: "msDS-LockoutThreshold",
                default_threshold: "lockoutThreshold",
                lockout_switch: None,
                failures: "badPwdCount",
                failures_are_values: false,
            },
        }
    }

    /// What a policy entry says: `Some(None)` no lockout, `Some(Some(t))` locks at `t`
    /// failures, `None` it does not say (or hides it from the service account).
    pub(crate) fn threshold(&self, policy: &SearchEntry, attr: &str) -> Option<Option<u32>> {
        if let Some(switch) = self.lockout_switch
            && first(policy, switch).is_some_and(|v| v.trim().eq_ignore_ascii_case("FALSE"))
        {
            return Some(None);
        }
        let t = first(policy, attr)?.trim().parse::<u32>().ok()?;
        Some((t > 0).then_some(t))
    }

    /// The failures `user` has on record, `None` when the entry shows none (or hides them).
    pub(crate) fn failures(&self, user: &SearchEntry) -> Option<u32> {
        let values = user
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(self.failures))
            .map(|(_, v)| v)?;
        if self.failures_are_values {
            Some(u32::try_from(values.len()).unwrap_or(u32::MAX))
        } else {
            // A count of 0 is nothing on record, as an absent ppolicy attribute is: AD always
            // shows its count, and a 0 after failures means it cleared them (the person
            // logged in), which [`Tally::reckon`] only sees as "none on record".
            values.first()?.trim().parse().ok().filter(|n| *n > 0)
        }
    }
}

/// What this process knows about one account's failed PIN binds.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Failed binds Resetline made that no success has cleared.
    ours: u32,
    /// Binds under way (each may fail and count).
    in_flight: u32,
    /// The entry has shown failures on record (so an empty record later means the directory
    /// cleared them, not that the service account cannot read them).
    record_seen: bool,
}

impl Tally {
    /// The failures to reckon with, given what the entry shows now: the larger of the
    /// entry's count and this process's, plus the binds under way.
    pub(crate) fn reckon(&mut self, on_record: Option<u32>) -> u32 {
        match on_record {
            Some(_) => self.record_seen = true,
            None if self.record_seen => {
                // The directory forgot them (a successful login, or its count interval).
                self.ours = 0;
                self.record_seen = false;
            }
            None => {}
        }
        on_record
            .unwrap_or(0)
            .max(self.ours)
            .saturating_add(self.in_flight)
    }
}

/// Whether one more bind may fail with `count` failures on record and threshold `t`.
pub(crate) fn may_bind(count: u32, threshold: Option<u32>) -> bool {
    threshold.is_none_or(|t| count.saturating_add(2) < t)
}

/// One [`Tally`] per account with a bind under way or failures counted. The lock is held only
/// to read and change a tally, never across a bind, so checks of different accounts (and
/// decoys) never wait for each other.
#[derive(Debug, Default)]
pub(crate) struct Tallies {
    tallies: Mutex<HashMap<String, Tally>>,
}

impl Tallies {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Tally>) -> T) -> T {
        f(&mut self.tallies.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reserves one bind for `account` when the guard allows it; else the count that stopped
    /// it.
    pub(crate) fn reserve(
        &self,
        account: &str,
        on_record: Option<u32>,
        threshold: Option<u32>,
    ) -> Result<Reserved<'_>, u32> {
        self.with(|all| {
            let tally = all.entry(account.to_owned()).or_default();
            let count = tally.reckon(on_record);
            if may_bind(count, threshold) {
                tally.in_flight += 1;
                Ok(Reserved {
                    tallies: self,
                    account: account.to_owned(),
                    done: false,
                })
            } else {
                if tally.ours == 0 && tally.in_flight == 0 {
                    all.remove(account);
                }
                Err(count)
            }
        })
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.with(|all| all.len())
    }
}

/// A bind under way. [`Reserved::done`] records its result; dropped without it (the caller
/// gave up mid-bind), it counts as a failure, since the directory may have counted one.
pub(crate) struct Reserved<'t> {
    tallies: &'t Tallies,
    account: String,
    done: bool,
}

impl Reserved<'_> {
    /// The bind ended: `matched` clears the count (the directory cleared its own), a wrong
    /// PIN adds one.
    pub(crate) fn done(mut self, matched: bool) {
        self.done = true;
        self.finish(matched);
    }

    fn finish(&self, matched: bool) {
        self.tallies.with(|all| {
            let Some(tally) = all.get_mut(&self.account) else {
                return;
            };
            tally.in_flight = tally.in_flight.saturating_sub(1);
            if matched {
                tally.ours = 0;
                tally.record_seen = false;
            } else {
                tally.ours = tally.ours.saturating_add(1);
            }
            if tally.ours == 0 && tally.in_flight == 0 {
                all.remove(&self.account);
            }
        });
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: "cn=x".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn binds_stop_while_the_person_keeps_two_attempts() {
        assert!(may_bind(0, Some(5)) && may_bind(2, Some(5)));
        assert!(
            !may_bind(3, Some(5)),
            "a fourth failure would leave one attempt"
        );
        assert!(may_bind(0, Some(3)) && !may_bind(1, Some(3)));
        assert!(
            !may_bind(0, Some(2)),
            "a threshold of 2 leaves no attempt for the phone"
        );
        assert!(may_bind(1_000, None), "no lockout: nothing to protect");
    }

    #[test]
    fn thresholds_and_failures_are_read_per_flavour() {
        let ol = Names::of(Flavor::OpenLdap);
        let policy = entry(&[("pwdMaxFailure", &["5"]), ("pwdLockout", &["TRUE"])]);
        assert_eq!(ol.threshold(&policy, "pwdMaxFailure"), Some(Some(5)));
        let off = entry(&[("pwdMaxFailure", &["5"]), ("pwdLockout", &["FALSE"])]);
        assert_eq!(ol.threshold(&off, "pwdMaxFailure"), Some(None));
        let zero = entry(&[("pwdMaxFailure", &["0"])]);
        assert_eq!(ol.threshold(&zero, "pwdMaxFailure"), Some(None));
        assert_eq!(ol.threshold(&entry(&[]), "pwdMaxFailure"), None, "unknown");
        let user = entry(&[("pwdFailureTime", &["20260101000000Z", "20260101000001Z"])]);
        assert_eq!(ol.failures(&user), Some(2));
        assert_eq!(ol.failures(&entry(&[])), None);

        let ad = Names::of(Flavor::ActiveDirectory);
        let domain = entry(&[("lockoutThreshold", &["10"])]);
        assert_eq!(ad.threshold(&domain, ad.default_threshold), Some(Some(10)));
        let pso = entry(&[("msDS-LockoutThreshold", &["3"])]);
        assert_eq!(ad.threshold(&pso, ad.user_threshold), Some(Some(3)));
        assert_eq!(ad.failures(&entry(&[("badPwdCount", &["4"])])), Some(4));
        assert_eq!(
            ad.failures(&entry(&[("badPwdCount", &["0"])])),
            None,
            "0 on record is none on record"
        );
    }

    #[test]
    fn a_tally_counts_its_own_failures_until_the_directory_clears_them() {
        let tallies = Tallies::default();
        let t = Some(5);
        tallies.reserve("a", None, t).expect("first").done(false);
        tallies.reserve("a", None, t).expect("second").done(false);
        // Two failures the entry does not show still count; a third bind may go...
        let third = tallies.reserve("a", None, t).expect("2 + 2 < 5");
        // ...and while it is under way nothing more may.
        assert_eq!(tallies.reserve("a", None, t).err(), Some(3));
        third.done(false);
        assert_eq!(
            tallies.reserve("a", Some(1), t).err(),
            Some(3),
            "ours outweigh the record"
        );
        assert_eq!(
            tallies.reserve("a", Some(4), t).err(),
            Some(4),
            "the person's own count"
        );
        // Seen on the entry before and gone now: the directory cleared them.
        tallies.reserve("a", None, t).expect("cleared").done(true);
        assert_eq!(
            tallies.len(),
            0,
            "nothing kept for an account with nothing counted"
        );
        assert_eq!(tallies.reserve("b", None, Some(2)).err(), Some(0));
        assert_eq!(tallies.len(), 0);
    }

    #[test]
    fn a_bind_abandoned_mid_way_counts_as_a_failure() {
        let tallies = Tallies::default();
        drop(tallies.reserve("a", None, Some(3)).expect("reserved"));
        assert_eq!(tallies.reserve("a", None, Some(3)).err(), Some(1));
    }
}
