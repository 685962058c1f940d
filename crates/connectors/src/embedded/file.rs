//! The users file: parsing, validation, rendering and the atomic write.
//!
//! Invariant: a [`Users`] value only exists once every user in the file passed validation,
//! [`render`] writes a file that [`parse`] reads back to the same value, and [`persist`]
//! either replaces the file whole (temp file, fsync, rename, directory fsync) or leaves it
//! as it was.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use resetline_engine::{Account, AccountState};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::pin;

/// The file as written, before any check (two-stage loading: raw, then checked).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    allow_phone_reset: bool,
    users: Vec<Spanned<RawUser>>,
}

/// One user as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    id: String,
    name: String,
    #[serde(default)]
    mobile: Option<String>,
    #[serde(default)]
    email: Option<String>,
    state: String,
    #[serde(default = "yes")]
    allow_phone_reset: bool,
    #[serde(default)]
    birth_date: Option<String>,
    #[serde(default)]
    pin_hash: Option<String>,
}

fn yes() -> bool {
    true
}

/// The checked users file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Users {
    /// The global phone-reset switch.
    pub(crate) allow_phone_reset: bool,
    /// The users, in file order; ids are unique.
    pub(crate) users: Vec<User>,
}

/// One checked user.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) mobile: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) state: AccountState,
    pub(crate) allow_phone_reset: bool,
    pub(crate) birth_date: Option<String>,
    /// Argon2id PHC string; never printed.
    pub(crate) pin_hash: Option<String>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("allow_phone_reset", &self.allow_phone_reset)
            .field("has_pin", &self.pin_hash.is_some())
            .finish_non_exhaustive()
    }
}

impl User {
    /// The engine's view of this user under the global switch.
    pub(crate) fn account(&self, global_allow: bool) -> Account {
        Account {
            id: self.id.clone(),
            name: self.name.clone(),
            mobile: self.mobile.clone(),
            email: self.email.clone(),
            state: self.state,
            allow_phone_reset: global_allow && self.allow_phone_reset,
            birth_date: self.birth_date.clone(),
        }
    }
}

impl Users {
    /// The user with this exact id.
    pub(crate) fn get(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    /// The user with this exact id, for changing.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut User> {
        self.users.iter_mut().find(|u| u.id == id)
    }
}

/// One thing wrong with one user (or with the file as a whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Index in `users:` (0-based), or `None` for a top-level problem.
    pub index: Option<usize>,
    /// The user's `id`, when it could be read.
    pub id: Option<String>,
    /// 1-based line where the user's entry starts, when known.
    pub line: Option<usize>,
    /// The field at fault (`state`, `pin_hash`, ...).
    pub field: &'static str,
    /// What is wrong; never quotes a PIN hash.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        match (self.index, &self.id) {
            (Some(i), Some(id)) => write!(
                f,
                "users[{i}] (id {id:?}) `{}`: {}",
                self.field, self.message
            ),
            (Some(i), None) => write!(f, "users[{i}] `{}`: {}", self.field, self.message),
            (None, _) => write!(f, "`{}`: {}", self.field, self.message),
        }
    }
}

