//! The body of each node kind, from its mapping (or list, or prompt) to the model: one
//! function per kind, the verifications and the new secret in `verify.rs`.
//!
//! Invariant: a field the file omits, or gives a value that is refused, takes the default the
//! vocabulary table (`spec.rs`) gives it (`defaults.rs`); a required field that is missing
//! leaves the node unloaded (reported, and its id kept so edges to it are not reported again).

use super::{Fields, Loader};
use crate::diagnostic::{Code, Diagnostic};
use crate::model::*;
use crate::span::{Span, Spanned};
use crate::spec::{Field, KindSpec, Ty};
use crate::template::{Template, is_identifier};
use crate::yaml::Node as Y;

impl Loader<'_> {
    /// The body of node `id`'s action `key` (kind `spec`) as the model's kind; `None` when it
    /// cannot be loaded (reported). `section`, `out` and `index` are for a `secure` section's
    /// own nodes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn kind(
        &mut self,
        spec: &KindSpec,
        id: &Spanned<String>,
        key: &Y,
        body: &Y,
        section: Option<&str>,
        out: &mut Vec<Node>,
        index: &mut NodeIndex,
    ) -> Option<Kind> {
        let what = format!("`{}` of node `{}`", spec.name, id.value);
        let owner = key.span;
        match spec.name {
            "say" => return Some(Kind::Say(self.prompt(body, &what)?)),
            "set" => return self.set(body, &what, owner).map(Kind::Set),
            "branch" => return self.branch(spec, body, &what).map(Kind::Branch),
            _ => {}
        }
        let f = self.fields(body, spec.fields(), &what, owner)?;
        Some(match spec.name {
            "menu" => Kind::Menu(self.menu(&f)?),
            "gather" => Kind::Gather(self.gather(&f)?),
            "directory.find" => Kind::DirectoryFind(self.directory_find(&f)?),
            "code.send" => Kind::CodeSend(self.code_send(&f)?),
            "code.verify" => Kind::CodeVerify(self.code_verify(&f)?),
            "pin.verify" => Kind::PinVerify(self.pin_verify(&f)?),
            "set_secret" => Kind::SetSecret(self.set_secret(id, &f)?),
            "secure" => Kind::Secure(self.secure(id, &f, section, out, index)?),
            "http" => Kind::Http(self.http(&f)?),
            "ticket" => Kind::Ticket(self.ticket(&f)?),
            "notify" => Kind::Notify(self.notify(&f)?),
            "transfer" => Kind::Transfer(self.transfer(id, &f)?),
            "hangup" => Kind::Hangup(self.hangup(&f)),
            _ => return None,
        })
    }

    /// Prompt field `name` of `f`, when written (and readable).
    pub(super) fn prompt_field(&mut self, f: &Fields<'_>, name: &str) -> Option<Prompt> {
        f.get(name)
            .and_then(|n| self.prompt(n, &format!("`{name}`")))
    }

    /// `set`: variable names to templates.
    fn set(
        &mut self,
        body: &Y,
        what: &str,
        owner: Span,
    ) -> Option<Vec<(Spanned<String>, Spanned<Template>)>> {
        if body.as_map().is_none() {
            self.error(
                Code::WrongType,
                body.span,
                format!(
                    "{what} must be a mapping of variable names to templates, found {}",
                    body.shape()
                ),
            );
            return None;
        }
        Some(self.template_map(body, what, owner))
    }

    /// `branch`: a list of `{ when, next }` cases; a case that cannot be read is left out.
    fn branch(&mut self, spec: &KindSpec, body: &Y, what: &str) -> Option<Vec<Case>> {
        let Some(items) = body.as_seq() else {
            self.error(
                Code::WrongType,
                body.span,
                format!(
                    "{what} must be a list of `{{ when, next }}` cases, found {}",
                    body.shape()
                ),
            );
            return None;
        };
        let case_fields = match &spec.body {
            Ty::ListOf(Ty::Object(f)) => *f,
            _ => &[],
        };
        let mut cases = Vec::new();
        for item in items {
            if let Some(case) = self.case(case_fields, item).ok()? {
                cases.push(case);
            }
        }
        Some(cases)
    }

    /// One `branch` case: `var` and exactly one test, and where the call goes. `Ok(None)`: a
    /// case left out (reported); `Err`: a test whose value cannot be read, which leaves the
    /// whole node unloaded.
    fn case(&mut self, case_fields: &'static [Field], item: &Y) -> Result<Option<Case>, ()> {
        let Some(cf) = self.fields(item, case_fields, "a branch case", item.span) else {
            return Ok(None);
        };
        let next = cf.get("next").and_then(|n| self.ident(n, "`next`"));
        let Some(when) = cf.get("when") else {
            return Ok(None);
        };
        let cond_fields = cf.field("when").map_or(&[][..], Field::object);
        let owner = cf.key_span("when").unwrap_or(item.span);
        let Some(w) = self.fields(when, cond_fields, "`when`", owner) else {
            return Ok(None);
        };
        let var = w.get("var").and_then(|n| self.path(n, "`var`"));
        let tests: Vec<&str> = ["equals", "not_equals", "in", "not_in", "exists"]
            .into_iter()
            .filter(|t| w.get(t).is_some())
            .collect();
        if tests.len() != 1 {
            self.error(Code::InvalidValue, w.owner, format!("`when` needs exactly one test of equals, not_equals, in, not_in, exists; found {}", tests.len()));
            return Ok(None);
        }
        let test = w
            .get(tests[0])
            .and_then(|n| self.test(tests[0], n))
            .ok_or(())?;
        Ok(var.zip(next).map(|(var, next)| Case { var, test, next }))
    }

    /// The test `t` of a branch case, with its value `n`.
    fn test(&mut self, t: &str, n: &Y) -> Option<Test> {
        let list = |l: &mut Self, n: &Y| -> Option<Vec<String>> {
            match n.as_seq() {
                Some(items) => Some(
                    items
                        .iter()
                        .filter_map(|i| l.string(i, "a value"))
                        .map(|s| s.value)
                        .collect(),
                ),
                None => {
                    l.error(
                        Code::WrongType,
                        n.span,
                        format!("expected a list, found {}", n.shape()),
                    );
                    None
                }
            }
        };
        Some(match t {
            "equals" => Test::Equals(self.string(n, "`equals`")?.value),
            "not_equals" => Test::NotEquals(self.string(n, "`not_equals`")?.value),
            "in" => Test::In(list(self, n)?),
            "not_in" => Test::NotIn(list(self, n)?),
            _ => Test::Exists(self.boolean(n, "`exists`")?),
        })
    }

    /// `menu`: its prompt and keys, attempts and timeout.
    fn menu(&mut self, f: &Fields<'_>) -> Option<Menu> {
        let say = self.prompt_field(f, "say");
        let keys = self.menu_keys(f);
        Some(Menu {
            say: say?,
            keys,
            attempts: self.int_or_default(f, "attempts").value,
            timeout: self.duration_or_default(f, "timeout").value,
            no_input_say: self.prompt_field(f, "no_input_say"),
            no_match_say: self.prompt_field(f, "no_match_say"),
        })
    }

    /// A menu's `keys`: each a target node, or `{ next, locale, set }`.
    fn menu_keys(&mut self, f: &Fields<'_>) -> Vec<MenuKey> {
        let mut keys = Vec::new();
        let owner = f.key_span("keys").unwrap_or(f.owner);
        let key_fields = match f.field("keys").map(|x| &x.ty) {
            Some(Ty::MapOf(_, Ty::OneOf([_, Ty::Object(o)]))) => *o,
            _ => &[],
        };
        for (_, k, v) in self.free_map(f, "keys") {
            let Some(key) = self.key(k, "a menu key") else {
                continue;
            };
            if v.as_map().is_some() {
                let Some(mf) = self.fields(v, key_fields, "a menu key", k.span) else {
                    continue;
                };
                let next = mf.get("next").and_then(|n| self.ident(n, "`next`"));
                let locale = mf.get("locale").and_then(|n| self.locale(n, "`locale`"));
                let set = mf
                    .get("set")
                    .map(|s| self.template_map(s, "`set`", mf.key_span("set").unwrap_or(k.span)))
                    .unwrap_or_default();
                keys.push(MenuKey {
                    key,
                    next,
                    locale,
                    set,
                });
            } else if let Some(next) = self.ident(v, "a menu key's target") {
                keys.push(MenuKey {
                    key,
                    next: Some(next),
                    locale: None,
                    set: Vec::new(),
                });
            }
        }
        if keys.is_empty() && f.get("keys").is_some() {
            self.error(Code::InvalidValue, owner, "a menu needs at least one key");
        }
        keys
    }

    /// `gather`: digits into a variable (kept only for the step when `secret`).
    fn gather(&mut self, f: &Fields<'_>) -> Option<Gather> {
        let say = self.prompt_field(f, "say");
        let digits = f.get("digits").and_then(|n| self.digits(n, "`digits`"));
        let into = f.get("into").and_then(|n| self.ident(n, "`into`"));
        let finish_on = self.finish_on(f);
        let secret = self.bool_or_default(f, "secret");
        Some(Gather {
            say: say?,
            digits: digits?,
            into: into?,
            finish_on,
            first_digit_timeout: self.duration_or_default(f, "first_digit_timeout").value,
            inter_digit_timeout: self.duration_or_default(f, "inter_digit_timeout").value,
            attempts: self.int_or_default(f, "attempts").value,
            secret,
            no_input_say: self.prompt_field(f, "no_input_say"),
            no_match_say: self.prompt_field(f, "no_match_say"),
        })
    }

    /// `directory.find`: which attribute, the value to look for, and the record's variable.
    fn directory_find(&mut self, f: &Fields<'_>) -> Option<DirectoryFind> {
        let by = self.word(f, "by");
        let value = f.get("value").and_then(|n| self.template(n, "`value`"));
        let into = self.ident_or_default(f, "into");
        let by = match by?.value.as_str() {
            "employee_id" => LookupBy::EmployeeId,
            "username" => LookupBy::Username,
            "phone" => LookupBy::Phone,
            _ => LookupBy::Email,
        };
        Some(DirectoryFind {
            by,
            value: value?,
            into,
        })
    }

    /// `secure`: its first node and its own nodes (loaded into the flow's, marked with the
    /// section); never inside another section.
    fn secure(
        &mut self,
        id: &Spanned<String>,
        f: &Fields<'_>,
        section: Option<&str>,
        out: &mut Vec<Node>,
        index: &mut NodeIndex,
    ) -> Option<Secure> {
        let owner = f.owner;
        if let Some(outer) = section {
            let d = Diagnostic::new(
                Code::SecureBoundary,
                self.file,
                owner,
                format!(
                    "secure section `{}` is nested inside secure section `{outer}`",
                    id.value
                ),
            )
            .note("one secure section covers the whole stretch; join them");
            self.push(d);
            return None;
        }
        let start = f.get("start").and_then(|n| self.ident(n, "`start`"));
        let nodes = match f.get("nodes") {
            Some(n) => self.nodes(
                n,
                f.key_span("nodes").unwrap_or(owner),
                Some(&id.value),
                out,
                index,
            ),
            None => Vec::new(),
        };
        Some(Secure {
            start: start?,
            nodes,
        })
    }

    /// `http`: method, URL, headers, JSON body (and which of its leaves may carry a secret),
    /// the response mapping, time budget, retries and signing.
    fn http(&mut self, f: &Fields<'_>) -> Option<Http> {
        let method = self.word_or_default(f, "method");
        let url = f.get("url").and_then(|n| self.template(n, "`url`"));
        let headers = self.headers(f);
        let body = f.get("body").map(|b| self.json(b));
        let secrets = self.secret_pointers(f);
        let map = self.response_map(f);
        let sign = self.sign(f);
        Some(Http {
            method,
            url: url?,
            headers,
            body,
            secrets,
            map,
            timeout: self.duration_or_default(f, "timeout").value,
            retries: self.int_or_default(f, "retries").value,
            sign,
        })
    }

    /// An `http` node's `headers`: name to template.
    fn headers(&mut self, f: &Fields<'_>) -> Vec<(String, Spanned<Template>)> {
        self.free_map(f, "headers")
            .into_iter()
            .filter_map(|(name, _, v)| {
                self.template(v, &format!("header `{name}`"))
                    .map(|t| (name.to_string(), t))
            })
            .collect()
    }

    /// An `http` node's `secrets`: the JSON pointers of body leaves that may carry a secret.
    fn secret_pointers(&mut self, f: &Fields<'_>) -> Vec<Spanned<String>> {
        let secrets = match f.get("secrets") {
            None => Vec::new(),
            Some(s) => match s.as_seq() {
                Some(items) => items
                    .iter()
                    .filter_map(|i| self.string(i, "a JSON pointer"))
                    .collect(),
                None => {
                    self.error(
                        Code::WrongType,
                        s.span,
                        format!(
                            "`secrets` must be a list of JSON pointers, found {}",
                            s.shape()
                        ),
                    );
                    Vec::new()
                }
            },
        };
        for p in &secrets {
            if !p.value.starts_with('/') {
                self.error(
                    Code::InvalidValue,
                    p.span,
                    format!(
                        "`{}` is not a JSON pointer; write e.g. `/password`",
                        p.value
                    ),
                );
            }
        }
        secrets
    }

    /// An `http` node's `map`: variables set from the response, by JSON pointer.
    fn response_map(&mut self, f: &Fields<'_>) -> Vec<(Spanned<String>, String)> {
        self.free_map(f, "map")
            .into_iter()
            .filter_map(|(name, k, v)| {
                if !is_identifier(name) {
                    self.error(
                        Code::InvalidValue,
                        k.span,
                        format!("`{name}` is not a variable name"),
                    );
                    return None;
                }
                let p = self.string(v, "a JSON pointer")?;
                if !p.value.is_empty() && !p.value.starts_with('/') {
                    self.error(
                        Code::InvalidValue,
                        p.span,
                        format!(
                            "`{}` is not a JSON pointer; write e.g. `/result/id`",
                            p.value
                        ),
                    );
                    return None;
                }
                Some((Spanned::new(name.to_string(), k.span), p.value))
            })
            .collect()
    }

    /// An `http` node's `sign`: the environment variable of the token, and the header.
    fn sign(&mut self, f: &Fields<'_>) -> Option<(String, String)> {
        let s = f.get("sign")?;
        let fields = f.field("sign").map_or(&[][..], Field::object);
        let owner = f.key_span("sign").unwrap_or(f.owner);
        let sf = self.fields(s, fields, "`sign`", owner)?;
        let env = self.string(sf.get("token_env")?, "`token_env`")?.value;
        let header = self.string_or_default(&sf, "header");
        Some((env, header))
    }

    /// `ticket`: open (or open and close) one, and the variable of its number.
    fn ticket(&mut self, f: &Fields<'_>) -> Option<Ticket> {
        let close = self.word_or_default(f, "action") == "open_and_close";
        let summary = f.get("summary").and_then(|n| self.template(n, "`summary`"));
        Some(Ticket {
            close,
            summary: summary?,
            details: f.get("details").and_then(|n| self.template(n, "`details`")),
            category: f
                .get("category")
                .and_then(|n| self.string(n, "`category`"))
                .map(|s| s.value),
            into: self.ident_or_default(f, "into"),
            say: self.prompt_field(f, "say"),
        })
    }

    /// `notify`: a message (from the catalog) to a record's phone or email.
    fn notify(&mut self, f: &Fields<'_>) -> Option<Notify> {
        let ch = self.channel(f);
        let to = f.get("to").and_then(|n| self.path(n, "`to`"));
        let message = self.prompt_field(f, "message");
        Some(Notify {
            channel: ch?,
            to: to?,
            message: message?,
        })
    }

    /// `channel` of `f`: how a code, notification or password travels.
    pub(super) fn channel(&mut self, f: &Fields<'_>) -> Option<Channel> {
        let c = self.word(f, "channel")?;
        Some(if c.value == "sms" {
            Channel::Sms
        } else {
            Channel::Email
        })
    }

    /// `transfer`: to a queue (Twilio `<Enqueue>` names) or an E.164 number, not both.
    fn transfer(&mut self, id: &Spanned<String>, f: &Fields<'_>) -> Option<Transfer> {
        let queue = f.get("queue").and_then(|n| self.string(n, "`queue`"));
        let number = f.get("number").and_then(|n| self.string(n, "`number`"));
        let to = match (queue, number) {
            (Some(q), None) => {
                if q.value.chars().count() > 64 || q.value.is_empty() {
                    self.error(
                        Code::InvalidValue,
                        q.span,
                        "a queue name has 1 to 64 characters (Twilio `<Enqueue>`)",
                    );
                }
                TransferTo::Queue(q.value)
            }
            (None, Some(n)) => {
                let ok = n.value.starts_with('+')
                    && n.value.len() >= 8
                    && n.value.len() <= 16
                    && n.value[1..].chars().all(|c| c.is_ascii_digit());
                if !ok {
                    self.error(
                        Code::InvalidValue,
                        n.span,
                        format!(
                            "`{}` is not an E.164 number such as `+15551230000`",
                            n.value
                        ),
                    );
                }
                TransferTo::Number(n.value)
            }
            (Some(_), Some(n)) => {
                self.error(
                    Code::InvalidValue,
                    n.span,
                    "`transfer` takes `queue` or `number`, not both",
                );
                return None;
            }
            (None, None) => {
                self.error(
                    Code::MissingField,
                    f.owner,
                    format!(
                        "`transfer` of node `{}` needs `queue` or `number`",
                        id.value
                    ),
                );
                return None;
            }
        };
        Some(Transfer {
            say: self.prompt_field(f, "say"),
            to,
            wait: f
                .get("wait")
                .and_then(|n| self.string(n, "`wait`"))
                .map(|s| s.value),
        })
    }

    /// `hangup`: a goodbye and the call's outcome for the audit trail.
    fn hangup(&mut self, f: &Fields<'_>) -> Hangup {
        Hangup {
            say: self.prompt_field(f, "say"),
            outcome: f
                .get("outcome")
                .and_then(|n| self.ident(n, "`outcome`"))
                .map(|s| s.value),
        }
    }
}
