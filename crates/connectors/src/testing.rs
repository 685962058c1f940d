//! Test support (feature `testing`): [`Slapd`], a real OpenLDAP server (Debian `slapd` 2.5)
//! on 127.0.0.1 with a generated `cn=config`, an mdb database, the ppolicy overlay and seeded
//! users, for this crate's integration tests and the cli's end-to-end tests; [`samba`], a real
//! Active Directory domain controller (Samba) for the same. One module per server; what they
//! share (running a set-up command, the private CA and server certificate, the demo PIN
//! hashes) lives here.
//!
//! Invariant: each [`Slapd`] owns a temporary directory and a child process; dropping it kills
//! the process and removes the directory, so tests run in parallel and leave nothing behind.
//!
//! # The directory
//!
//! Suffix [`BASE_DN`]; the service account [`SERVICE_DN`] / [`SERVICE_PASSWORD`] may read
//! everything and write `userPassword` (never the rootdn, which would bypass ppolicy). The
//! default policy ([`DEFAULT_POLICY_DN`]): `pwdMinLength: 8`, `pwdCheckQuality: 2`,
//! `pwdInHistory: 5`, `pwdLockout: TRUE`, `pwdMaxFailure: 5`. Users (`uid` = `employeeNumber`):
//!
//! | uid | who | state | password | notes |
//! |---|---|---|---|---|
//! | 100001 | Alex Rivera, mobile +15555550199, alex.rivera@example.com | active | `31415926` | `resetlinePinHash` = the demo PIN hash of `examples/demo/users.yaml` |
//! | 100002 | Blake Chen | locked (`pwdAccountLockedTime`) | `27182818` | |
//! | 100003 | Casey Diaz | disabled (`000001010000Z`) | `16180339` | |
//! | 100004 | Dana Evans | active | `14142135` | policy `cn=strict`: `pwdMinAge` one day |
//! | 100005, 100006 | Eli / Fran Shared | active | `11235813` | both mobile +15555550111 (ambiguous); 100005 has a too-weak PIN hash |
//! | 100007 | Gale Hart | active | `17320508` | policy `cn=tight`: `pwdLockout: TRUE`, `pwdMaxFailure: 3` |
//!
//! `ou=branch,ou=people` is a referral, so subtree searches also return a search reference
//! (as Active Directory does for its partitions).
//!
//! The schema adds `resetlinePinHash` (auxiliary class `resetlineAccount`) under OpenLDAP's
//! experimental OID arc, only for the tests of PIN hashes kept in the directory.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use resetline_engine::Secret;

use crate::ldap::{BindGuard, Flavor, LdapConfig, PinCheck};

pub mod samba;

/// The directory suffix.
pub const BASE_DN: &str = "dc=example,dc=com";
/// The service account Resetline binds as.
pub const SERVICE_DN: &str = "cn=resetline,ou=services,dc=example,dc=com";
/// Its password.
pub const SERVICE_PASSWORD: &str = "service-secret";
/// The rootdn (only for test set-up and inspection, never for resets).
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-secret";
/// The attribute that holds PIN hashes in this directory.
pub const PIN_HASH_ATTRIBUTE: &str = "resetlinePinHash";
/// The default password policy entry (`olcPPolicyDefault`).
pub const DEFAULT_POLICY_DN: &str = "cn=default,ou=policies,dc=example,dc=com";

/// The DN of user `uid`.
pub fn user_dn(uid: &str) -> String {
    format!("uid={uid},ou=people,{BASE_DN}")
}

/// A running `slapd`; killed on drop.
#[derive(Debug)]
pub struct Slapd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: Option<u16>,
}