/// Loading the users file failed.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The file is not YAML of the expected shape (unknown field, wrong type, missing field).
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message with line and column.
        message: String,
    },
    /// The file parsed but some values are wrong: every problem found, in file order.
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problems.
        problems: Vec<Problem>,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, error } => {
                write!(f, "{}: cannot read the users file: {error}", path.display())
            }
            LoadError::Syntax { path, message } => write!(f, "{}: {message}", path.display()),
            LoadError::Invalid { path, problems } => {
                let n = problems.len();
                write!(
                    f,
                    "{}: {n} problem{} in the users file",
                    path.display(),
                    if n == 1 { "" } else { "s" }
                )?;
                for p in problems {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Parses and checks the text of a users file. `path` only names the file in errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Users, LoadError> {
    // No source snippet in messages: the offending line could hold a PIN hash.
    let options = serde_saphyr::options! { with_snippet: false };
    let raw: RawFile =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| LoadError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut problems = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut users = Vec::with_capacity(raw.users.len());
    for (index, entry) in raw.users.into_iter().enumerate() {
        let line = Some(entry.referenced.line() as usize).filter(|l| *l > 0);
        let raw = entry.value;
        let id = raw.id.trim().to_owned();
        let mut problem = |field: &'static str, message: String| {
            problems.push(Problem {
                index: Some(index),
                id: Some(id.clone()).filter(|i| !i.is_empty()),
                line,
                field,
                message,
            });
        };
        if id.is_empty() {
            problem("id", "must not be empty".into());
        } else if id.chars().any(char::is_control) {
            problem("id", "must not contain control characters".into());
        } else if let Some(first) = seen.get(&id) {
            problem(
                "id",
                format!("duplicate id: users[{first}] has the same id"),
            );
        } else {
            seen.insert(id.clone(), index);
        }
        let state = match raw.state.trim() {
            "active" => Some(AccountState::Active),
            "locked" => Some(AccountState::Locked),
            "disabled" => Some(AccountState::Disabled),
            other => {
                problem(
                    "state",
                    format!("unknown state {other:?}; expected active, locked or disabled"),
                );
                None
            }
        };
        let trim = |v: Option<String>| v.map(|v| v.trim().to_owned());
        let (mobile, email) = (trim(raw.mobile), trim(raw.email));
        let (birth_date, pin_hash) = (trim(raw.birth_date), trim(raw.pin_hash));
        let checks: [(&'static str, Option<&str>, Check); 4] = [
            ("mobile", mobile.as_deref(), check_e164),
            ("email", email.as_deref(), check_email),
            ("birth_date", birth_date.as_deref(), check_date),
            ("pin_hash", pin_hash.as_deref(), pin::validate_hash),
        ];
        for (field, value, check) in checks {
            if let Some(Err(message)) = value.map(check) {
                problem(field, message);
            }
        }
        if let Some(state) = state {
            users.push(User {
                id,
                name: raw.name,
                mobile,
                email,
                state,
                allow_phone_reset: raw.allow_phone_reset,
                birth_date,
                pin_hash,
            });
        }
    }
    if problems.is_empty() {
        Ok(Users {
            allow_phone_reset: raw.allow_phone_reset,
            users,
        })
    } else {
        Err(LoadError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// A check of one optional field's value; the error is the problem's message.
type Check = fn(&str) -> Result<(), String>;

/// `+` then 8 to 15 digits, the first not 0.
fn check_e164(m: &str) -> Result<(), String> {
    let digits = m.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(format!("{m:?} is not an E.164 number like +15555550199"))
    }
}

/// One `@` with something on both sides and no spaces or controls.
fn check_email(e: &str) -> Result<(), String> {
    let ok = match e.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
        None => false,
    } && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!("{e:?} is not an email address"))
    }
}

/// `YYYY-MM-DD` with a month 01-12 and a day 01-31.
fn check_date(d: &str) -> Result<(), String> {
    let b = d.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    let num = |r: std::ops::Range<usize>| d.get(r).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    if shape && (1..=12).contains(&num(5..7)) && (1..=31).contains(&num(8..10)) {
        Ok(())
    } else {
        Err(format!("{d:?} is not a date like 1987-04-12"))
    }
}

/// Writes `s` as a YAML double-quoted scalar; everything outside YAML's printable set is
/// escaped, so any string reads back unchanged.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\u{20}'..='\u{7e}'
            | '\u{a0}'..='\u{d7ff}'
            | '\u{e000}'..='\u{fefe}'
            | '\u{ff00}'..='\u{fffd}'
            | '\u{10000}'.. => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
}

/// The file text for `users`, in the documented format (comments are not kept).
pub(crate) fn render(users: &Users) -> String {
    let mut out = String::from(
        "# Resetline embedded directory (format: crates/connectors/src/embedded/mod.rs).\n\
         # Rewritten by Resetline whenever a PIN changes; comments are not kept.\n",
    );
    out.push_str(&format!(
        "allow_phone_reset: {}\nusers:",
        users.allow_phone_reset
    ));
    if users.users.is_empty() {
        out.push_str(" []\n");
        return out;
    }
    out.push('\n');
    let field = |out: &mut String, key: &str, value: &str| {
        out.push_str("    ");
        out.push_str(key);
        out.push_str(": ");
        quote(out, value);
        out.push('\n');
    };
    for u in &users.users {
        out.push_str("  - id: ");
        quote(&mut out, &u.id);
        out.push('\n');
        field(&mut out, "name", &u.name);
        if let Some(m) = &u.mobile {
            field(&mut out, "mobile", m);
        }
        if let Some(e) = &u.email {
            field(&mut out, "email", e);
        }
        let state = match u.state {
            AccountState::Active => "active",
            AccountState::Locked => "locked",
            AccountState::Disabled => "disabled",
        };
        out.push_str(&format!(
            "    state: {state}\n    allow_phone_reset: {}\n",
            u.allow_phone_reset
        ));
        if let Some(d) = &u.birth_date {
            field(&mut out, "birth_date", d);
        }
        if let Some(h) = &u.pin_hash {
            field(&mut out, "pin_hash", h);
        }
    }
    out
}

/// Distinguishes temp files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What [`persist`] achieved when it did not fail outright.
#[derive(Debug)]
pub(crate) enum Persisted {
    /// Renamed into place and the directory entry synced.
    Durable,
    /// Renamed into place (every reader sees the new file) but syncing the directory failed,
    /// so the rename might not survive a power loss.
    DirectorySyncFailed(io::Error),
}

