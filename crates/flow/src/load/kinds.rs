//! The body of each node kind, from its mapping (or list, or prompt) to the model.
//!
//! Invariant: a field the file omits, or gives a value out of its range, takes the default
//! the vocabulary table (`spec.rs`) gives it; a required field that is missing leaves the
//! node unloaded (reported, and its id kept so edges to it are not reported again).

use std::time::Duration;

use super::{Fields, Loader};
use crate::diagnostic::{Code, Diagnostic};
use crate::model::*;
use crate::span::{Span, Spanned};
use crate::spec::{KindSpec, Ty};
use crate::template::is_identifier;
use crate::yaml::Node as Y;

impl Loader<'_> {
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
        Some(match spec.name {
            "say" => Kind::Say(self.prompt(body, &what)?),
            "set" => {
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
                Kind::Set(self.template_map(body, &what, owner))
            }
            "branch" => {
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
                let cond_fields =
                    case_fields
                        .iter()
                        .find(|f| f.name == "when")
                        .map_or(&[][..], |f| match f.ty {
                            Ty::Object(o) => o,
                            _ => &[],
                        });
                let mut cases = Vec::new();
                for item in items {
                    let Some(cf) = self.fields(item, case_fields, "a branch case", item.span)
                    else {
                        continue;
                    };
                    let next = cf.get("next").and_then(|n| self.ident(n, "`next`"));
                    let Some(when) = cf.get("when") else { continue };
                    let Some(w) = self.fields(
                        when,
                        cond_fields,
                        "`when`",
                        cf.key_span("when").unwrap_or(item.span),
                    ) else {
                        continue;
                    };
                    let var = w.get("var").and_then(|n| self.path(n, "`var`"));
                    let tests: Vec<&str> = ["equals", "not_equals", "in", "not_in", "exists"]
                        .into_iter()
                        .filter(|t| w.get(t).is_some())
                        .collect();
                    if tests.len() != 1 {
                        self.error(Code::InvalidValue, w.owner, format!("`when` needs exactly one test of equals, not_equals, in, not_in, exists; found {}", tests.len()));
                        continue;
                    }
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
                    let t = tests[0];
                    let n = w.get(t)?;
                    let test = match t {
                        "equals" => Test::Equals(self.string(n, "`equals`")?.value),
                        "not_equals" => Test::NotEquals(self.string(n, "`not_equals`")?.value),
                        "in" => Test::In(list(self, n)?),
                        "not_in" => Test::NotIn(list(self, n)?),
                        _ => Test::Exists(self.boolean(n, "`exists`")?),
                    };
                    if let (Some(var), Some(next)) = (var, next) {
                        cases.push(Case { var, test, next });
                    }
                }
                Kind::Branch(cases)
            }
            _ => {
                let f = self.fields(body, spec.fields(), &what, owner)?;
                self.object_kind(spec, id, &f, section, out, index)?
            }
        })
    }

    pub(super) fn object_kind(
        &mut self,
        spec: &KindSpec,
        id: &Spanned<String>,
        f: &Fields<'_>,
        section: Option<&str>,
        out: &mut Vec<Node>,
        index: &mut NodeIndex,
    ) -> Option<Kind> {
        let owner = f.owner;
        let dur = |l: &mut Self, name: &str, default: u64| -> Duration {
            f.get(name)
                .and_then(|n| l.duration(n, &format!("`{name}`")))
                .map_or(Duration::from_secs(default), |d| d.value)
        };
        let int = |l: &mut Self, name: &str, min: u32, max: u32, default: u32| -> u32 {
            f.get(name)
                .and_then(|n| l.int(n, &format!("`{name}`"), min, max))
                .map_or(default, |v| v.value)
        };
        let prompt = |l: &mut Self, name: &str| -> Option<Prompt> {
            f.get(name).and_then(|n| l.prompt(n, &format!("`{name}`")))
        };
        let channel = |l: &mut Self, n: Option<&Y>| -> Option<Channel> {
            let c = l.choice(n?, "`channel`", &["sms", "email"])?;
            Some(if c.value == "sms" {
                Channel::Sms
            } else {
                Channel::Email
            })
        };
        let default_path = |l: &mut Self, name: &str, default: &str| -> Spanned<String> {
            f.get(name)
                .and_then(|n| l.path(n, &format!("`{name}`")))
                .unwrap_or_else(|| Spanned::new(default.to_string(), owner))
        };
        Some(match spec.name {
            "menu" => {
                let say = prompt(self, "say");
                let mut keys = Vec::new();
                if let Some(kn) = f.get("keys")
                    && let Some(kf) = self.map_with(
                        kn,
                        "`keys`",
                        f.key_span("keys").unwrap_or(owner),
                        |_, _, _| true,
                    )
                {
                    let mut entries: Vec<_> = kf.entries.into_iter().collect();
                    entries.sort_by_key(|(_, (k, _))| k.span.start);
                    let key_fields = match spec
                        .fields()
                        .iter()
                        .find(|x| x.name == "keys")
                        .map(|x| &x.ty)
                    {
                        Some(Ty::MapOf(_, Ty::OneOf([_, Ty::Object(o)]))) => *o,
                        _ => &[],
                    };
                    for (_, (k, v)) in entries {
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
                                .map(|s| {
                                    self.template_map(
                                        s,
                                        "`set`",
                                        mf.key_span("set").unwrap_or(k.span),
                                    )
                                })
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
                }
                if keys.is_empty() && f.get("keys").is_some() {
                    self.error(
                        Code::InvalidValue,
                        f.key_span("keys").unwrap_or(owner),
                        "a menu needs at least one key",
                    );
                }
                Kind::Menu(Menu {
                    say: say?,
                    keys,
                    attempts: int(self, "attempts", 1, 10, 3),
                    timeout: dur(self, "timeout", 5),
                    no_input_say: prompt(self, "no_input_say"),
                    no_match_say: prompt(self, "no_match_say"),
                })
            }
            "gather" => {
                let say = prompt(self, "say");
                let digits = f.get("digits").and_then(|n| self.digits(n, "`digits`"));
                let into = f.get("into").and_then(|n| self.ident(n, "`into`"));
                let finish_on = self.finish_on(f.get("finish_on"), "`finish_on`");
                let secret = f
                    .get("secret")
                    .and_then(|n| self.boolean(n, "`secret`"))
                    .unwrap_or(false);
                Kind::Gather(Gather {
                    say: say?,
                    digits: digits?,
                    into: into?,
                    finish_on,
                    first_digit_timeout: dur(self, "first_digit_timeout", 5),
                    inter_digit_timeout: dur(self, "inter_digit_timeout", 3),
                    attempts: int(self, "attempts", 1, 10, 3),
                    secret,
                    no_input_say: prompt(self, "no_input_say"),
                    no_match_say: prompt(self, "no_match_say"),
                })
            }
            "directory.find" => {
                let by = f.get("by").and_then(|n| {
                    self.choice(n, "`by`", &["employee_id", "username", "phone", "email"])
                });
                let value = f.get("value").and_then(|n| self.template(n, "`value`"));
                let into = f
                    .get("into")
                    .and_then(|n| self.ident(n, "`into`"))
                    .unwrap_or_else(|| Spanned::new("user".into(), owner));
                let by = match by?.value.as_str() {
                    "employee_id" => LookupBy::EmployeeId,
                    "username" => LookupBy::Username,
                    "phone" => LookupBy::Phone,
                    _ => LookupBy::Email,
                };
                Kind::DirectoryFind(DirectoryFind {
                    by,
                    value: value?,
                    into,
                })
            }
            "code.send" => {
                let ch = channel(self, f.get("channel"));
                let to = f.get("to").and_then(|n| self.path(n, "`to`"));
                let ttl = f
                    .get("ttl")
                    .and_then(|n| self.duration(n, "`ttl`"))
                    .unwrap_or_else(|| Spanned::new(Duration::from_secs(600), owner));
                let length = f.get("length").and_then(|n| {
                    let s = self.scalar_plain(n, "`length`", "a whole number")?;
                    match s.value.parse::<u32>() {
                        Ok(v) if v < 6 => {
                            let d = Diagnostic::new(Code::CodeTooShort, self.file, s.span, format!("a one-time code of {v} digits is too short"))
                                .label("at least 6")
                                .note("NIST SP 800-63B 5.1.3.2 and OWASP ASVS 6.5.3 ask for at least 6 random digits");
                            self.push(d);
                            None
                        }
                        Ok(v) if v <= 10 => Some(v),
                        _ => {
                            self.error(Code::InvalidValue, s.span, format!("`length` must be a whole number from 6 to 10, found `{}`", s.value));
                            None
                        }
                    }
                });
                Kind::CodeSend(CodeSend {
                    channel: ch?,
                    to: to?,
                    length: length.unwrap_or(6),
                    ttl,
                    resends: int(self, "resends", 0, 4, 2),
                    cooldown: dur(self, "cooldown", 30),
                    say: prompt(self, "say"),
                })
            }
            "code.verify" => {
                let from = f.get("from").and_then(|n| self.ident(n, "`from`"));
                let say = prompt(self, "say");
                let wait = match f.get("wait") {
                    None => None,
                    Some(wn) => self.wait(wn, spec, f.key_span("wait").unwrap_or(owner)),
                };
                Kind::CodeVerify(CodeVerify {
                    from: from?,
                    say: say?,
                    attempts: int(self, "attempts", 1, 5, 5),
                    first_digit_timeout: dur(self, "first_digit_timeout", 5),
                    inter_digit_timeout: dur(self, "inter_digit_timeout", 3),
                    wait,
                })
            }
            "pin.verify" => {
                let say = prompt(self, "say");
                let digits = f
                    .get("digits")
                    .and_then(|n| self.digits(n, "`digits`"))
                    .unwrap_or(Digits { min: 4, max: 12 });
                Kind::PinVerify(PinVerify {
                    say: say?,
                    account: default_path(self, "account", "user"),
                    digits,
                    finish_on: self.finish_on(f.get("finish_on"), "`finish_on`"),
                    attempts: int(self, "attempts", 1, 5, 3),
                    first_digit_timeout: dur(self, "first_digit_timeout", 5),
                    inter_digit_timeout: dur(self, "inter_digit_timeout", 3),
                })
            }
            "set_secret" => {
                let policy = f.get("policy").and_then(|n| self.ident(n, "`policy`"));
                let mode = match f
                    .get("mode")
                    .and_then(|n| self.choice(n, "`mode`", &["entered", "generated"]))
                {
                    Some(m) if m.value == "generated" => SecretMode::Generated,
                    _ => SecretMode::Entered,
                };
                let say = prompt(self, "say");
                let confirm = prompt(self, "confirm");
                let deliver = match f.get("deliver") {
                    None => None,
                    Some(dn) => {
                        let fields = match spec
                            .fields()
                            .iter()
                            .find(|x| x.name == "deliver")
                            .map(|x| &x.ty)
                        {
                            Some(Ty::Object(o)) => *o,
                            _ => &[],
                        };
                        let df = self.fields(
                            dn,
                            fields,
                            "`deliver`",
                            f.key_span("deliver").unwrap_or(owner),
                        );
                        df.and_then(|df| {
                            let ch = channel(self, df.get("channel"));
                            let to = df.get("to").and_then(|n| self.path(n, "`to`"));
                            ch.zip(to)
                        })
                    }
                };
                if mode == SecretMode::Entered {
                    for (name, p) in [("say", &say), ("confirm", &confirm)] {
                        if p.is_none() && f.get(name).is_none() {
                            self.error(
                                Code::MissingField,
                                owner,
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
                        owner,
                        format!(
                            "`set_secret` in mode `generated` needs `deliver` (node `{}`)",
                            id.value
                        ),
                    );
                }
                Kind::SetSecret(SetSecret {
                    policy: policy?,
                    account: default_path(self, "account", "user"),
                    mode,
                    say,
                    confirm,
                    attempts: int(self, "attempts", 1, 5, 3),
                    deliver,
                })
            }
            "secure" => {
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
                Kind::Secure(Secure {
                    start: start?,
                    nodes,
                })
            }
            "http" => {
                let method = f
                    .get("method")
                    .and_then(|n| {
                        self.choice(n, "`method`", &["GET", "POST", "PUT", "PATCH", "DELETE"])
                    })
                    .map_or("POST".to_string(), |m| m.value);
                let url = f.get("url").and_then(|n| self.template(n, "`url`"));
                let headers = f.get("headers").map(|h| {
                    self.map_with(
                        h,
                        "`headers`",
                        f.key_span("headers").unwrap_or(owner),
                        |_, _, _| true,
                    )
                    .map(|hf| {
                        let mut e: Vec<_> = hf.entries.into_iter().collect();
                        e.sort_by_key(|(_, (k, _))| k.span.start);
                        e.into_iter()
                            .filter_map(|(name, (_, v))| {
                                self.template(v, &format!("header `{name}`"))
                                    .map(|t| (name.to_string(), t))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
                });
                let body = f.get("body").map(|b| self.json(b));
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
                let map = f.get("map").map(|m| {
                    self.map_with(m, "`map`", f.key_span("map").unwrap_or(owner), |_, _, _| {
                        true
                    })
                    .map(|mf| {
                        let mut e: Vec<_> = mf.entries.into_iter().collect();
                        e.sort_by_key(|(_, (k, _))| k.span.start);
                        e.into_iter()
                            .filter_map(|(name, (k, v))| {
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
                    })
                    .unwrap_or_default()
                });
                let sign = f.get("sign").and_then(|s| {
                    let fields = match spec
                        .fields()
                        .iter()
                        .find(|x| x.name == "sign")
                        .map(|x| &x.ty)
                    {
                        Some(Ty::Object(o)) => *o,
                        _ => &[],
                    };
                    let sf =
                        self.fields(s, fields, "`sign`", f.key_span("sign").unwrap_or(owner))?;
                    let env = self.string(sf.get("token_env")?, "`token_env`")?.value;
                    let header = sf
                        .get("header")
                        .and_then(|h| self.string(h, "`header`"))
                        .map_or("X-Resetline-Signature".to_string(), |h| h.value);
                    Some((env, header))
                });
                Kind::Http(Http {
                    method,
                    url: url?,
                    headers: headers.unwrap_or_default(),
                    body,
                    secrets,
                    map: map.unwrap_or_default(),
                    timeout: dur(self, "timeout", 3),
                    retries: int(self, "retries", 0, 3, 0),
                    sign,
                })
            }
            "ticket" => {
                let close = f
                    .get("action")
                    .and_then(|n| self.choice(n, "`action`", &["open", "open_and_close"]))
                    .is_some_and(|a| a.value == "open_and_close");
                let summary = f.get("summary").and_then(|n| self.template(n, "`summary`"));
                Kind::Ticket(Ticket {
                    close,
                    summary: summary?,
                    details: f.get("details").and_then(|n| self.template(n, "`details`")),
                    category: f
                        .get("category")
                        .and_then(|n| self.string(n, "`category`"))
                        .map(|s| s.value),
                    into: f
                        .get("into")
                        .and_then(|n| self.ident(n, "`into`"))
                        .unwrap_or_else(|| Spanned::new("ticket".into(), owner)),
                    say: prompt(self, "say"),
                })
            }
            "notify" => {
                let ch = channel(self, f.get("channel"));
                let to = f.get("to").and_then(|n| self.path(n, "`to`"));
                let message = prompt(self, "message");
                Kind::Notify(Notify {
                    channel: ch?,
                    to: to?,
                    message: message?,
                })
            }
            "transfer" => {
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
                            owner,
                            format!(
                                "`transfer` of node `{}` needs `queue` or `number`",
                                id.value
                            ),
                        );
                        return None;
                    }
                };
                Kind::Transfer(Transfer {
                    say: prompt(self, "say"),
                    to,
                    wait: f
                        .get("wait")
                        .and_then(|n| self.string(n, "`wait`"))
                        .map(|s| s.value),
                })
            }
            "hangup" => Kind::Hangup(Hangup {
                say: prompt(self, "say"),
                outcome: f
                    .get("outcome")
                    .and_then(|n| self.ident(n, "`outcome`"))
                    .map(|s| s.value),
            }),
            _ => return None,
        })
    }

    pub(super) fn wait(&mut self, node: &Y, spec: &KindSpec, owner: Span) -> Option<Wait> {
        let fields = match spec
            .fields()
            .iter()
            .find(|x| x.name == "wait")
            .map(|x| &x.ty)
        {
            Some(Ty::Object(o)) => *o,
            _ => &[],
        };
        let f = self.fields(node, fields, "`wait`", owner)?;
        let hold = f.get("hold").and_then(|n| self.prompt(n, "`hold`"));
        let menu = f.get("menu").and_then(|n| self.prompt(n, "`menu`"));
        let hold_for = f
            .get("hold_for")
            .and_then(|n| self.duration(n, "`hold_for`"))
            .map_or(Duration::from_secs(10), |d| d.value);
        let give_up_after = f
            .get("give_up_after")
            .and_then(|n| self.duration(n, "`give_up_after`"))
            .map_or(Duration::from_secs(180), |d| d.value);
        let mut keys = Vec::new();
        if let Some(kn) = f.get("keys")
            && let Some(kf) = self.map_with(
                kn,
                "`keys`",
                f.key_span("keys").unwrap_or(owner),
                |_, _, _| true,
            )
        {
            let mut entries: Vec<_> = kf.entries.into_iter().collect();
            entries.sort_by_key(|(_, (k, _))| k.span.start);
            for (_, (k, v)) in entries {
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
        }
        if !keys.iter().any(|(_, a)| *a == WaitKey::Enter) && f.get("keys").is_some() {
            self.error(Code::InvalidValue, f.key_span("keys").unwrap_or(owner), "the comfort loop needs a key that does `enter`, or callers holding the code cannot type it");
        }
        Some(Wait {
            hold: hold?,
            hold_for,
            menu: menu?,
            keys,
            give_up_after,
        })
    }
}
