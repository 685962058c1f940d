//! `set_secret`: a new PIN or password, entered twice and checked against the flow's policy,
//! or generated, delivered, and only then set.
//!
//! Invariants: the first entry is kept only as a keyed hash and compared in constant time; a
//! new secret reaches the directory in one place ([`Engine::apply_secret`]) and only for an
//! account verified `min_factors` times in this call (a check of A never sets B's secret),
//! after its intent is journaled; a generated password that could not be delivered is never
//! set; the directory's refusal text is scrubbed of the refused value and of digit runs before
//! it is logged.

use hmac::{Hmac, KeyInit, Mac};
use resetline_audit::{EventType as Ev, Outcome as Out};
use resetline_flow::Flow;
use resetline_flow::model::{Channel, Node, SetSecret};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::drive::onward_or_error;
use super::input::Reprompt;
use super::{Engine, Flowing, journal, path_of};
use crate::action::Action;
use crate::backend::{OutgoingMessage, SetSecretError};
use crate::policy::{self, Personal};
use crate::secret::{Secret, scrub_digits};
use crate::session::{Session, Var, Waiting};

impl Engine {
    /// `set_secret` in `generated` mode (seed 001): a strong password is generated, delivered
    /// to the record's phone or email first, and only then set at the directory. If delivery
    /// fails nothing is changed, so there is never a credential nobody received to restore.
    pub(super) async fn generated_secret<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        x: &SetSecret,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let (Some(policy), Some((channel, to_path))) =
            (flow.policy(&x.policy.value), x.deliver.as_ref())
        else {
            return Flowing::Outcome("error");
        };
        let length = policy
            .min_length
            .value
            .max(12)
            .min(policy.max_length.max(12)) as usize;
        let Some(password) = generate_password(self.random.as_ref(), length) else {
            return Flowing::Outcome("error");
        };
        let account = s
            .lookup(&[x.account.value.clone(), "id".into()])
            .unwrap_or_default();
        if self.unverified(flow, s, node, &account) {
            return Flowing::Outcome("error");
        }
        let to = s.lookup(&path_of(&to_path.value)).unwrap_or_default();
        let message = self.password_message(flow, s, *channel, &to, &password);
        // One intent covers the delivery and the change that follows it.
        let planned = self
            .record(s, Ev::AuthnPasswordChange, Out::Intent)
            .with_reason("generated");
        let (intent, delivered) = if to.is_empty() {
            (None, false)
        } else {
            let (intent, sent) = self.send_recorded(s, planned, message).await;
            (Some(intent), sent.is_ok())
        };
        if !delivered {
            return self.not_delivered(flow, s, node, intent, out);
        }
        match self
            .apply_secret(flow, s, node, &account, &password, "generated", intent)
            .await
        {
            Applied::Set => onward_or_error(node),
            Applied::Refused(key) => {
                self.say_key(flow, s, &key, out);
                Flowing::Outcome("rejected")
            }
            Applied::Outcome(outcome) => Flowing::Outcome(outcome),
        }
    }

    /// The message carrying a generated password to `to`.
    fn password_message(
        &self,
        flow: &Flow,
        s: &Session,
        channel: Channel,
        to: &str,
        password: &Secret,
    ) -> OutgoingMessage {
        let body = self.engine_text(
            flow,
            s,
            "password_message",
            &[("password", password.expose())],
        );
        OutgoingMessage {
            channel,
            to: to.to_string(),
            subject: self.engine_text(flow, s, "password_email_subject", &[]),
            body: Secret::new(body),
            status_callback: None,
        }
    }

    /// A generated password that was not delivered (no destination, the send failed, or its
    /// intent was not recorded): nothing is changed, and the call takes `failed`.
    fn not_delivered<'f>(
        &self,
        flow: &Flow,
        s: &mut Session,
        node: &Node,
        intent: Option<journal::Intent>,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        tracing::info!(call = %s.call_sid, node = %node.id.value, "generated password not delivered; nothing changed");
        let (outcome, why) = match &intent {
            Some(i) if !i.recorded => (Out::Error, "audit_unavailable"),
            _ => (Out::Failure, "not_delivered"),
        };
        let r = self
            .record(s, Ev::AuthnPasswordChangeFail, outcome)
            .with_reason(why);
        s.pending_audit.push(match intent {
            Some(i) => i.names(r),
            None => r,
        });
        self.say_key(flow, s, "password_not_delivered", out);
        Flowing::Outcome("failed")
    }

    /// Sets `secret` at the directory for `account` within the step's time, after recording
    /// its intent (or under `intent`, recorded already), audits the result (success reason
    /// `reason`) and maps it: set, refused by the directory (with the prompt key that speaks
    /// why), or an outcome edge (`locked`, `error`). The one place a new secret reaches the
    /// directory.
    #[allow(clippy::too_many_arguments)] // the change, and the intent it may already have
    async fn apply_secret(
        &self,
        flow: &Flow,
        s: &mut Session,
        node: &Node,
        account: &str,
        secret: &Secret,
        reason: &str,
        intent: Option<journal::Intent>,
    ) -> Applied {
        if self.unverified(flow, s, node, account) {
            return Applied::Outcome("error");
        }
        let planned = self
            .record(s, Ev::AuthnPasswordChange, Out::Intent)
            .with_reason(reason);
        let (intent, result) = self.set_recorded(s, intent, planned, account, secret).await;
        let audit = |s: &mut Session, event, outcome, why: &str| {
            let r = intent.names(self.record(s, event, outcome).with_reason(why));
            s.pending_audit.push(r);
        };
        match result {
            Ok(()) => {
                tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "set", "new secret");
                audit(s, Ev::AuthnPasswordChange, Out::Success, reason);
                Applied::Set
            }
            Err(SetSecretError::Rejected { prompt, reason }) => {
                // The directory's own words; one that quotes the refused value must not put it
                // in the log (a generated password whole, a PIN or any digit run by `scrub_digits`).
                let reason = if secret.expose().is_empty() {
                    scrub_digits(&reason)
                } else {
                    scrub_digits(&reason.replace(secret.expose(), "***"))
                };
                tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "rejected", reason = %reason, "new secret");
                let r = self
                    .record(s, Ev::AuthnPasswordChangeFail, Out::Failure)
                    .with_reason("directory_rejected")
                    .with_detail("spoken", &prompt);
                s.pending_audit.push(intent.names(r));
                Applied::Refused(if self.has_prompt(flow, s, &prompt) {
                    prompt
                } else {
                    "policy_rejected".to_string()
                })
            }
            Err(SetSecretError::Locked) => {
                audit(s, Ev::AuthnPasswordChangeFail, Out::Failure, "locked");
                Applied::Outcome("locked")
            }
            Err(SetSecretError::Backend(e)) => {
                tracing::warn!(call = %s.call_sid, node = %node.id.value, error = %e, "setting the new secret failed");
                let why = match journal::backend_reason(&e) {
                    "timeout" => "timeout_outcome_unknown",
                    other => other,
                };
                audit(s, Ev::AuthnPasswordChangeFail, Out::Error, why);
                Applied::Outcome("error")
            }
        }
    }

    /// True (and audited) when the call has fewer than `min_factors` successful verifications
    /// of `account`: the checker proves every path has them, and this keeps it so at run time
    /// whatever the path (a check of A never lets the call set B's secret).
    fn unverified(&self, flow: &Flow, s: &mut Session, node: &Node, account: &str) -> bool {
        let have = s.verifications_of(account);
        if have >= flow.settings.min_factors.value {
            return false;
        }
        tracing::warn!(call = %s.call_sid, node = %node.id.value, verifications = have, "new secret refused: this account is not verified in this call");
        self.audit(s, Ev::AuthnPasswordChangeFail, Out::Failure, "not_verified");
        true
    }

    /// Digits at an entered `set_secret`: the first entry is checked against the policy and
    /// kept only as a keyed hash; the second must match it, and then the secret is set.
    pub(super) async fn new_secret<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        x: &SetSecret,
        digits: Option<Secret>,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let Some(policy) = flow.policy(&x.policy.value) else {
            return Flowing::Outcome("error");
        };
        let Some(d) = digits else {
            return self.refuse_secret(flow, s, node, out, "policy_too_short", x.attempts);
        };
        if s.waiting == Waiting::Confirm {
            return self.confirm_secret(flow, s, node, x, d, out).await;
        }
        let values = personal_values(s, x);
        let personal = Personal {
            values: values.iter().map(String::as_str).collect(),
        };
        if let Err(refusal) = policy::check(policy, &d, &personal) {
            tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "refused", rule = refusal.name(), "new secret");
            let r = self
                .record(s, Ev::AuthnPasswordChangeFail, Out::Failure)
                .with_reason("policy")
                .with_detail("rule", refusal.name());
            s.pending_audit.push(r);
            return self.refuse_secret(flow, s, node, out, refusal.prompt(), x.attempts);
        }
        s.pending_secret = Some(self.keyed_hash(&s.call_sid, &d));
        self.prompt_input(flow, s, node, true, out);
        Flowing::Wait
    }

    /// The second entry of a new secret: set when it matches the first (compared as keyed
    /// hashes, in constant time), refused otherwise.
    async fn confirm_secret<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        x: &SetSecret,
        d: Secret,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let Some(first) = s.pending_secret.clone() else {
            return self.refuse_secret(flow, s, node, out, "policy_mismatch", x.attempts);
        };
        let second = self.keyed_hash(&s.call_sid, &d);
        if !bool::from(first.as_bytes().ct_eq(second.as_bytes())) {
            tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "mismatch", "new secret");
            self.audit(s, Ev::AuthnPasswordChangeFail, Out::Failure, "mismatch");
            return self.refuse_secret(flow, s, node, out, "policy_mismatch", x.attempts);
        }
        let account = s
            .lookup(&[x.account.value.clone(), "id".into()])
            .unwrap_or_default();
        s.pending_secret = None;
        match self
            .apply_secret(flow, s, node, &account, &d, "set", None)
            .await
        {
            Applied::Set => onward_or_error(node),
            Applied::Refused(key) => {
                let say = Reprompt::Key(&key);
                self.retry(flow, s, node, out, say, (x.attempts, "rejected"))
            }
            Applied::Outcome(outcome) => Flowing::Outcome(outcome),
        }
    }

    /// A refused entry of a new secret: the first entry is forgotten, the reason (prompt
    /// `key`) spoken, and the caller asked again, or `failed` after `attempts` refusals.
    fn refuse_secret<'f>(
        &self,
        flow: &Flow,
        s: &mut Session,
        node: &Node,
        out: &mut Vec<Action>,
        key: &str,
        attempts: u32,
    ) -> Flowing<'f> {
        s.pending_secret = None;
        self.retry(flow, s, node, out, Reprompt::Key(key), (attempts, "failed"))
    }

    /// The keyed hash (hex HMAC-SHA256 under the hash key, bound to the call) of `secret`:
    /// all a session keeps of a first entry.
    fn keyed_hash(&self, call_sid: &str, secret: &Secret) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.hash_key.expose().as_bytes()) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(call_sid.as_bytes());
        mac.update(&[0]);
        mac.update(secret.expose().as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Characters of generated passwords: no look-alikes (0/O, 1/l/I), easy to read from a text.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A random password of `length` characters from the OS CSPRNG (rejection sampling, so every
/// character is uniform) with at least one upper-case letter, lower-case letter and digit.
fn generate_password(random: &dyn crate::clock::Random, length: usize) -> Option<Secret> {
    let n = PASSWORD_ALPHABET.len();
    let limit = 256 - 256 % n;
    for _ in 0..64 {
        let mut out = String::with_capacity(length);
        let mut buf = [0u8; 64];
        while out.len() < length {
            random.fill(&mut buf).ok()?;
            for &b in &buf {
                if usize::from(b) < limit && out.len() < length {
                    out.push(char::from(PASSWORD_ALPHABET[usize::from(b) % n]));
                }
            }
        }
        let ok = out.bytes().any(|c| c.is_ascii_uppercase())
            && out.bytes().any(|c| c.is_ascii_lowercase())
            && out.bytes().any(|c| c.is_ascii_digit());
        if ok {
            return Some(Secret::new(out));
        }
    }
    None
}

/// What setting a new secret at the directory came to.
enum Applied {
    /// The directory took it.
    Set,
    /// The directory refused it; the prompt key speaks why.
    Refused(String),
    /// Take this outcome edge.
    Outcome(&'static str),
}

/// What a new secret must not be made of: the account record's id, mobile and birth date (in
/// its usual written forms) and the caller's number.
fn personal_values(s: &Session, x: &SetSecret) -> Vec<String> {
    let record = s.vars.get(&x.account.value).cloned();
    let mut values: Vec<String> = Vec::new();
    if let Some(Var::Record(r)) = &record {
        values.extend(
            ["id", "mobile", "birth_date"]
                .iter()
                .filter_map(|f| r.get(*f).cloned()),
        );
        if let Some(b) = r.get("birth_date") {
            values.extend(policy::date_forms(b));
        }
    }
    values.push(s.caller.clone());
    values
}
