//! Input nodes: the gather the engine emits for the node the call waits at, and what the
//! caller's digits (or silence) do there: `menu` and `gather` here, the verifications and the
//! new secret in their own modules.
//!
//! Invariant: a node counts its attempts and takes its exhausted outcome (`no_input`,
//! `no_match`, `failed`) after the last one; digits outside the accepted count or not keypad
//! digits are a no-match; a `secret: true` gather keeps its digits only for this step (never
//! in the session).

use std::collections::HashMap;
use std::time::Duration;

use resetline_audit::Factor;
use resetline_flow::Flow;
use resetline_flow::model::{Digits, Gather, Kind, Menu, Node, Prompt};

use super::pin::PIN_LOCK;
use super::{Engine, Flowing};
use crate::action::Action;
use crate::secret::Secret;
use crate::session::{Session, Var, Waiting};
use crate::step_url::{StepEvent, step_url};

impl Engine {
    /// Entering an input node: asks (the gather) and waits for the caller. A `pin.verify` of
    /// a locked-out account is refused before anything is asked.
    pub(super) async fn ask<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        if let Kind::PinVerify(p) = &node.kind {
            let account = s
                .lookup(&[p.account.value.clone(), "id".into()])
                .unwrap_or_default();
            if let Err(refusal) = self
                .locked_out(s, &account, PIN_LOCK, Factor::Pin, "locked_out")
                .await
            {
                return refusal;
            }
        }
        s.waiting_since_ms = None;
        self.prompt_input(flow, s, node, false, out);
        Flowing::Wait
    }

    /// Emits the gather for the current input node. `confirm` asks for the second entry of a
    /// new secret.
    pub(super) fn prompt_input(
        &self,
        flow: &Flow,
        s: &mut Session,
        node: &Node,
        confirm: bool,
        out: &mut Vec<Action>,
    ) {
        let Some(Listen {
            prompt,
            digits,
            finish_on,
            first,
            inter,
        }) = listen(flow, node, confirm)
        else {
            return;
        };
        let mut prompts: Vec<Action> = std::mem::take(out);
        if let Some(p) = prompt {
            self.say(flow, s, p, &mut prompts);
        }
        let extra = first.saturating_sub(inter).as_secs();
        if extra > 0 {
            prompts.push(Action::Pause {
                seconds: u32::try_from(extra).unwrap_or(u32::MAX),
            });
        }
        let fixed = (digits.min == digits.max).then_some(digits.max);
        out.push(Action::Gather {
            num_digits: fixed,
            finish_on: if fixed.is_some()
                && finish_on == Some('#')
                && matches!(node.kind, Kind::Menu(_))
            {
                None
            } else {
                finish_on
            },
            timeout_s: u32::try_from(inter.as_secs().max(1)).unwrap_or(u32::MAX),
            action: step_url(flow, s.token, StepEvent::Digits),
            prompts,
        });
        out.push(Action::Redirect {
            url: step_url(flow, s.token, StepEvent::Timeout),
        });
        s.waiting = if confirm {
            Waiting::Confirm
        } else {
            Waiting::Digits
        };
    }

    /// Handles input (or its absence) at the current node.
    pub(super) async fn input<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        digits: Option<Secret>,
        out: &mut Vec<Action>,
        secrets: &mut HashMap<String, Secret>,
    ) -> Flowing<'f> {
        let Some(node) = flow.node(&s.node) else {
            return Flowing::End;
        };
        let digits = digits.filter(|d| !d.is_empty());
        if s.waiting == Waiting::Nothing || s.waiting == Waiting::Transfer {
            return Flowing::Wait;
        }
        match &node.kind {
            Kind::Menu(m) => self.menu_input(flow, s, node, m, digits, out),
            Kind::Gather(g) => {
                let d = match self.gathered(flow, s, node, g, digits, out) {
                    Ok(d) => d,
                    Err(retried) => return retried,
                };
                if g.secret {
                    secrets.insert(g.into.value.clone(), d);
                } else {
                    s.vars
                        .insert(g.into.value.clone(), Var::Text(d.expose().to_string()));
                }
                node.next
                    .as_ref()
                    .map_or(Flowing::Outcome("no_match"), |n| Flowing::Goto(&n.value))
            }
            Kind::PinVerify(p) => self.pin_input(flow, s, node, p, digits, out).await,
            Kind::SetSecret(x) => self.new_secret(flow, s, node, x, digits, out).await,
            Kind::CodeVerify(v) => self.code_input(flow, s, node, v, digits, out).await,
            _ => Flowing::Wait,
        }
    }

    /// A failed attempt at the input node `node`: says `say` and asks again, or takes the
    /// outcome `exhausted` once the node's `attempts` are used up.
    pub(super) fn retry<'f>(
        &self,
        flow: &Flow,
        s: &mut Session,
        node: &Node,
        out: &mut Vec<Action>,
        say: Reprompt<'_>,
        (attempts, exhausted): (u32, &'static str),
    ) -> Flowing<'f> {
        s.attempts += 1;
        match say {
            Reprompt::Prompt(Some(p)) => self.say(flow, s, p, out),
            Reprompt::Prompt(None) => {}
            Reprompt::Key(key) => self.say_key(flow, s, key, out),
        }
        if s.attempts >= attempts {
            return Flowing::Outcome(exhausted);
        }
        self.prompt_input(flow, s, node, false, out);
        Flowing::Wait
    }

    /// A key at a `menu`: the key's locale and variables, then its target (or the node's
    /// `next`); silence or an unknown key asks again.
    fn menu_input<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        m: &'f Menu,
        digits: Option<Secret>,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let Some(d) = digits else {
            let say = Reprompt::Prompt(m.no_input_say.as_ref());
            return self.retry(flow, s, node, out, say, (m.attempts, "no_input"));
        };
        let key = d.expose().chars().next();
        let Some(k) = m.keys.iter().find(|k| Some(k.key.value) == key) else {
            let say = Reprompt::Prompt(m.no_match_say.as_ref());
            return self.retry(flow, s, node, out, say, (m.attempts, "no_match"));
        };
        if let Some(l) = &k.locale {
            s.locale = l.value.clone();
        }
        for (name, t) in &k.set {
            if let Ok(v) = self.render_text(s, &t.value) {
                s.vars.insert(name.value.clone(), Var::Text(v));
            }
        }
        match k.next.as_ref().or(node.next.as_ref()) {
            Some(n) => Flowing::Goto(&n.value),
            None => Flowing::Outcome("no_match"),
        }
    }

    /// Digits at a `gather`: accepted when they fit its count; silence or a wrong count asks
    /// again (`Err`: the retry's move).
    fn gathered<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        g: &'f Gather,
        digits: Option<Secret>,
        out: &mut Vec<Action>,
    ) -> Result<Secret, Flowing<'f>> {
        let Some(d) = digits else {
            let say = Reprompt::Prompt(g.no_input_say.as_ref());
            return Err(self.retry(flow, s, node, out, say, (g.attempts, "no_input")));
        };
        if !fits(&d, g.digits) {
            let say = Reprompt::Prompt(g.no_match_say.as_ref());
            return Err(self.retry(flow, s, node, out, say, (g.attempts, "no_match")));
        }
        Ok(d)
    }
}

