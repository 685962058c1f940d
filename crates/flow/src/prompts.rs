//! Prompt catalogs: `voice-prompts/<locale>.yaml`, the words callers hear, one file per locale.
//!
//! Flows name prompts by key; a catalog gives each key its text (spoken with `<Say>`) or a
//! recording (played with `<Play>`, with the text kept for the simulator and transcripts).
//! Catalog text may use `{{ param }}` placeholders filled from the flow's `with:`; it cannot read
//! flow variables directly, so everything a prompt speaks passes through the flow's checked
//! templates. Invariant: a loaded catalog's every entry parsed, with its span kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Code, Diagnostic, SourceMap};
use crate::load::Loader;
use crate::span::{Pos, Span, Spanned};
use crate::template::Template;
use crate::yaml;

/// What a catalog entry says.
#[derive(Clone, Debug)]
pub enum PromptBody {
    /// Text for text-to-speech.
    Say(Template),
    /// A recording, with the text it contains.
    Play {
        /// File name under the prompts directory, or an absolute `https://` URL.
        file: String,
        /// The words in the recording (for transcripts and the simulator).
        text: Option<Template>,
    },
}

/// One catalog entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its key, with the key's span.
    pub key: Spanned<String>,
    /// What it says.
    pub body: PromptBody,
}

impl Entry {
    /// The `{{ param }}` names the entry uses.
    pub fn params(&self) -> Vec<String> {
        let t = match &self.body {
            PromptBody::Say(t) => Some(t),
            PromptBody::Play { text, .. } => text.as_ref(),
        };
        let mut names: Vec<String> = t
            .into_iter()
            .flat_map(|t| t.exprs().map(|e| e.dotted()))
            .collect();
        names.dedup();
        names
    }
}

/// One locale's catalog.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// The locale, e.g. `en-US`.
    pub locale: String,
    /// The file it came from.
    pub file: String,
    /// TTS voice for this locale, if set.
    pub voice: Option<String>,
    /// Entries by key.
    pub entries: BTreeMap<String, Entry>,
}

/// All catalogs found in a prompts directory.
#[derive(Clone, Debug, Default)]
pub struct Catalogs {
    /// The directory they came from.
    pub dir: PathBuf,
    /// Catalogs by locale.
    pub by_locale: BTreeMap<String, Catalog>,
}

impl Catalogs {
    /// The catalog for `locale`.
    pub fn get(&self, locale: &str) -> Option<&Catalog> {
        self.by_locale.get(locale)
    }

    /// Loads every `*.yaml` in `dir`. Sources are added to `sources` for rendering.
    pub fn load_dir(dir: &Path, sources: &mut SourceMap) -> (Catalogs, Vec<Diagnostic>) {
        let mut catalogs = Catalogs {
            dir: dir.to_path_buf(),
            by_locale: BTreeMap::new(),
        };
        let mut diags = Vec::new();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect(),
            Err(e) => {
                let name = dir.display().to_string();
                diags.push(Diagnostic::new(
                    Code::Catalog,
                    &name,
                    Span::default(),
                    format!("cannot read the prompts directory: {e}"),
                ));
                return (catalogs, diags);
            }
        };
        files.sort();
        for path in files {
            let name = path.display().to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    sources.add(&name, &text);
                    let (catalog, mut d) = parse(&name, &text);
                    diags.append(&mut d);
                    if let Some(c) = catalog {
                        catalogs.by_locale.insert(c.locale.clone(), c);
                    }
                }
                Err(e) => diags.push(Diagnostic::new(
                    Code::Catalog,
                    &name,
                    Span::default(),
                    format!("cannot read: {e}"),
                )),
            }
        }
        (catalogs, diags)
    }
}

