//! HTTPS for the webhook listener: rustls with a certificate that can be replaced while
//! serving. [`Tls::load`] reads a PEM certificate chain and key (`tls: { cert, key }`),
//! [`crate::serve::serve_tls`] serves through it and [`keep_fresh`] reloads it on SIGHUP or
//! when either file changes.
//!
//! Invariants:
//! - **TLS 1.2 and 1.3 only** (rustls speaks nothing older), ALPN `http/1.1`, the cipher
//!   suites of rustls' aws-lc-rs provider.
//! - **A TLS listener speaks TLS only**: a plain HTTP request fails the handshake and its
//!   connection is closed without an answer. The handshake counts toward the head's time
//!   (`server.header_read_timeout_ms`), so a client that stalls in it is cut off too.
//! - **The certificate in use passed every check when it was loaded**: the files parse, the
//!   key is the certificate's, and the leaf was valid at that moment (not expired, not yet to
//!   come). A reload that fails any check keeps the certificate in use and says why in the
//!   log; connections already open keep theirs either way, so a reload never drops a call.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

/// Where the PEM certificate chain (leaf first) and its private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate could not be used.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The certificate file holds no PEM certificate, or one that does not parse.
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The key file holds no usable private key.
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The key is not the certificate's.
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The leaf certificate is outside its validity period.
    NotValidNow {
        /// The certificate file.
        path: PathBuf,
        /// "expired on …" or "not valid before …".
        detail: String,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, source } => {
                write!(f, "`tls`: cannot read {}: {source}", path.display())
            }
            TlsError::Certificate { path, detail } => {
                write!(f, "`tls.cert` {}: {detail}", path.display())
            }
            TlsError::Key { path, detail } => write!(f, "`tls.key` {}: {detail}", path.display()),
            TlsError::KeyMismatch { cert, key } => write!(
                f,
                "`tls`: the key {} does not belong to the certificate {}",
                key.display(),
                cert.display()
            ),
            TlsError::NotValidNow { path, detail } => {
                write!(f, "`tls.cert` {}: the certificate {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What the log says of a loaded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The leaf's subject (RFC 4514 form).
    pub subject: String,
    /// The end of the leaf's validity, seconds since the epoch.
    pub not_after: i64,
}

/// The listener's TLS: a fixed rustls configuration whose certificate is swapped on reload.
pub struct Tls {
    files: TlsFiles,
    slot: Arc<Slot>,
    acceptor: TlsAcceptor,
    /// The files' digests when last read, loaded or not.
    seen: Mutex<Stamp>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("in_use", &self.info())
            .finish_non_exhaustive()
    }
}

/// The certificate in use.
#[derive(Debug)]
struct Slot(RwLock<(Arc<CertifiedKey>, CertInfo)>);

impl ResolvesServerCert for Slot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).0.clone())
    }
}

/// SHA-256 of each file's content (none: unreadable). Content, not modification times: two
/// writes within one tick of the file system's clock, of files of one length, look alike.
type Stamp = [Option<[u8; 32]>; 2];

impl Tls {
    /// Loads and checks the files as of `now` (see the module doc).
    pub fn load(files: TlsFiles, now: SystemTime) -> Result<Tls, TlsError> {
        let seen = stamp(&files);
        let (key, info) = read(&files, now)?;
        let slot = Arc::new(Slot(RwLock::new((Arc::new(key), info))));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Certificate {
                path: files.cert.clone(),
                detail: format!("TLS configuration: {e}"),
            })?
            .with_no_client_auth()
            .with_cert_resolver(slot.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            files,
            slot,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            seen: Mutex::new(seen),
        })
    }

    /// Reads the files again and, if they pass every check as of `now`, serves new
    /// connections with them; otherwise the certificate in use stays.
    pub fn reload(&self, now: SystemTime) -> Result<CertInfo, TlsError> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = stamp(&self.files);
        let (key, info) = read(&self.files, now)?;
        *self.slot.0.write().unwrap_or_else(|e| e.into_inner()) = (Arc::new(key), info.clone());
        Ok(info)
    }

    /// Whether either file's content changed since it was last read (a rename over it, as a
    /// Kubernetes Secret update does, counts).
    pub fn files_changed(&self) -> bool {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) != stamp(&self.files)
    }

    /// The certificate in use.
    pub fn info(&self) -> CertInfo {
        self.slot
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// The files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The acceptor of new connections (always the certificate in use).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &Path| std::fs::read(p).ok().map(|b| Sha256::digest(&b).into());
    [one(&files.cert), one(&files.key)]
}

/// The checked key and chain (see the module doc).
fn read(files: &TlsFiles, now: SystemTime) -> Result<(CertifiedKey, CertInfo), TlsError> {
    let cert_pem = std::fs::read(&files.cert).map_err(|source| TlsError::Read {
        path: files.cert.clone(),
        source,
    })?;
    let key_pem = std::fs::read(&files.key).map_err(|source| TlsError::Read {
        path: files.key.clone(),
        source,
    })?;
    let bad_cert = |detail: String| TlsError::Certificate {
        path: files.cert.clone(),
        detail,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(format!("not PEM certificates: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| bad_cert("holds no certificate (`-----BEGIN CERTIFICATE-----`)".into()))?;
    let info = validity(leaf, now).map_err(|detail| match detail {
        Validity::Unparsable(d) => bad_cert(format!("the first certificate does not parse: {d}")),
        Validity::Outside(detail) => TlsError::NotValidNow {
            path: files.cert.clone(),
            detail,
        },
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        detail: format!("no PEM private key: {e}"),
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = certified(chain, key, &provider, files)?;
    Ok((certified, info))
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
    files: &TlsFiles,
) -> Result<CertifiedKey, TlsError> {
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: files.key.clone(),
            detail: format!("not a usable private key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| TlsError::KeyMismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
    })?;
    Ok(certified)
}

enum Validity {
    Unparsable(String),
    Outside(String),
}

/// The leaf's subject and end of validity, if `now` is inside its validity period.
fn validity(leaf: &CertificateDer<'_>, now: SystemTime) -> Result<CertInfo, Validity> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| Validity::Unparsable(e.to_string()))?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let v = cert.validity();
    if now > v.not_after.timestamp() {
        return Err(Validity::Outside(format!("expired on {}", v.not_after)));
    }
    if now < v.not_before.timestamp() {
        return Err(Validity::Outside(format!(
            "is not valid before {}",
            v.not_before
        )));
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        not_after: v.not_after.timestamp(),
    })
}

/// Reloads `tls` on SIGHUP and when its files change (checked every `poll`), until
/// `shutdown` completes; each outcome is logged. `now` is the clock.
pub async fn keep_fresh(
    tls: Arc<Tls>,
    now: impl Fn() -> SystemTime,
    poll: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; TLS files are still watched");
            None
        }
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let why = tokio::select! {
            () = &mut shutdown => return,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
            () = tokio::time::sleep(poll) => {
                if !tls.files_changed() {
                    continue;
                }
                "files changed"
            }
        };
        match tls.reload(now()) {
            Ok(info) => tracing::info!(
                reason = why,
                subject = %info.subject,
                not_after = info.not_after,
                "TLS certificate reloaded"
            ),
            Err(e) => tracing::error!(
                reason = why,
                error = %e,
                "TLS certificate not reloaded; the one in use stays"
            ),
        }
    }
}
