//! The kinds that verify a caller or change a credential: `code.send`, `code.verify` (with
//! its comfort loop), `pin.verify` and `set_secret`.
//!
//! Invariant: as for every kind (`kinds.rs`), omitted or refused fields take the vocabulary
//! table's default and bounds; besides, a one-time code shorter than the table's minimum is
//! its own error (`CodeTooShort`), and `set_secret` names what its mode needs.

use super::defaults::default_int;
use super::{Fields, Loader};
use crate::diagnostic::{Code, Diagnostic};
use crate::model::*;
use crate::span::Spanned;
use crate::spec::Field;
use crate::yaml::Node as Y;

impl Loader<'_> {
    /// `code.send`: channel, destination of record, length, lifetime, resends and cooldown.
    pub(super) fn code_send(&mut self, f: &Fields<'_>) -> Option<CodeSend> {
        let ch = self.channel(f);
        let to = f.get("to").and_then(|n| self.path(n, "`to`"));
        let ttl = self.duration_or_default(f, "ttl");
        let length = self.code_length(f);
        Some(CodeSend {
            channel: ch?,
            to: to?,
            length,
            ttl,
            resends: self.int_or_default(f, "resends").value,
            cooldown: self.duration_or_default(f, "cooldown").value,
            say: self.prompt_field(f, "say"),
        })
    }

    /// A code's `length`: one below the table's minimum is too short to be safe (its own
    /// error), one above its maximum or not a number is invalid; both leave the default.
    fn code_length(&mut self, f: &Fields<'_>) -> u32 {
        let (min, max) = f
            .field("length")
            .and_then(Field::bounds)
            .unwrap_or_default();
        let default = default_int(f, "length").map_or(0, |d| d.value);
        let Some(n) = f.get("length") else {
            return default;
        };
        let Some(s) = self.scalar_plain(n, "`length`", "a whole number") else {
            return default;
        };
        match s.value.parse::<u32>() {
            Ok(v) if v < min => {
                let d = Diagnostic::new(
                    Code::CodeTooShort,
                    self.file,
                    s.span,
                    format!("a one-time code of {v} digits is too short"),
                )
                .label(format!("at least {min}"))
                .note(
                    "NIST SP 800-63B 5.1.3.2 and OWASP ASVS 6.5.3 ask for at least 6 random digits",
                );
                self.push(d);
                default
            }
            Ok(v) if v <= max => v,
            _ => {
                self.error(
                    Code::InvalidValue,
                    s.span,
                    format!(
                        "`length` must be a whole number from {min} to {max}, found `{}`",
                        s.value
                    ),
                );
                default
            }
        }
    }

    /// `code.verify`: the `code.send` it checks, its prompt, attempts, timeouts and comfort
    /// loop.
    pub(super) fn code_verify(&mut self, f: &Fields<'_>) -> Option<CodeVerify> {
        let from = f.get("from").and_then(|n| self.ident(n, "`from`"));
        let say = self.prompt_field(f, "say");
        let wait = match f.get("wait") {
            None => None,
            Some(wn) => self.wait(wn, f),
        };
        Some(CodeVerify {
            from: from?,
            say: say?,
            attempts: self.int_or_default(f, "attempts").value,
            first_digit_timeout: self.duration_or_default(f, "first_digit_timeout").value,
            inter_digit_timeout: self.duration_or_default(f, "inter_digit_timeout").value,
            wait,
        })
    }

    /// A `code.verify`'s `wait` (the comfort loop, field of `f`): hold, key menu, keys, and
    /// when to give up.
    fn wait(&mut self, node: &Y, f: &Fields<'_>) -> Option<Wait> {
        let fields = f.field("wait").map_or(&[][..], Field::object);
        let owner = f.key_span("wait").unwrap_or(f.owner);
        let wf = self.fields(node, fields, "`wait`", owner)?;
        let hold = wf.get("hold").and_then(|n| self.prompt(n, "`hold`"));
        let menu = wf.get("menu").and_then(|n| self.prompt(n, "`menu`"));
        let hold_for = self.duration_or_default(&wf, "hold_for").value;
        let give_up_after = self.duration_or_default(&wf, "give_up_after").value;
        let keys = self.wait_keys(&wf);
        Some(Wait {
            hold: hold?,
            hold_for,
            menu: menu?,
            keys,
            give_up_after,
        })
    }

    /// A comfort loop's `keys`: `enter`, `resend`, or a target node each; one must `enter`.
    fn wait_keys(&mut self, wf: &Fields<'_>) -> Vec<(Spanned<char>, WaitKey)> {
        let mut keys = Vec::new();
        let owner = wf.key_span("keys").unwrap_or(wf.owner);
        for (_, k, v) in self.free_map(wf, "keys") {
            let Some(key) = self.key(k, "a wait key") else {
                continue;
            };
            let Some(t) = self.ident(v, "a wait key's action") else {
                continue;
            };
            let action = match t.value.as_str() {
                "enter" => WaitKey::Enter,
                "resend" => WaitKey::Resend,
                _ => WaitKey::Goto(t),
            };
            keys.push((key, action));
        }
        if !keys.iter().any(|(_, a)| *a == WaitKey::Enter) && wf.get("keys").is_some() {
            self.error(Code::InvalidValue, owner, "the comfort loop needs a key that does `enter`, or callers holding the code cannot type it");
        }
        keys
    }

    /// `pin.verify`: its prompt, the record whose PIN is checked, accepted lengths, attempts
    /// and timeouts.
    pub(super) fn pin_verify(&mut self, f: &Fields<'_>) -> Option<PinVerify> {
        let say = self.prompt_field(f, "say");
        let digits = self.digits_or_default(f, "digits");
        Some(PinVerify {
            say: say?,
            account: self.path_or_default(f, "account"),
            digits,
            finish_on: self.finish_on(f),
            attempts: self.int_or_default(f, "attempts").value,
            first_digit_timeout: self.duration_or_default(f, "first_digit_timeout").value,
            inter_digit_timeout: self.duration_or_default(f, "inter_digit_timeout").value,
        })
    }

    /// `set_secret` of node `id`: its policy and record, and what its mode needs (prompts
    /// for `entered`, a destination for `generated`).
    pub(super) fn set_secret(&mut self, id: &Spanned<String>, f: &Fields<'_>) -> Option<SetSecret> {
        let policy = f.get("policy").and_then(|n| self.ident(n, "`policy`"));
        let mode = match self.word_or_default(f, "mode").as_str() {
            "generated" => SecretMode::Generated,
            _ => SecretMode::Entered,
        };
        let say = self.prompt_field(f, "say");
        let confirm = self.prompt_field(f, "confirm");
        let deliver = match f.get("deliver") {
            None => None,
            Some(dn) => self.deliver(dn, f),
        };
        if mode == SecretMode::Entered {
            for (name, p) in [("say", &say), ("confirm", &confirm)] {
                if p.is_none() && f.get(name).is_none() {
                    self.error(
                        Code::MissingField,
                        f.owner,
                        format!(
                            "`set_secret` in mode `entered` needs `{name}` (node `{}`)",
                            id.value
                        ),
                    );
                }
            }
        } else if deliver.is_none() && f.get("deliver").is_none() {
            self.error(
                Code::MissingField,
                f.owner,
                format!(
                    "`set_secret` in mode `generated` needs `deliver` (node `{}`)",
                    id.value
                ),
            );
        }
        Some(SetSecret {
            policy: policy?,
            account: self.path_or_default(f, "account"),
            mode,
            say,
            confirm,
            attempts: self.int_or_default(f, "attempts").value,
            deliver,
        })
    }

    /// A generated password's `deliver` (field of `f`): channel and a record's field.
    fn deliver(&mut self, node: &Y, f: &Fields<'_>) -> Option<(Channel, Spanned<String>)> {
        let fields = f.field("deliver").map_or(&[][..], Field::object);
        let owner = f.key_span("deliver").unwrap_or(f.owner);
        let df = self.fields(node, fields, "`deliver`", owner)?;
        let ch = self.channel(&df);
        let to = df.get("to").and_then(|n| self.path(n, "`to`"));
        ch.zip(to)
    }
}
