//! `EmbeddedDirectory`: the identity store for one-box deployments and `resetline demo`, a
//! YAML file of users with Argon2id PIN hashes.
//!
//! Invariant: the in-memory users always equal the file's last successfully written
//! content. A PIN change is one serialised read-modify-write (copy, change one user, write a
//! temp file, fsync, rename, fsync the directory, then swap the copy in), so a failed write
//! changes nothing and two concurrent changes never lose each other. Argon2 work runs on
//! tokio's blocking pool under the process-wide [`PinHashing`] bound; no PIN or hash is ever
//! printed.
//!
//! # File format
//!
//! ```yaml
//! allow_phone_reset: true          # global switch, required; false refuses phone resets for all
//! users:
//!   - id: "100001"                 # employee ID = username; unique; quote it to keep leading zeros
//!     name: "Alex Rivera"
//!     mobile: "+15555550199"       # optional, E.164
//!     email: "alex@example.com"    # optional
//!     state: active                # active | locked | disabled
//!     allow_phone_reset: true      # optional, default true; the account's flag is global && this
//!     birth_date: "1987-04-12"     # optional, YYYY-MM-DD (only used to refuse it as a PIN)
//!     pin_hash: "$argon2id$v=19$m=19456,t=2,p=1$..."   # optional; write it with `resetline hash-pin`
//! ```
//!
//! Loading reports every problem at once, each naming the user's index, id, line and field
//! (unknown state word, hash that is not Argon2id or weaker than m=19456,t=2, duplicate id,
//! malformed mobile, email or date); unknown fields are refused. Writes rewrite the whole file
//! in this format and do not keep comments.
//!
//! # Lookups
//!
//! `EmployeeId` and `Username` match `id` exactly (after trimming). `Phone` compares digits
//! only (`+1 (555) 555-0199` matches `+15555550199`). `Email` is case-insensitive. A phone or
//! email shared by several users finds nothing, so a claim can never pick the wrong person.

mod file;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use resetline_engine::{Account, AccountState, BackendError, Secret, SetSecretError};
use resetline_flow::model::LookupBy;

pub use file::{LoadError, Problem};

use crate::pin::PinHashing;

use file::Users;

/// The backend name in [`BackendError`]s.
const BACKEND: &str = "directory";

/// The prompt spoken when the directory refuses a reset for the account itself.
const NOT_ALLOWED_PROMPT: &str = "not_allowed";

/// A directory backed by a YAML file of users. See the module docs for the format.
pub struct EmbeddedDirectory {
    shared: Arc<Shared>,
    /// The bound on Argon2 work ([`PinHashing::shared`] unless set).
    hashing: PinHashing,
}

/// State shared with blocking tasks.
struct Shared {
    /// The file (canonical path, so the temp file lands next to the real file).
    path: PathBuf,
    /// The current users; replaced whole, only after a successful write.
    users: RwLock<Arc<Users>>,
    /// Serialises read-modify-write cycles. Taken only on blocking threads.
    writer: Mutex<()>,
}

impl fmt::Debug for EmbeddedDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedDirectory")
            .field("path", &self.shared.path)
            .field("users", &self.shared.snapshot().users.len())
            .finish()
    }
}

impl Shared {
    fn snapshot(&self) -> Arc<Users> {
        // Only a whole-Arc assignment happens under the write lock, so a poisoned lock still
        // holds a consistent value.
        Arc::clone(&self.users.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Sets `account`'s PIN hash, writes the file and only then publishes the change. Runs on
    /// a blocking thread, start to finish, so a dropped caller cannot tear it.
    fn store_hash(&self, account: &str, hash: String) -> Result<(), SetSecretError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = (*self.snapshot()).clone();
        let global = next.allow_phone_reset;
        let user = next.get_mut(account).ok_or_else(|| {
            SetSecretError::Backend(BackendError::new(BACKEND, "no such account"))
        })?;
        refuse_reset(user.state, global && user.allow_phone_reset)?;
        user.pin_hash = Some(hash);
        let text = file::render(&next);
        match file::persist(&self.path, &text) {
            Ok(outcome) => {
                if let file::Persisted::DirectorySyncFailed(error) = outcome {
                    tracing::warn!(message = "users file replaced but its directory could not be synced", path = %self.path.display(), %error);
                }
                *self.users.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
                Ok(())
            }
            Err(error) => Err(SetSecretError::Backend(BackendError::new(
                BACKEND,
                format!(
                    "cannot write {}: {error}; nothing changed",
                    self.path.display()
                ),
            ))),
        }
    }
}

/// Why the account itself cannot take a new secret, if it cannot (shared with the LDAP
/// directory).
pub(crate) fn refuse_reset(state: AccountState, allowed: bool) -> Result<(), SetSecretError> {
    match state {
        AccountState::Locked => Err(SetSecretError::Locked),
        AccountState::Disabled => Err(SetSecretError::Rejected {
            prompt: NOT_ALLOWED_PROMPT.into(),
            reason: "the account is disabled".into(),
        }),
        AccountState::Active if !allowed => Err(SetSecretError::Rejected {
            prompt: NOT_ALLOWED_PROMPT.into(),
            reason: "phone reset is not allowed for this account".into(),
        }),
        AccountState::Active => Ok(()),
    }
}

/// Digits of a phone number, in order.
fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The only element matching, or `None` when none or several match.
fn unique<'u>(mut matches: impl Iterator<Item = &'u file::User>) -> Option<&'u file::User> {
    let first = matches.next()?;
    if matches.next().is_some() {
        None
    } else {
        Some(first)
    }
}