/// Where Debian installs the schema LDIFs and modules.
const SCHEMA_DIR: &str = "/etc/ldap/schema";
const MODULE_DIR: &str = "/usr/lib/ldap";

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| {
        format!(
            "cannot run {cmd:?}: {e} (are the packages of scripts/install-test-deps installed?)"
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn config_ldif(dir: &Path, tls: bool) -> String {
    let d = dir.display();
    let tls_lines = if tls {
        format!(
            "olcTLSCACertificateFile: {d}/ca.pem\nolcTLSCertificateFile: {d}/server.pem\nolcTLSCertificateKeyFile: {d}/server.key\n"
        )
    } else {
        String::new()
    };
    format!(
        "dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {d}/slapd.pid
{tls_lines}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {MODULE_DIR}
olcModuleLoad: back_mdb
olcModuleLoad: ppolicy

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file://{SCHEMA_DIR}/core.ldif

include: file://{SCHEMA_DIR}/cosine.ldif

include: file://{SCHEMA_DIR}/inetorgperson.ldif

dn: cn=resetline,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: resetline
olcAttributeTypes: ( 1.3.6.1.4.1.4203.666.11.99.1 NAME '{PIN_HASH_ATTRIBUTE}' DESC 'Argon2id PHC hash of the phone PIN (Resetline tests)' EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcObjectClasses: ( 1.3.6.1.4.1.4203.666.11.99.2 NAME 'resetlineAccount' AUXILIARY MAY {PIN_HASH_ATTRIBUTE} )

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {BASE_DN}
olcRootDN: {ADMIN_DN}
olcRootPW: {ADMIN_PASSWORD}
olcDbDirectory: {d}/data
olcDbMaxSize: 67108864
olcDbIndex: objectClass eq
olcAccess: {{0}}to attrs=userPassword by dn.exact=\"{SERVICE_DN}\" write by self write by anonymous auth by * none
olcAccess: {{1}}to * by dn.exact=\"{SERVICE_DN}\" read by self read by * none

dn: olcOverlay={{0}}ppolicy,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {{0}}ppolicy
olcPPolicyDefault: cn=default,ou=policies,{BASE_DN}
olcPPolicyUseLockout: TRUE
"
    )
}

/// The demo PIN hash of user 100001 in `examples/demo/users.yaml`.
const DEMO_PIN_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$2mN0YVY7J7Gz/c16nvs8jA$qrWjZYvaWelPcFxrY6/zRKQMU2Ce162cgLSE5t+60gc";

/// An Argon2id hash below the accepted floor (m=4096, t=1).
const WEAK_PIN_HASH: &str = "$argon2id$v=19$m=4096,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$4hBhhHdw6Vhz1yZjPk8zfyEawSTxE3yJ8gfAE3wEnDs";

fn data_ldif() -> String {
    let user = |uid: &str, cn: &str, sn: &str, password: &str, extra: &str| {
        format!(
            "dn: {}\nobjectClass: inetOrgPerson\nobjectClass: resetlineAccount\nuid: {uid}\nemployeeNumber: {uid}\ncn: {cn}\nsn: {sn}\nuserPassword: {password}\n{extra}\n",
            user_dn(uid)
        )
    };
    let mut s = format!(
        "dn: {BASE_DN}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{BASE_DN}
objectClass: organizationalUnit
ou: people

dn: ou=services,{BASE_DN}
objectClass: organizationalUnit
ou: services

dn: ou=policies,{BASE_DN}
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,{BASE_DN}
objectClass: device
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdMinLength: 8
pwdCheckQuality: 2
pwdInHistory: 5
pwdLockout: TRUE
pwdMaxFailure: 5
pwdAllowUserChange: TRUE

dn: cn=strict,ou=policies,{BASE_DN}
objectClass: device
objectClass: pwdPolicy
cn: strict
pwdAttribute: userPassword
pwdMinLength: 8
pwdCheckQuality: 2
pwdMinAge: 86400

dn: cn=tight,ou=policies,{BASE_DN}
objectClass: device
objectClass: pwdPolicy
cn: tight
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 3

dn: ou=branch,ou=people,{BASE_DN}
objectClass: referral
objectClass: extensibleObject
ou: branch
ref: ldap://branch.example.com/ou=people,dc=branch,dc=example,dc=com

dn: {SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: resetline
userPassword: {SERVICE_PASSWORD}

"
    );
    s += &user(
        "100001",
        "Alex Rivera",
        "Rivera",
        "31415926",
        &format!(
            "mobile: +15555550199\nmail: alex.rivera@example.com\n{PIN_HASH_ATTRIBUTE}: {DEMO_PIN_HASH}\n"
        ),
    );
    s += &user(
        "100002",
        "Blake Chen",
        "Chen",
        "27182818",
        "mobile: +15555550142\nmail: blake.chen@example.com\npwdAccountLockedTime: 20260101000000Z\n",
    );
    s += &user(
        "100003",
        "Casey Diaz",
        "Diaz",
        "16180339",
        "mobile: +15555550163\npwdAccountLockedTime: 000001010000Z\n",
    );
    s += &user(
        "100004",
        "Dana Evans",
        "Evans",
        "14142135",
        &format!("mobile: +15555550177\npwdPolicySubentry: cn=strict,ou=policies,{BASE_DN}\n"),
    );
    s += &user(
        "100005",
        "Eli Shared",
        "Shared",
        "11235813",
        &format!("mobile: +15555550111\n{PIN_HASH_ATTRIBUTE}: {WEAK_PIN_HASH}\n"),
    );
    s += &user(
        "100006",
        "Fran Shared",
        "Shared",
        "11235813",
        "mobile: +15555550111\n",
    );
    s += &user(
        "100007",
        "Gale Hart",
        "Hart",
        "17320508",
        &format!("mobile: +15555550188\npwdPolicySubentry: cn=tight,ou=policies,{BASE_DN}\n"),
    );
    s
}

/// A private CA and a server certificate for 127.0.0.1 / localhost, made with `openssl`.
fn make_certificates(dir: &Path) -> Result<(), String> {
    let p = |f: &str| dir.join(f);
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Resetline Test CA",
            "-keyout",
        ])
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")))?;
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-subj", "/CN=localhost", "-keyout"])
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")))?;
    std::fs::write(
        p("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| format!("write san.ext: {e}"))?;
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .args(["-CAcreateserial", "-extfile"])
        .arg(p("san.ext"))
        .arg("-out")
        .arg(p("server.pem")))?;
    Ok(())
}

/// Starts slapd on `port` (and `tls_port` for ldaps) and waits until it accepts connections.
fn spawn(dir: &Path, port: u16, tls_port: Option<u16>) -> Result<Child, String> {
    let log_path = dir.join("slapd.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("log: {e}"))?;
    let mut urls = format!("ldap://127.0.0.1:{port}/");
    if let Some(p) = tls_port {
        urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
    }
    let mut child = Command::new("slapd")
        .arg("-h")
        .arg(&urls)
        .arg("-F")
        .arg(dir.join("slapd.d"))
        .args(["-d", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| {
            format!("cannot start slapd: {e} (is the Debian `slapd` package installed?)")
        })?;
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("slapd exited ({status}): {}", read_log()));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("slapd did not answer within 10 s: {}", read_log()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Slapd {
    /// Starts a seeded `slapd` on `ldap://127.0.0.1:<free port>/`.
    pub fn start() -> Result<Slapd, String> {
        Slapd::launch(false)
    }

    /// Like [`Slapd::start`], with TLS: StartTLS on the ldap:// port and an `ldaps://` port,
    /// a certificate for 127.0.0.1 / localhost signed by a private CA ([`Slapd::ca_file`]).
    pub fn start_with_tls() -> Result<Slapd, String> {
        Slapd::launch(true)
    }

    fn launch(tls: bool) -> Result<Slapd, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let conf = dir.path().join("slapd.d");
        for sub in [&conf, &dir.path().join("data")] {
            std::fs::create_dir_all(sub).map_err(|e| format!("mkdir: {e}"))?;
        }
        if tls {
            make_certificates(dir.path())?;
        }
        let config = dir.path().join("config.ldif");
        let data = dir.path().join("data.ldif");
        std::fs::write(&config, config_ldif(dir.path(), tls)).map_err(|e| e.to_string())?;
        std::fs::write(&data, data_ldif()).map_err(|e| e.to_string())?;
        run(Command::new("slapadd")
            .args(["-n0", "-F"])
            .arg(&conf)
            .arg("-l")
            .arg(&config))?;
        run(Command::new("slapadd")
            .args(["-n1", "-F"])
            .arg(&conf)
            .arg("-l")
            .arg(&data))?;
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let tls_port = if tls { Some(free_port()?) } else { None };
            match spawn(dir.path(), port, tls_port) {
                Ok(child) => {
                    return Ok(Slapd {
                        child: Some(child),
                        dir,
                        port,
                        tls_port,
                    });
                }
                // Most likely another process took the port in between: try new ones.
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// What slapd wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// The ldap:// port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://localhost:<port>`, when started with TLS.
    pub fn ldaps_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("ldaps://localhost:{p}"))
    }

    /// The private CA's certificate (PEM), when started with TLS.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls_port.map(|_| self.dir.path().join("ca.pem"))
    }

    /// A Resetline configuration for this server: OpenLDAP flavor, the service account,
    /// default attributes with PINs checked against [`PIN_HASH_ATTRIBUTE`], a 2 s timeout.
    pub fn config(&self) -> LdapConfig {
        let mut c = LdapConfig::new(
            &self.url(),
            SERVICE_DN,
            Secret::new(SERVICE_PASSWORD),
            BASE_DN,
            Flavor::OpenLdap,
        );
        c.timeout = Duration::from_secs(2);
        c.attributes.pin_hash = Some(PIN_HASH_ATTRIBUTE.into());
        c
    }

    /// [`Slapd::config`] with PINs checked by binding as the user (the PIN is the directory
    /// password), the threshold read from [`DEFAULT_POLICY_DN`] or a user's own policy.
    pub fn bind_mode_config(&self) -> LdapConfig {
        let mut c = self.config();
        c.attributes.pin_hash = None;
        c.pin_check = PinCheck::BindCountsTowardDirectoryLockout(BindGuard {
            policy_dn: Some(DEFAULT_POLICY_DN.into()),
            max_failures: None,
        });
        c
    }

    /// The result code of a simple bind as user `uid` with `password` on a fresh connection
    /// (0 success, 49 invalid credentials): what the person's own login would get.
    pub async fn user_bind(&self, uid: &str, password: &str) -> Result<u32, String> {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        let rc = ldap
            .simple_bind(&user_dn(uid), password)
            .await
            .map_err(|e| format!("bind: {e}"))?
            .rc;
        let _ = ldap.unbind().await;
        Ok(rc)
    }

    /// Stops the server and starts it again on the same port(s) with the same data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let mut last = String::new();
        // The old listener may linger for a moment after the kill.
        for _ in 0..20 {
            match spawn(self.dir.path(), self.port, self.tls_port) {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }

    /// Kills the server now (for "directory down" tests); idempotent.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
