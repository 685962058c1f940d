//! What the caller hears: prompt references rendered from the locale's catalog into `Say` and
//! `Play` actions, and engine texts (message bodies, subjects) rendered as plain text.
//!
//! Invariant: a missing catalog, prompt or parameter is logged and skipped, never a failed
//! step; parameters are rendered from session variables only (secrets are never variables),
//! and digit segments stay digit segments so the carrier reads them one by one.

use resetline_flow::Flow;
use resetline_flow::model::Prompt;
use resetline_flow::prompts::PromptBody;
use resetline_flow::prompts::ssml;
use resetline_flow::template::{Part, Segment, Template};

use super::Engine;
use crate::action::{Action, Spoken};
use crate::session::Session;

impl Engine {
    /// The catalog of the call's locale, else the flow's default locale's.
    fn catalog<'a>(
        &'a self,
        flow: &Flow,
        s: &Session,
    ) -> Option<&'a resetline_flow::prompts::Catalog> {
        self.catalogs
            .get(&s.locale)
            .or_else(|| self.catalogs.get(&flow.settings.default_locale.value))
    }

    /// Whether the call's catalog has prompt `key`.
    pub(super) fn has_prompt(&self, flow: &Flow, s: &Session, key: &str) -> bool {
        self.catalog(flow, s)
            .is_some_and(|c| c.entries.contains_key(key))
    }

    /// Says the catalog prompt `key`, without parameters.
    pub(super) fn say_key(&self, flow: &Flow, s: &Session, key: &str, out: &mut Vec<Action>) {
        let item = resetline_flow::model::PromptItem {
            key: resetline_flow::Spanned::new(key.to_string(), Default::default()),
            with: Vec::new(),
        };
        self.say(flow, s, &Prompt { items: vec![item] }, out);
    }

    /// Says `prompt`: each item from the catalog, its parameters rendered from the session.
    pub(super) fn say(&self, flow: &Flow, s: &Session, prompt: &Prompt, out: &mut Vec<Action>) {
        let Some(catalog) = self.catalog(flow, s) else {
            tracing::error!(locale = %s.locale, "no prompt catalog for locale");
            return;
        };
        let voice = catalog
            .voice
            .clone()
            .or_else(|| flow.settings.voice.clone());
        for item in &prompt.items {
            let Some(entry) = catalog.entries.get(&item.key.value) else {
                tracing::error!(locale = %s.locale, prompt = %item.key.value, "prompt missing from catalog");
                continue;
            };
            let mut params: Vec<(&str, Vec<Segment>)> = Vec::with_capacity(item.with.len());
            for (name, t) in &item.with {
                match t.value.render(&|p| s.lookup(p)) {
                    Ok(segs) => {
                        params.push((&name.value, segs));
                    }
                    Err(missing) => {
                        tracing::warn!(call = %s.call_sid, prompt = %item.key.value, missing, "prompt parameter not set")
                    }
                }
            }
            let say = |text: Vec<Spoken>| Action::Say {
                text,
                locale: catalog.locale.clone(),
                voice: voice.clone(),
            };
            match &entry.body {
                PromptBody::Say(t) => out.push(say(spoken(t, &params))),
                PromptBody::Ssml(parts) => out.push(say(parts
                    .iter()
                    .flat_map(|p| ssml_part(p, &params))
                    .collect())),
                // The recording was not on disk when the catalog loaded (W040): its text.
                PromptBody::Play { text, .. }
                    if catalog.missing_audio.contains(&item.key.value) =>
                {
                    tracing::debug!(locale = %catalog.locale, prompt = %item.key.value, "recording missing: spoken instead");
                    out.extend(text.as_ref().map(|t| say(spoken(t, &params))));
                }
                PromptBody::Play { file, text } => {
                    let url = if file.starts_with("https://") || file.starts_with("http://") {
                        file.clone()
                    } else {
                        format!("/prompts/{}/{}", catalog.locale, file)
                    };
                    let text = text
                        .as_ref()
                        .map(|t| resetline_flow::template::plain_text(&fill(t, &params)))
                        .unwrap_or_default();
                    out.push(Action::Play { url, text });
                }
            }
        }
    }

    /// `t` rendered from the session as plain text; `Err` names a variable that is not set.
    pub(super) fn render_text(&self, s: &Session, t: &Template) -> Result<String, String> {
        t.render(&|p| s.lookup(p))
            .map(|segs| resetline_flow::template::plain_text(&segs))
    }

    /// An engine prompt (`code_message`, subjects) rendered as plain text with `params`.
    pub(super) fn engine_text(
        &self,
        flow: &Flow,
        s: &Session,
        key: &str,
        params: &[(&str, &str)],
    ) -> String {
        let Some(entry) = self.catalog(flow, s).and_then(|c| c.entries.get(key)) else {
            tracing::error!(locale = %s.locale, prompt = key, "engine prompt missing from catalog");
            return String::new();
        };
        let lookup = |p: &[String]| {
            params
                .iter()
                .find(|(k, _)| p.len() == 1 && p[0] == *k)
                .map(|(_, v)| v.to_string())
        };
        entry.plain_text(&lookup).unwrap_or_default()
    }
}

/// `t` filled with `params`, as spoken pieces.
fn spoken(t: &Template, params: &[(&str, Vec<Segment>)]) -> Vec<Spoken> {
    fill(t, params).into_iter().map(Spoken::from).collect()
}

/// One structured SSML part of a catalog entry, filled with `params`.
fn ssml_part(part: &ssml::Part, params: &[(&str, Vec<Segment>)]) -> Vec<Spoken> {
    let one = match part {
        ssml::Part::Text(t) => return spoken(t, params),
        // At most 10 s (checked by the catalog loader).
        ssml::Part::Break(d) => Spoken::Break(u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
        ssml::Part::Emphasis { level, text } => Spoken::Emphasis {
            level: level.clone(),
            text: spoken(text, params),
        },
        ssml::Part::Rate { rate, text } => Spoken::Rate {
            rate: rate.clone(),
            text: spoken(text, params),
        },
    };
    vec![one]
}

/// Fills a catalog template with rendered parameters, keeping digit segments as such.
/// `t` with its expressions replaced by the prompt's parameters (`params`: name, value).
fn fill(t: &Template, params: &[(&str, Vec<Segment>)]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for part in &t.parts {
        match part {
            Part::Text(x) => out.push(Segment::Text(x.clone())),
            Part::Expr(e) => {
                let Some((_, value)) = params.iter().find(|(name, _)| e.is_dotted(name)) else {
                    continue;
                };
                if e.filters.is_empty() {
                    out.extend(value.iter().cloned());
                } else {
                    let plain = resetline_flow::template::plain_text(value);
                    let single = Template {
                        parts: vec![Part::Expr(resetline_flow::template::Expr {
                            path: vec!["v".into()],
                            filters: e.filters.clone(),
                            offset: 0,
                            len: 0,
                        })],
                    };
                    if let Ok(segs) = single.render(&|_| Some(plain.clone())) {
                        out.extend(segs);
                    }
                }
            }
        }
    }
    out
}