fn join_error(e: tokio::task::JoinError) -> BackendError {
    BackendError::new(BACKEND, format!("blocking task failed: {e}"))
}

impl EmbeddedDirectory {
    /// Reads and checks the users file at `path`. Every problem is reported at once.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let io = |error| LoadError::Io {
            path: path.to_path_buf(),
            error,
        };
        let canonical = std::fs::canonicalize(path).map_err(io)?;
        let text = std::fs::read_to_string(&canonical).map_err(io)?;
        let users = file::parse(path, &text)?;
        Ok(EmbeddedDirectory {
            shared: Arc::new(Shared {
                path: canonical,
                users: RwLock::new(Arc::new(users)),
                writer: Mutex::new(()),
            }),
            hashing: PinHashing::shared(),
        })
    }

    /// Runs this directory's Argon2 work under `hashing` instead of the process-wide bound.
    pub fn with_pin_hashing(mut self, hashing: PinHashing) -> Self {
        self.hashing = hashing;
        self
    }

    /// The file this directory reads and writes (canonical form).
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// How many users the directory holds.
    pub fn len(&self) -> usize {
        self.shared.snapshot().users.len()
    }

    /// True when the file lists no user.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn find_now(&self, by: LookupBy, value: &str) -> Result<Option<Account>, BackendError> {
        Ok(self.lookup(by, value))
    }

    fn lookup(&self, by: LookupBy, value: &str) -> Option<Account> {
        let users = self.shared.snapshot();
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let found = match by {
            LookupBy::EmployeeId | LookupBy::Username => users.get(value),
            LookupBy::Phone => {
                let wanted = digits(value);
                if wanted.is_empty() {
                    return None;
                }
                unique(
                    users
                        .users
                        .iter()
                        .filter(|u| u.mobile.as_deref().is_some_and(|m| digits(m) == wanted)),
                )
            }
            LookupBy::Email => {
                let wanted = value.to_lowercase();
                unique(users.users.iter().filter(|u| {
                    u.email
                        .as_deref()
                        .is_some_and(|e| e.to_lowercase() == wanted)
                }))
            }
        };
        found.map(|u| u.account(users.allow_phone_reset))
    }

    async fn verify_now(&self, account: &str, pin: &Secret) -> Result<bool, BackendError> {
        let stored = self
            .shared
            .snapshot()
            .get(account)
            .and_then(|u| u.pin_hash.clone());
        self.hashing
            .check(pin, stored.as_deref())
            .await
            .map_err(|m| BackendError::new(BACKEND, m))
    }

    async fn set_now(&self, account: &str, secret: &Secret) -> Result<(), SetSecretError> {
        let current = self.shared.snapshot();
        let user = current.get(account).ok_or_else(|| {
            SetSecretError::Backend(BackendError::new(BACKEND, "no such account"))
        })?;
        refuse_reset(
            user.state,
            current.allow_phone_reset && user.allow_phone_reset,
        )?;
        if secret.is_empty() {
            return Err(SetSecretError::Rejected {
                prompt: "policy_too_short".into(),
                reason: "empty secret".into(),
            });
        }
        let hash = self
            .hashing
            .hash(secret)
            .await
            .map_err(|e| SetSecretError::Backend(BackendError::new(BACKEND, e.to_string())))?;
        let shared = Arc::clone(&self.shared);
        let account = account.to_owned();
        tokio::task::spawn_blocking(move || shared.store_hash(&account, hash))
            .await
            .map_err(|e| SetSecretError::Backend(join_error(e)))?
    }
}

crate::own_methods_directory!(EmbeddedDirectory);

#[cfg(test)]
mod tests;