/// Replaces `path` with `contents` atomically: temp file in the same directory, fsync,
/// rename over `path`, fsync the directory. On `Err` the file at `path` is unchanged and the
/// temp file is removed.
pub(crate) fn persist(path: &Path, contents: &str) -> io::Result<Persisted> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "users.yaml".into());
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        if let Ok(meta) = fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(Persisted::Durable),
        Err(e) => Ok(Persisted::DirectorySyncFailed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = crate::pin::DUMMY_HASH;

    fn parse_str(text: &str) -> Result<Users, LoadError> {
        parse(Path::new("users.yaml"), text)
    }

    #[test]
    fn reads_defaults_and_unquoted_scalars() {
        let text = format!(
            "allow_phone_reset: false\nusers:\n  - id: 001234\n    name: Ana\n    state: active\n    birth_date: 1987-04-12\n    pin_hash: \"{HASH}\"\n"
        );
        let users = parse_str(&text).unwrap();
        assert!(!users.allow_phone_reset);
        let u = &users.users[0];
        assert_eq!(u.id, "001234");
        assert!(u.allow_phone_reset, "per-user flag defaults to true");
        assert_eq!(u.birth_date.as_deref(), Some("1987-04-12"));
        assert_eq!(u.mobile, None);
    }

    #[test]
    fn reports_every_problem_with_index_and_field() {
        let text = "allow_phone_reset: true\nusers:\n  - id: \"1\"\n    name: A\n    state: lockd\n  - id: \"2\"\n    name: B\n    state: active\n    pin_hash: \"$2b$10$abcdefghijklmnopqrstuu\"\n    mobile: \"5555550199\"\n  - id: \"1\"\n    name: C\n    state: active\n    birth_date: \"1987-13-01\"\n";
        let Err(LoadError::Invalid { problems, .. }) = parse_str(text) else {
            panic!("expected Invalid")
        };
        let got: Vec<(Option<usize>, &str)> = problems.iter().map(|p| (p.index, p.field)).collect();
        assert_eq!(
            got,
            [
                (Some(0), "state"),
                (Some(1), "mobile"),
                (Some(1), "pin_hash"),
                (Some(2), "id"),
                (Some(2), "birth_date")
            ]
        );
        let shown = LoadError::Invalid {
            path: "users.yaml".into(),
            problems,
        }
        .to_string();
        assert!(shown.contains("5 problems"), "{shown}");
        assert!(
            shown.contains("line 3: users[0] (id \"1\") `state`: unknown state \"lockd\""),
            "{shown}"
        );
        assert!(
            shown.contains("users[2] (id \"1\") `id`: duplicate id: users[0] has the same id"),
            "{shown}"
        );
        assert!(
            !shown.contains("abcdefghijklmnopqrstuu"),
            "a hash must not be quoted: {shown}"
        );
    }

    #[test]
    fn syntax_errors_name_the_place_but_not_the_line_text() {
        let text = format!(
            "allow_phone_reset: true\nusers:\n  - id: \"1\"\n    name: A\n    state: active\n    pin: \"{HASH}\"\n"
        );
        let Err(LoadError::Syntax { message, .. }) = parse_str(&text) else {
            panic!("expected Syntax")
        };
        assert!(message.contains("pin"), "{message}");
        assert!(message.contains('6'), "line number expected: {message}");
        assert!(!message.contains("DUMMYHASH"), "{message}");
        assert!(
            matches!(parse_str("users: []\n"), Err(LoadError::Syntax { .. })),
            "the global flag is required"
        );
    }

    #[test]
    fn render_round_trips_awkward_strings() {
        let users = Users {
            allow_phone_reset: true,
            users: vec![User {
                id: "a\"b\\c".into(),
                name: "O'Brien: \"Bo\"\n\ttab \u{7f} \u{85} \u{feff} é 😀 # not a comment".into(),
                mobile: Some("+15555550199".into()),
                email: Some("Bo@Example.com".into()),
                state: AccountState::Locked,
                allow_phone_reset: false,
                birth_date: Some("1990-01-31".into()),
                pin_hash: Some(HASH.into()),
            }],
        };
        let text = render(&users);
        assert_eq!(parse_str(&text).unwrap(), users, "{text}");
        let empty = Users {
            allow_phone_reset: false,
            users: vec![],
        };
        assert_eq!(parse_str(&render(&empty)).unwrap(), empty);
    }

    #[test]
    fn user_debug_hides_the_hash() {
        let u = User {
            id: "1".into(),
            name: "A".into(),
            mobile: None,
            email: None,
            state: AccountState::Active,
            allow_phone_reset: true,
            birth_date: None,
            pin_hash: Some(HASH.into()),
        };
        let shown = format!("{u:?}");
        assert!(!shown.contains("argon2"), "{shown}");
        assert!(shown.contains("has_pin: true"), "{shown}");
    }
}