/// Parses one catalog file. The locale comes from `locale:` and must match the file name.
pub fn parse(file: &str, text: &str) -> (Option<Catalog>, Vec<Diagnostic>) {
    let mut l = Loader::new(file);
    let top = Span::point(Pos { line: 1, col: 1 });
    let root = match yaml::parse(text) {
        Ok(Some(r)) => r,
        Ok(None) => {
            l.error(
                Code::Catalog,
                top,
                "the catalog is empty: it needs `locale` and `prompts`",
            );
            return (None, l.diags);
        }
        Err(e) => {
            l.error(Code::Syntax, e.span, format!("YAML syntax: {}", e.message));
            return (None, l.diags);
        }
    };
    let Some(f) = l.fields(&root, CATALOG, "a prompt catalog", top) else {
        return (None, l.diags);
    };
    let locale = f.get("locale").and_then(|n| l.string(n, "`locale`"));
    let voice = f
        .get("voice")
        .and_then(|n| l.string(n, "`voice`"))
        .map(|v| v.value);
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    if let Some(loc) = &locale
        && loc.value != stem
    {
        l.error(
            Code::Catalog,
            loc.span,
            format!(
                "catalog for `{}` is in a file named `{stem}`; name it `{}.yaml`",
                loc.value, loc.value
            ),
        );
    }
    let mut entries = BTreeMap::new();
    if let Some(p) = f.get("prompts") {
        match p.as_map() {
            None => l.error(
                Code::WrongType,
                p.span,
                format!(
                    "`prompts` must be a mapping of keys to texts, found {}",
                    p.shape()
                ),
            ),
            Some(items) => {
                for (k, v) in items {
                    let Some(key) = k.as_scalar() else {
                        l.error(Code::WrongType, k.span, "prompt keys must be words");
                        continue;
                    };
                    if entries.contains_key(key) {
                        l.error(
                            Code::Duplicate,
                            k.span,
                            format!("prompt `{key}` is written twice"),
                        );
                        continue;
                    }
                    let body = if v.as_map().is_some() {
                        let Some(pf) = l.fields(v, PLAY, &format!("prompt `{key}`"), k.span) else {
                            continue;
                        };
                        let Some(file) = pf.get("play").and_then(|n| l.string(n, "`play`")) else {
                            continue;
                        };
                        let text = pf
                            .get("text")
                            .and_then(|n| l.template(n, "`text`"))
                            .map(|t| t.value);
                        PromptBody::Play {
                            file: file.value,
                            text,
                        }
                    } else {
                        let Some(t) = l.template(v, &format!("prompt `{key}`")) else {
                            continue;
                        };
                        PromptBody::Say(t.value)
                    };
                    entries.insert(
                        key.to_string(),
                        Entry {
                            key: Spanned::new(key.to_string(), k.span),
                            body,
                        },
                    );
                }
            }
        }
    }
    let catalog = locale.map(|loc| Catalog {
        locale: loc.value,
        file: file.to_string(),
        voice,
        entries,
    });
    (catalog, l.diags)
}

use crate::spec::{Field, Ty};

const CATALOG: &[Field] = &[
    Field {
        name: "locale",
        ty: Ty::Locale,
        required: true,
        default: None,
        doc: "The locale, matching the file name.",
    },
    Field {
        name: "voice",
        ty: Ty::Str,
        required: false,
        default: None,
        doc: "TTS voice for this locale.",
    },
    Field {
        name: "prompts",
        ty: Ty::MapOf(&Ty::Ident, &Ty::Template),
        required: true,
        default: None,
        doc: "Prompt texts by key.",
    },
];

const PLAY: &[Field] = &[
    Field {
        name: "play",
        ty: Ty::Str,
        required: true,
        default: None,
        doc: "Audio file or URL.",
    },
    Field {
        name: "text",
        ty: Ty::Template,
        required: false,
        default: None,
        doc: "The words in the recording.",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_say_and_play_entries() {
        let (c, d) = parse(
            "voice-prompts/en-US.yaml",
            "locale: en-US\nprompts:\n  hi: \"Hello {{ name }}.\"\n  hold: { play: hold.mp3, text: \"Please hold.\" }\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let c = c.unwrap();
        assert_eq!(c.entries["hi"].params(), vec!["name".to_string()]);
        assert!(matches!(c.entries["hold"].body, PromptBody::Play { .. }));
    }

    #[test]
    fn locale_must_match_file_name() {
        let (_, d) = parse("voice-prompts/es-US.yaml", "locale: en-US\nprompts: {}\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, Code::Catalog);
    }
}
