//! Argon2id PIN hashing and verification: the one verifier behind every directory that checks
//! PINs against a stored hash (the embedded users file, an LDAP attribute, a SCIM or Okta
//! attribute), and [`PinHashing`], the process-wide bound on Argon2 work.
//!
//! Invariants: every hash this module writes is Argon2id v19 with m=19456 KiB, t=2, p=1 and a
//! fresh 16-byte salt from the OS CSPRNG; verification compares in constant time (the argon2
//! crate's `PasswordVerifier`); neither the PIN nor the hash ever appears in an error. A
//! stored hash asking for more than the ceiling ([`MAX_M_COST`], [`MAX_T_COST`],
//! [`MAX_P_COST`]) is refused before any work. At most [`PinHashing`]'s limit of hashes run at
//! once, each on one of its own worker threads: the permit is taken while the caller still
//! waits (so a caller that gives up, such as a step out of time, leaves the queue and nothing
//! runs for it) and moves into the job, which holds it until the hash is done even if the
//! caller has gone, so the bound holds for abandoned checks too.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use resetline_engine::Secret;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Argon2id memory cost in KiB (OWASP Password Storage Cheat Sheet; security check 26).
pub(crate) const M_COST: u32 = 19_456;
/// Argon2id iterations.
pub(crate) const T_COST: u32 = 2;
/// Argon2id parallelism.
pub(crate) const P_COST: u32 = 1;

/// Largest memory cost in KiB a stored hash may ask for (64 MiB): a hand-edited file or a
/// directory attribute cannot make a check exhaust the host's memory. With [`PinHashing`]'s
/// limit `n`, Argon2 holds at most `n` x 64 MiB (`n` x 19 MiB at the shipped cost).
pub const MAX_M_COST: u32 = 64 * 1024;
/// Largest iteration count a stored hash may ask for.
pub const MAX_T_COST: u32 = 10;
/// Largest parallelism a stored hash may ask for (lanes are computed one after the other).
pub const MAX_P_COST: u32 = 4;

/// The hash of a value recorded nowhere, with the production parameters. PINs for unknown
/// accounts (or accounts without a PIN) are checked against it so that the answer takes as
/// long as a real check.
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$4Ymcy6FaPfxD3rUfLqlJfQ$gei7DN39EbXiLamJrqdOWUV86J4XBtp8JrMzE5dcPBI";

/// Hashing a PIN failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashError {
    /// The PIN is empty.
    Empty,
    /// The OS random source failed, so no salt could be made.
    Random,
    /// The argon2 crate refused (its message; never contains the PIN).
    Argon2(String),
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashError::Empty => f.write_str("cannot hash an empty PIN"),
            HashError::Random => f.write_str("the OS random source failed: no salt"),
            HashError::Argon2(m) => write!(f, "argon2 failed: {m}"),
        }
    }
}

impl std::error::Error for HashError {}

/// Argon2id v19 of `pin` with `params` and the raw `salt` into `out`, computed in `blocks`
/// (grown to exactly what `params` needs, kept for the next call, zeroed after use).
fn derive(
    params: &Params,
    pin: &Secret,
    salt: &[u8],
    out: &mut [u8],
    blocks: &mut Vec<Block>,
) -> Result<(), argon2::Error> {
    let need = params.block_count();
    if blocks.len() < need {
        blocks.reserve_exact(need - blocks.len());
        blocks.resize(need, Block::default());
    }
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let derived = argon.hash_password_into_with_memory(
        pin.expose().as_bytes(),
        salt,
        out,
        &mut blocks[..need],
    );
    blocks[..need].fill(Block::default());
    derived
}

/// Hashes `pin` as an Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) with
/// a fresh random salt: the value to put in a user's `pin_hash`. CPU-heavy (tens of
/// milliseconds): call it off the async runtime (directories use [`PinHashing::hash`]).
pub fn hash_pin(pin: &Secret) -> Result<String, HashError> {
    hash_in(pin, &mut Vec::new())
}