/// What an input node says before it asks again.
pub(super) enum Reprompt<'a> {
    /// The node's own prompt for the case, if it has one.
    Prompt(Option<&'a Prompt>),
    /// An engine prompt (the spoken reason for a refusal).
    Key(&'a str),
}

/// How an input node listens: its prompt, the digits it takes, the key that ends entry, and
/// the silence allowed before the first digit and between digits.
struct Listen<'f> {
    prompt: Option<&'f Prompt>,
    digits: Digits,
    finish_on: Option<char>,
    first: Duration,
    inter: Duration,
}

/// How `node` listens (`confirm`: for the second entry of a new secret); `None` for a node
/// that takes no input.
fn listen<'f>(flow: &'f Flow, node: &'f Node, confirm: bool) -> Option<Listen<'f>> {
    let make = |prompt, digits, finish_on, first, inter| Listen {
        prompt,
        digits,
        finish_on,
        first,
        inter,
    };
    Some(match &node.kind {
        Kind::Menu(m) => make(
            Some(&m.say),
            Digits { min: 1, max: 1 },
            None,
            m.timeout,
            m.timeout,
        ),
        Kind::Gather(g) => make(
            Some(&g.say),
            g.digits,
            g.finish_on,
            g.first_digit_timeout,
            g.inter_digit_timeout,
        ),
        Kind::PinVerify(p) => make(
            Some(&p.say),
            p.digits,
            p.finish_on,
            p.first_digit_timeout,
            p.inter_digit_timeout,
        ),
        Kind::CodeVerify(v) => {
            let length = match flow.node(&v.from.value).map(|n| &n.kind) {
                Some(Kind::CodeSend(c)) => c.length,
                _ => 6,
            };
            make(
                Some(&v.say),
                Digits {
                    min: length,
                    max: length,
                },
                Some('#'),
                v.first_digit_timeout,
                v.inter_digit_timeout,
            )
        }
        Kind::SetSecret(x) => {
            let max = flow.policy(&x.policy.value).map_or(64, |p| p.max_length);
            let prompt = if confirm {
                x.confirm.as_ref()
            } else {
                x.say.as_ref()
            };
            make(
                prompt,
                Digits { min: 1, max },
                Some('#'),
                Duration::from_secs(8),
                Duration::from_secs(4),
            )
        }
        _ => return None,
    })
}

/// Digits within the accepted count, all keypad digits.
pub(super) fn fits(d: &Secret, digits: Digits) -> bool {
    let s = d.expose();
    let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
    n >= digits.min && n <= digits.max && s.bytes().all(|b| b.is_ascii_digit())
}
