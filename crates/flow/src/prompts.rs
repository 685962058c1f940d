//! Prompt catalogs: `voice-prompts/<locale>.yaml`, the words callers hear, one file per locale.
//!
//! Flows name prompts by key; a catalog gives each key its text (spoken with `<Say>`) or a
//! recording (played with `<Play>`, with the text kept for the simulator and transcripts).
//! Catalog text may use `{{ param }}` placeholders filled from the flow's `with:`; it cannot read
//! flow variables directly, so everything a prompt speaks passes through the flow's checked
//! templates. An entry may also be structured SSML (`say:` parts, see [`ssml`]). Recordings
//! are looked up on disk when a directory is loaded: a missing one is a W040 warning and is
//! listed in [`Catalog::missing_audio`], so the engine speaks its text instead (no request to
//! the carrier's fetch ever finds a 404). Invariant: a loaded catalog's every entry parsed,
//! with its span kept.

pub mod ssml;

use std::collections::{BTreeMap, BTreeSet};
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
    /// Structured SSML for text-to-speech: text, breaks, emphasis, rate (`say:` parts).
    Ssml(Vec<ssml::Part>),
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
        let mut names: Vec<String> = self
            .templates()
            .into_iter()
            .flat_map(|t| t.exprs().map(|e| e.dotted()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// What the entry says as plain text (its texts in order, a space between two that do
    /// not already have one; digits spelled), placeholders filled by `lookup`; `None` when a
    /// placeholder is not set.
    pub fn plain_text(&self, lookup: &dyn Fn(&[String]) -> Option<String>) -> Option<String> {
        let mut out = String::new();
        for t in self.templates() {
            let text = crate::template::plain_text(&t.render(lookup).ok()?);
            let joined = out.is_empty()
                || text.is_empty()
                || out.ends_with(char::is_whitespace)
                || text.starts_with(char::is_whitespace);
            if !joined {
                out.push(' ');
            }
            out.push_str(&text);
        }
        Some(out)
    }

    /// Every text the entry says, in order.
    pub fn templates(&self) -> Vec<&Template> {
        match &self.body {
            PromptBody::Say(t) => vec![t],
            PromptBody::Ssml(parts) => parts.iter().filter_map(ssml::Part::template).collect(),
            PromptBody::Play { text, .. } => text.iter().collect(),
        }
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
    /// Keys of `play` entries whose file is not in the audio directory (W040): the engine
    /// speaks their text instead. Empty for a catalog parsed without a directory.
    pub missing_audio: BTreeSet<String>,
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
                    let (catalog, mut d) = parse_in(&name, &text, Some(&dir.join("audio")));
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

/// The files a recording `file` of `locale` may be: under `audio/<locale>/`, then `audio/`.
/// `None` for a name the prompt route would refuse (empty, over 128 bytes, a leading dot, or
/// a character other than ASCII letters, digits, `.`, `-`, `_`), so it is never on disk.
pub fn audio_candidates(audio: &Path, locale: &str, file: &str) -> Option<[PathBuf; 2]> {
    let safe = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    (safe(locale) && safe(file)).then(|| [audio.join(locale).join(file), audio.join(file)])
}

/// Whether a `play` value is a URL (never looked up: no request is made to check it).
fn is_url(file: &str) -> bool {
    file.starts_with("https://") || file.starts_with("http://")
}

/// Parses one catalog file. The locale comes from `locale:` and must match the file name.
pub fn parse(file: &str, text: &str) -> (Option<Catalog>, Vec<Diagnostic>) {
    parse_in(file, text, None)
}

/// [`parse`], with recordings looked up under `audio` (W040 for a missing one).
fn parse_in(file: &str, text: &str, audio: Option<&Path>) -> (Option<Catalog>, Vec<Diagnostic>) {
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
    let mut missing_audio = BTreeSet::new();
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
                    let loc = locale.as_ref().map_or("", |l| l.value.as_str());
                    let Some(body) = entry_body(&mut l, key, k.span, v) else {
                        continue;
                    };
                    if let (Some(audio), PromptBody::Play { file, text }) = (audio, &body)
                        && let Some(span) = v.as_map().and_then(|m| {
                            m.iter()
                                .find(|(k, _)| k.as_scalar() == Some("play"))
                                .map(|(_, v)| v.span)
                        })
                        && !audio_on_disk(audio, loc, file)
                    {
                        missing_audio.insert(key.to_string());
                        l.push(missing_audio_warning(
                            l.file,
                            file,
                            audio,
                            loc,
                            key,
                            text.is_some(),
                            span,
                        ));
                    }
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
        missing_audio,
    });
    (catalog, l.diags)
}

/// One entry's body: text, `{ say: [parts] }` or `{ play, text }`; `None` when refused
/// (reported).
fn entry_body(l: &mut Loader<'_>, key: &str, key_span: Span, v: &yaml::Node) -> Option<PromptBody> {
    let Some(map) = v.as_map() else {
        return l
            .template(v, &format!("prompt `{key}`"))
            .map(|t| PromptBody::Say(t.value));
    };
    let what = format!("prompt `{key}`");
    if map.iter().any(|(k, _)| k.as_scalar() == Some("say")) {
        let f = l.fields(v, SAY, &what, key_span)?;
        return l.ssml_parts(f.get("say")?, key).map(PromptBody::Ssml);
    }
    let pf = l.fields(v, PLAY, &what, key_span)?;
    let file = pf.get("play").and_then(|n| l.string(n, "`play`"))?;
    let text = pf
        .get("text")
        .and_then(|n| l.template(n, "`text`"))
        .map(|t| t.value);
    Some(PromptBody::Play {
        file: file.value,
        text,
    })
}

/// Whether recording `file` is a URL or a file under `audio` (looked up once, at load).
fn audio_on_disk(audio: &Path, locale: &str, file: &str) -> bool {
    is_url(file)
        || audio_candidates(audio, locale, file).is_some_and(|c| c.iter().any(|p| p.is_file()))
}

/// W040: `file` of prompt `key` is not under `audio`.
fn missing_audio_warning(
    catalog: &str,
    file: &str,
    audio: &Path,
    locale: &str,
    key: &str,
    has_text: bool,
    span: Span,
) -> Diagnostic {
    let dir = audio.display();
    let d = Diagnostic::new(
        Code::MissingAudio,
        catalog,
        span,
        format!("prompt `{key}` plays `{file}`, which is not in {dir}/{locale}/ or {dir}/"),
    );
    if has_text {
        d.note("callers hear its `text` spoken instead until the file is added")
    } else {
        d.note("it has no `text`, so callers hear nothing: add the file, or `text:` to speak")
    }
}

use crate::spec::{Field, Ty};

/// Every field a catalog file takes: the file's, a `say:` entry's, a `play:` entry's and an
/// SSML part's (the docs test checks each is documented).
pub const FIELDS: &[&[Field]] = &[CATALOG, SAY, PLAY, ssml::PART];

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

const SAY: &[Field] = &[Field {
    name: "say",
    ty: Ty::ListOf(&Ty::Object(ssml::PART)),
    required: true,
    default: None,
    doc: "Text, `{ break }`, `{ emphasis, text }` and `{ rate, text }` parts, said in order.",
}];

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