/// [`hash_pin`] computed in `blocks`.
fn hash_in(pin: &Secret, blocks: &mut Vec<Block>) -> Result<String, HashError> {
    if pin.is_empty() {
        return Err(HashError::Empty);
    }
    let argon2 = |e: &dyn fmt::Display| HashError::Argon2(e.to_string());
    let params = Params::new(M_COST, T_COST, P_COST, None).map_err(|e| argon2(&e))?;
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| HashError::Random)?;
    let salt = Salt::new(&raw).map_err(|e| argon2(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    derive(&params, pin, &raw, &mut out, blocks).map_err(|e| argon2(&e))?;
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| argon2(&e))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| argon2(&e))?),
    };
    Ok(hash.to_string())
}

/// Checks `pin` against a stored PHC string in constant time, with the parameters the hash
/// names. `Ok(false)` for a wrong PIN; `Err` (a message without the hash) when the stored
/// value cannot be used. CPU-heavy and unbounded: callers go through [`PinHashing::check`],
/// which validates the parameters first.
#[cfg(test)]
fn verify(pin: &Secret, stored: &str) -> Result<bool, String> {
    verify_in(pin, stored, &mut Vec::new())
}

/// [`verify`] computed in `blocks`. Only Argon2id v19 is computed ([`validate_hash`] refuses
/// anything else before).
fn verify_in(pin: &Secret, stored: &str, blocks: &mut Vec<Block>) -> Result<bool, String> {
    let parsed =
        PasswordHash::new(stored).map_err(|e| format!("stored PIN hash unreadable: {e}"))?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err("stored PIN hash has no salt or hash part".into());
    };
    let params = Params::try_from(&parsed).map_err(|e| format!("PIN check failed: {e}"))?;
    let mut out = [0u8; 64];
    let out = out
        .get_mut(..expected.len())
        .ok_or("stored PIN hash is too long")?;
    derive(&params, pin, salt, out, blocks).map_err(|e| format!("PIN check failed: {e}"))?;
    Ok(bool::from(out.ct_eq(expected.as_bytes())))
}

/// Checks that `stored` is an Argon2id v19 PHC string at least as strong as the production
/// parameters and not absurdly expensive. The message never quotes the value.
pub(crate) fn validate_hash(stored: &str) -> Result<(), String> {
    const SHAPE: &str =
        "expected an Argon2id PHC string like $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>";
    let parsed =
        PasswordHash::new(stored).map_err(|e| format!("not a PHC string ({e}); {SHAPE}"))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err(format!(
            "algorithm `{}` is not argon2id; {SHAPE}",
            parsed.algorithm
        ));
    }
    if parsed.version != Some(0x13) {
        return Err(format!("version must be v=19; {SHAPE}"));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(format!("salt or hash part missing; {SHAPE}"));
    }
    let params = Params::try_from(&parsed).map_err(|e| format!("bad parameters ({e}); {SHAPE}"))?;
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if m < M_COST || t < T_COST {
        return Err(format!(
            "parameters m={m},t={t} are weaker than the minimum m={M_COST},t={T_COST}; re-hash with `resetline hash-pin`"
        ));
    }
    if m > MAX_M_COST || t > MAX_T_COST || p > MAX_P_COST {
        return Err(format!(
            "parameters m={m},t={t},p={p} exceed the ceiling m={MAX_M_COST},t={MAX_T_COST},p={MAX_P_COST}; refused without computing it (re-hash with `resetline hash-pin`)"
        ));
    }
    Ok(())
}

/// The bound on concurrent Argon2 work (PIN checks and new PIN hashes): `limit` worker
/// threads of its own and as many permits, shared by every directory that holds a clone.
/// [`PinHashing::shared`] is the process-wide one. Each worker computes in one Argon2 buffer
/// of its own, reused and zeroed after every hash, so Argon2 memory is at most `limit` x the
/// largest cost seen (19 MiB at the shipped cost, [`MAX_M_COST`] at worst), whatever the
/// allocator would have kept after separate allocations on threads started on demand.
#[derive(Clone)]
pub struct PinHashing {
    permits: Arc<Semaphore>,
    limit: usize,
    /// Jobs for the worker threads; they end when the last clone is dropped.
    jobs: Arc<Mutex<mpsc::Sender<Job>>>,
}

/// Work for a worker thread.
type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    /// A worker thread's Argon2 memory, reused by every hash it computes: one buffer per
    /// worker, at most [`MAX_M_COST`] KiB, instead of an allocation per hash that the
    /// allocator may keep per thread afterwards.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

impl fmt::Debug for PinHashing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinHashing")
            .field("limit", &self.limit)
            .field("free", &self.permits.available_permits())
            .finish()
    }
}

/// The process-wide bound, set once by [`PinHashing::configure_shared`] or on first use.
static SHARED: OnceLock<PinHashing> = OnceLock::new();

/// [`PinHashing::configure_shared`] came after the shared bound was already in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlreadyConfigured {
    /// The limit in force.
    pub limit: usize,
}

impl fmt::Display for AlreadyConfigured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the PIN hashing bound is already in use with {} at once",
            self.limit
        )
    }
}

impl std::error::Error for AlreadyConfigured {}

impl PinHashing {
    /// A bound of `max_concurrent` hashes at once (at least 1), with that many worker
    /// threads (`resetline-argon2-<n>`).
    pub fn new(max_concurrent: usize) -> PinHashing {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for n in 0..max_concurrent.max(1) {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("resetline-argon2-{n}"))
                .spawn(move || {
                    loop {
                        // One job at a time; the lock is only held while waiting for one.
                        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        match job {
                            // A panicking job (never expected) loses its answer, not the thread.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(error) => tracing::error!(%error, "cannot start an Argon2 worker thread"),
            }
        }
        let permits = Arc::new(Semaphore::new(started));
        if started == 0 {
            // Every check fails at once rather than waiting for a thread that never comes.
            permits.close();
        }
        PinHashing {
            permits,
            limit: started,
            jobs: Arc::new(Mutex::new(tx)),
        }
    }

    /// The default limit: the number of CPU cores (Argon2 is CPU-bound; more at once only
    /// adds memory and latency).
    pub fn default_limit() -> usize {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    }

    /// Sets the process-wide bound; call it once at start, before any directory checks a PIN.
    pub fn configure_shared(max_concurrent: usize) -> Result<(), AlreadyConfigured> {
        let wanted = PinHashing::new(max_concurrent);
        SHARED.set(wanted).map_err(|_| AlreadyConfigured {
            limit: PinHashing::shared().limit,
        })
    }

    /// The process-wide bound ([`PinHashing::default_limit`] unless configured first).
    pub fn shared() -> PinHashing {
        SHARED
            .get_or_init(|| PinHashing::new(PinHashing::default_limit()))
            .clone()
    }

    /// How many hashes may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Runs `work` on a worker thread once a permit is free. Waiting for the permit is
    /// cancellable (drop the future); once `work` is handed over, it keeps the permit to the
    /// end, whether or not anybody still waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| "no Argon2 worker thread is running".to_string())?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let out = work();
            drop(permit);
            let _ = tx.send(out);
        });
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .map_err(|_| "the Argon2 worker threads have stopped".to_string())?;
        rx.await
            .map_err(|_| "an Argon2 worker thread failed".to_string())
    }

    /// Checks `pin` against `stored` (a PHC string read from a directory), or against a dummy
    /// hash of the same cost when there is none, so an unknown account takes as long and is
    /// `Ok(false)`. A stored value that is not Argon2id, below the floor or above the ceiling
    /// is an `Err` naming the problem, and is never computed.
    pub async fn check(&self, pin: &Secret, stored: Option<&str>) -> Result<bool, String> {
        if let Some(h) = stored {
            validate_hash(h)?;
        }
        let known = stored.is_some();
        let hash = stored.unwrap_or(DUMMY_HASH).to_owned();
        let pin = pin.clone();
        let matched = self
            .run(move || BLOCKS.with_borrow_mut(|blocks| verify_in(&pin, &hash, blocks)))
            .await??;
        Ok(known && matched)
    }

    /// [`hash_pin`] under the bound.
    pub async fn hash(&self, pin: &Secret) -> Result<String, HashError> {
        let pin = pin.clone();
        self.run(move || BLOCKS.with_borrow_mut(|blocks| hash_in(&pin, blocks)))
            .await
            .map_err(HashError::Argon2)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_with_production_parameters_and_unique_salts() {
        let pin = Secret::new("48213579");
        let a = hash_pin(&pin).unwrap();
        let b = hash_pin(&pin).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        let salt = |h: &str| h.split('$').nth(4).unwrap().to_owned();
        assert_ne!(salt(&a), salt(&b));
        assert_ne!(a, b);
        assert!(!a.contains("48213579"));
        validate_hash(&a).unwrap();
        assert!(verify(&pin, &a).unwrap());
        assert!(!verify(&Secret::new("48213578"), &a).unwrap());
    }

    #[test]
    fn refuses_an_empty_pin() {
        assert_eq!(hash_pin(&Secret::new("")), Err(HashError::Empty));
    }

    #[test]
    fn dummy_hash_is_valid_and_matches_nothing_typed() {
        validate_hash(DUMMY_HASH).unwrap();
        assert!(!verify(&Secret::new("0000"), DUMMY_HASH).unwrap());
    }

    /// A PHC string with the given parameters (salt and hash are placeholders: the check must
    /// refuse it before computing anything).
    fn phc(m: u32, t: u32, p: u32) -> String {
        format!(
            "$argon2id$v=19$m={m},t={t},p={p}$c29tZXNhbHRzb21lc2FsdA$4hBhhHdw6Vhz1yZjPk8zfyEawSTxE3yJ8gfAE3wEnDs"
        )
    }

    #[test]
    fn hashes_asking_for_more_than_the_ceiling_are_refused() {
        for (m, t, p) in [
            (1024 * 1024, 2, 1),
            (65 * 1024, 2, 1),
            (19_456, 16, 1),
            (19_456, 2, 8),
        ] {
            let e = validate_hash(&phc(m, t, p)).unwrap_err();
            assert!(e.contains("exceed the ceiling"), "{e}");
            assert!(!e.contains("c29tZXNhbHRzb21lc2FsdA"), "{e}");
        }
        validate_hash(&phc(MAX_M_COST, MAX_T_COST, MAX_P_COST)).unwrap();
    }

    #[tokio::test]
    async fn a_directory_hash_asking_for_a_gibibyte_is_refused_and_never_computed() {
        let bound = PinHashing::new(1);
        // The only permit is taken: a check that got as far as computing would wait for ever.
        let _held = Arc::clone(&bound.permits).acquire_owned().await.unwrap();
        let huge = phc(1024 * 1024, 2, 1);
        let checked = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            bound.check(&Secret::new("48213579"), Some(&huge)),
        )
        .await
        .expect("refused at once, without waiting for a permit");
        let e = checked.unwrap_err();
        assert!(e.contains("m=1048576") && e.contains("ceiling"), "{e}");
    }

    #[tokio::test]
    async fn checks_against_a_dummy_when_nothing_is_stored() {
        let bound = PinHashing::new(1);
        let pin = Secret::new("48213579");
        let stored = hash_pin(&pin).unwrap();
        assert_eq!(bound.check(&pin, Some(&stored)).await, Ok(true));
        assert_eq!(
            bound.check(&Secret::new("48213578"), Some(&stored)).await,
            Ok(false)
        );
        assert_eq!(bound.check(&pin, None).await, Ok(false));
        let made = bound.hash(&pin).await.unwrap();
        assert_eq!(bound.check(&pin, Some(&made)).await, Ok(true));
        assert_eq!(
            bound.permits.available_permits(),
            1,
            "every permit came back"
        );
    }

    #[test]
    fn validation_names_the_problem_without_the_value() {
        let weak = "$argon2id$v=19$m=4096,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$4hBhhHdw6Vhz1yZjPk8zfyEawSTxE3yJ8gfAE3wEnDs";
        let e = validate_hash(weak).unwrap_err();
        assert!(e.contains("weaker"), "{e}");
        assert!(!e.contains("c29tZXNhbHRzb21lc2FsdA"), "{e}");
        let e = validate_hash("$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4hBhhHdw6Vhz1yZjPk8zfyEawSTxE3yJ8gfAE3wEnDs").unwrap_err();
        assert!(e.contains("not argon2id"), "{e}");
        assert!(
            validate_hash("48213579")
                .unwrap_err()
                .contains("not a PHC string")
        );
        assert!(!validate_hash("48213579").unwrap_err().contains("48213579"));
    }
}
