//! [`SambaDc`]: a real Active Directory domain controller (Debian's Samba AD DC) with a
//! throw-away domain, seeded users and a least-privilege service account, for this crate's
//! integration tests and the cli's end-to-end tests.
//!
//! Invariant: each [`SambaDc`] owns a temporary copy of the provisioned domain, a `samba`
//! process in a network namespace of its own and the forwarders into it; dropping it kills the
//! process (the namespace ends with it), stops the forwarders and removes the copy. Nothing
//! listens anywhere but on loopback.
//!
//! # Where it listens: a network namespace per DC
//!
//! Samba's LDAP server cannot be moved off its ports: `source4/ldap_server/ldap_server.c`
//! binds 389 and 636 (and the global catalog's 3268/3269) with the numbers written in the
//! code, and smb.conf has port settings for SMB, DNS, Kerberos and CLDAP, none for LDAP.
//! Taking 389/636 on the test machine's 127.0.0.1 would need a machine-wide lock so that two
//! test processes never start two DCs at once (every AD test of the workspace would wait for
//! the one before), and would collide with whatever else holds those ports, such as the
//! system `slapd` that Debian starts after `apt-get install slapd` on a machine with systemd.
//! So every DC runs in a network namespace of its own (`unshare --net`; root, as binding
//! ports below 1024 needs anyway): there Samba binds 127.0.0.1:389/636 of that namespace's own
//! loopback, and only those (`interfaces = lo`, `bind interfaces only = yes`,
//! `server services = ldap`). For each of the two ports the harness listens on a free port of
//! the test's 127.0.0.1 and copies bytes both ways to a connection that a thread inside the
//! namespace (`setns`) opens, so TLS runs end to end between the client and Samba. The
//! namespace has no name in /run/netns and nothing to clean up: it ends with the process.
//!
//! # Provisioned once, copied per DC
//!
//! `samba-tool domain provision` and the seeding below take 10-20 s, more than a test should
//! wait each time. The seeded domain is kept as a template directory in the system temporary
//! directory, named after a hash of this file and of `samba --version` (a changed recipe or
//! Samba gets a new one), and provisioned again when older than a day (its certificates last
//! two). An exclusive `flock` on `<template>.lock` guards the provisioning and a shared one
//! each copy, so parallel tests and test binaries provision once per run. A DC starts from a
//! copy (`cp -a`) of the template in a second or two.
//!
//! # TLS
//!
//! Samba generates a self-signed certificate when `tls enabled = yes` names no files, but
//! without a subjectAltName (only `CN=DC1.<realm>`), and rustls, like every client that
//! follows RFC 6125, checks names against the subjectAltName only: nothing can connect to it
//! by name. The DC therefore gets a certificate for `localhost` / 127.0.0.1 from a private CA
//! made with `openssl` as for [`super::Slapd`] (`tls keyfile`, `tls certfile`, `tls cafile`),
//! and Resetline trusts that CA through `ca_file` ([`SambaDc::ca_file`]), as it would a
//! company CA.
//!
//! # The domain
//!
//! Realm [`REALM`], base [`BASE_DN`]. `old password allowed period = 0`: Samba, like Windows,
//! otherwise keeps accepting the previous password for NTLM and simple binds for an hour after
//! a reset, and the tests check that the old one no longer works. Domain policy: no complexity, minimum length 8, history
//! 5, no minimum or maximum age, lockout after 5 bad passwords (`lockoutThreshold`) for two
//! days. The schema gains [`PIN_HASH_ATTRIBUTE`], a confidential attribute (`searchFlags`
//! 0x80: read needs the control-access right) for the Argon2id PIN hashes. The service account
//! [`SERVICE_DN`] is an ordinary user; on [`PEOPLE_DN`] it holds, for user objects below it,
//! only the "Reset Password" extended right (User-Force-Change-Password), write on `pwdLastSet`
//! (for "must change at next logon") and read with control access on the PIN hash; and read on
//! the Password Settings Container, so that a PIN check by bind can see a user's own lockout
//! threshold. Users (`CN` = `sAMAccountName`, `userPrincipalName` `<sam>@resetline.test`
//! unless said otherwise):
//!
//! | sAMAccountName | employeeID | who | state | password | notes |
//! |---|---|---|---|---|---|
//! | arivera | 100001 | Alex Rivera, mobile +15555550199, alex.rivera@example.com, UPN alex.rivera@resetline.test | active | `31415926` | PIN hash of `examples/demo/users.yaml` (PIN 48213579) |
//! | bchen | 100002 | Blake Chen | locked: five wrong binds (`lockoutTime`) | `27182818` | |
//! | cdiaz | 100003 | Casey Diaz | disabled (`userAccountControl` 0x2) | `16180339` | |
//! | devans | 100004 | Dana Evans | active | `14142135` | PSO `strict`: complexity on, minimum age one day |
//! | eshared, fshared | 100005, 100006 | Eli / Fran Shared | active | `11235813` | both mobile +15555550111; eshared has a too-weak PIN hash |
//! | ghart | 100007 | Gale Hart | active | `17320508` | PSO `tight`: lockout after 3 |
//! | hito | 100008 | Hana Ito | active, password never expires (0x10000) | `26535897` | |
//! | ijones | 100009 | Ivan Jones | active, must change at next logon (`pwdLastSet` 0) | `93238462` | |
//! | kout | 100010 | Kim Out, in `CN=Users` (outside the OU) | active | `57721566` | the service account may not reset it |

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use resetline_engine::Secret;
use sha2::{Digest, Sha256};

use super::{DEMO_PIN_HASH, WEAK_PIN_HASH, make_certificates, run};
use crate::ldap::refusal::unicode_pwd;
use crate::ldap::{BindGuard, Flavor, LdapConfig, PinCheck};

/// The Kerberos realm (and DNS domain, lower-cased).
pub const REALM: &str = "RESETLINE.TEST";
/// The NetBIOS domain name.
pub const DOMAIN: &str = "RESETLINE";
/// The domain's base DN (the domain object: `lockoutThreshold` and the other policy values).
pub const BASE_DN: &str = "DC=resetline,DC=test";
/// The OU of the users, where the service account may reset passwords.
pub const PEOPLE_DN: &str = "OU=People,DC=resetline,DC=test";
/// The service account Resetline binds as (an ordinary user with delegated rights).
pub const SERVICE_DN: &str = "CN=Resetline,OU=Services,DC=resetline,DC=test";
/// Its password.
pub const SERVICE_PASSWORD: &str = "Service-Secret-1";
/// The domain administrator: only for set-up and inspection in tests, never for resets.
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=resetline,DC=test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "Admin-Secret-1";
/// The confidential attribute holding PIN hashes in this domain.
pub const PIN_HASH_ATTRIBUTE: &str = "resetlinePinHash";
/// The user outside [`PEOPLE_DN`] (in `CN=Users`).
pub const OUTSIDER: &str = "kout";

/// `schemaIDGUID` of [`PIN_HASH_ATTRIBUTE`], fixed so that the ACE granting read can name it.
const PIN_HASH_GUID: &str = "5e7a9f1c-3b2d-4c8e-9a61-2f0d7b4c8e13";
/// The same GUID as stored: the first three fields little-endian.
const PIN_HASH_GUID_BYTES: [u8; 16] = [
    0x1c, 0x9f, 0x7a, 0x5e, 0x2d, 0x3b, 0x8e, 0x4c, 0x9a, 0x61, 0x2f, 0x0d, 0x7b, 0x4c, 0x8e, 0x13,
];
/// The control-access right "Reset Password" (User-Force-Change-Password).
const RESET_PASSWORD_RIGHT: &str = "00299570-246d-11d0-a768-00aa006e0529";
/// `schemaIDGUID` of `pwdLastSet`.
const PWD_LAST_SET: &str = "bf967a0a-0de6-11d0-a285-00aa003049e2";
/// `schemaIDGUID` of the `user` class (ACEs inherited by user objects only).
const USER_CLASS: &str = "bf967aba-0de6-11d0-a285-00aa003049e2";

/// The DN of user `sam` (all but [`OUTSIDER`] live in [`PEOPLE_DN`]).
pub fn user_dn(sam: &str) -> String {
    if sam == OUTSIDER {
        format!("CN={sam},CN=Users,{BASE_DN}")
    } else {
        format!("CN={sam},{PEOPLE_DN}")
    }
}

/// A seeded user.
struct Seed {
    sam: &'static str,
    employee_id: &'static str,
    name: &'static str,
    password: &'static str,
    user_account_control: u32,
    mobile: &'static str,
    /// More LDIF lines.
    extra: &'static str,
}

/// `userAccountControl`: NORMAL_ACCOUNT, with ACCOUNTDISABLE, with DONT_EXPIRE_PASSWORD.
const NORMAL: u32 = 0x200;
const DISABLED: u32 = 0x202;
const NEVER_EXPIRES: u32 = 0x10200;

const USERS: &[Seed] = &[
    Seed {
        sam: "arivera",
        employee_id: "100001",
        name: "Alex Rivera",
        password: "31415926",
        user_account_control: NORMAL,
        mobile: "+15555550199",
        extra: "mail: alex.rivera@example.com\n",
    },
    Seed {
        sam: "bchen",
        employee_id: "100002",
        name: "Blake Chen",
        password: "27182818",
        user_account_control: NORMAL,
        mobile: "+15555550142",
        extra: "mail: blake.chen@example.com\n",
    },
    Seed {
        sam: "cdiaz",
        employee_id: "100003",
        name: "Casey Diaz",
        password: "16180339",
        user_account_control: DISABLED,
        mobile: "+15555550163",
        extra: "",
    },
    Seed {
        sam: "devans",
        employee_id: "100004",
        name: "Dana Evans",
        password: "14142135",
        user_account_control: NORMAL,
        mobile: "+15555550177",
        extra: "mail: dana.evans@example.com\n",
    },
    Seed {
        sam: "eshared",
        employee_id: "100005",
        name: "Eli Shared",
        password: "11235813",
        user_account_control: NORMAL,
        mobile: "+15555550111",
        extra: "",
    },
    Seed {
        sam: "fshared",
        employee_id: "100006",
        name: "Fran Shared",
        password: "11235813",
        user_account_control: NORMAL,
        mobile: "+15555550111",
        extra: "",
    },
    Seed {
        sam: "ghart",
        employee_id: "100007",
        name: "Gale Hart",
        password: "17320508",
        user_account_control: NORMAL,
        mobile: "+15555550188",
        extra: "",
    },
    Seed {
        sam: "hito",
        employee_id: "100008",
        name: "Hana Ito",
        password: "26535897",
        user_account_control: NEVER_EXPIRES,
        mobile: "+15555550122",
        extra: "",
    },
    Seed {
        sam: "ijones",
        employee_id: "100009",
        name: "Ivan Jones",
        password: "93238462",
        user_account_control: NORMAL,
        mobile: "+15555550133",
        extra: "pwdLastSet: 0\n",
    },
    Seed {
        sam: OUTSIDER,
        employee_id: "100010",
        name: "Kim Out",
        password: "57721566",
        user_account_control: NORMAL,
        mobile: "+15555550144",
        extra: "",
    },
];

/// A template older than this is provisioned again (its certificates last two days).
const TEMPLATE_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The file that marks a complete template (it holds how long provisioning took).
const READY: &str = "provisioned";
/// How long a DC may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Samba AD DC; killed on drop.
#[derive(Debug)]
pub struct SambaDc {
    running: Option<Running>,
    dir: tempfile::TempDir,
}

impl SambaDc {
    /// Starts a DC from the provisioned template (provisioning it first when there is none).
    pub fn start() -> Result<SambaDc, String> {
        let (template, lock) = template()?;
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        run(Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(dir.path().join("dc")))?;
        drop(lock);
        let running = launch(&dir.path().join("dc"), false)?;
        Ok(SambaDc {
            running: Some(running),
            dir,
        })
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("dc")
    }

    fn port(&self, tls: bool) -> u16 {
        self.running.as_ref().map_or(0, |r| {
            if tls {
                r.ldaps.addr.port()
            } else {
                r.ldap.addr.port()
            }
        })
    }

    /// `ldaps://localhost:<port>`: the DC's LDAPS port, forwarded.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://localhost:{}", self.port(true))
    }

    /// `ldap://localhost:<port>`: the DC's plain LDAP port (StartTLS), forwarded.
    pub fn ldap_url(&self) -> String {
        format!("ldap://localhost:{}", self.port(false))
    }

    /// The private CA that signed the DC's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.root().join("tls/ca.pem")
    }

    /// What Samba logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("samba.log")).unwrap_or_default()
    }

    /// A Resetline configuration for this DC: Active Directory flavour over LDAPS trusting
    /// [`SambaDc::ca_file`], the service account, users under [`PEOPLE_DN`], PINs checked
    /// against [`PIN_HASH_ATTRIBUTE`].
    pub fn config(&self) -> LdapConfig {
        let mut c = LdapConfig::new(
            &self.ldaps_url(),
            SERVICE_DN,
            Secret::new(SERVICE_PASSWORD),
            PEOPLE_DN,
            Flavor::ActiveDirectory,
        );
        c.ca_file = Some(self.ca_file());
        c.attributes.pin_hash = Some(PIN_HASH_ATTRIBUTE.into());
        c
    }

    /// [`SambaDc::config`] with PINs checked by binding as the user (the PIN is the domain
    /// password), the threshold read from the domain object or the user's PSO.
    pub fn bind_mode_config(&self) -> LdapConfig {
        let mut c = self.config();
        c.attributes.pin_hash = None;
        c.pin_check = PinCheck::BindCountsTowardDirectoryLockout(BindGuard {
            policy_dn: Some(BASE_DN.into()),
            max_failures: None,
        });
        c
    }

    /// A fresh LDAPS connection to the DC, trusting its CA.
    async fn connect(&self) -> Result<Ldap, String> {
        let tls = crate::ldap::client_config(&self.ca_file()).map_err(|e| e.to_string())?;
        let settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(5))
            .set_config(Arc::new(tls));
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.ldaps_url())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        Ok(ldap)
    }

    /// A simple bind as user `sam` with `password` on a fresh connection: the result code and
    /// the diagnostic text (0 success; 49 with `data 52e` a wrong password, `data 775` locked,
    /// `data 773` must change, `data 533` disabled): what the person's own login would get.
    pub async fn user_bind(&self, sam: &str, password: &str) -> Result<(u32, String), String> {
        let mut ldap = self.connect().await?;
        let res = ldap
            .simple_bind(&user_dn(sam), password)
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let _ = ldap.unbind().await;
        Ok((res.rc, res.text))
    }

    /// The values of `attr` on `dn`, read as the domain administrator.
    pub async fn read(&self, dn: &str, attr: &str) -> Result<Vec<String>, String> {
        self.read_as(ADMIN_DN, ADMIN_PASSWORD, dn, attr).await
    }

    /// The values of `attr` on `dn` that `who` may read.
    pub async fn read_as(
        &self,
        who: &str,
        password: &str,
        dn: &str,
        attr: &str,
    ) -> Result<Vec<String>, String> {
        let mut ldap = self.connect().await?;
        ldap.simple_bind(who, password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("bind as {who}: {e}"))?;
        let (entries, _) = ldap
            .search(dn, Scope::Base, "(objectClass=*)", vec![attr])
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("search {dn}: {e}"))?;
        let _ = ldap.unbind().await;
        Ok(entries
            .into_iter()
            .next()
            .map(SearchEntry::construct)
            .and_then(|e| {
                e.attrs
                    .into_iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(attr))
            })
            .map(|(_, v)| v)
            .unwrap_or_default())
    }

    /// The person's own password change (the old value removed, the new one added, bound as
    /// the user): the result code and the DC's diagnostic text. The policy checks a reset
    /// skips (history, minimum age) apply here.
    pub async fn change_own_password(
        &self,
        sam: &str,
        old: &str,
        new: &str,
    ) -> Result<(u32, String), String> {
        let mut ldap = self.connect().await?;
        ldap.simple_bind(&user_dn(sam), old)
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("bind as {sam}: {e}"))?;
        let attr = b"unicodePwd".to_vec();
        let old = unicode_pwd(&Secret::new(old));
        let new = unicode_pwd(&Secret::new(new));
        let res = ldap
            .modify(
                &user_dn(sam),
                vec![
                    Mod::Delete(attr.clone(), [old].into()),
                    Mod::Add(attr, [new].into()),
                ],
            )
            .await
            .map_err(|e| format!("modify: {e}"))?;
        let _ = ldap.unbind().await;
        Ok((res.rc, res.text))
    }

    /// Kills the DC now (for "directory down" tests); idempotent.
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `samba` process in its own network namespace and the forwarders into it.
#[derive(Debug)]
struct Running {
    child: Child,
    ldaps: Forward,
    ldap: Forward,
}

impl Running {
    fn stop(self) {
        drop(self);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// smb.conf of the DC kept in `dir`: LDAP only, on the namespace's loopback only, TLS with
/// the private CA's certificate; `schema` also lets the seeding extend the schema.
fn smb_conf(dir: &Path, schema: bool) -> String {
    let d = dir.display();
    let schema = if schema {
        "\tdsdb:schema update allowed = yes\n"
    } else {
        ""
    };
    format!(
        "[global]
\tnetbios name = DC1
\trealm = {REALM}
\tworkgroup = {DOMAIN}
\tserver role = active directory domain controller
\tserver services = ldap
\tinterfaces = lo
\tbind interfaces only = yes
\tprivate dir = {d}/private
\tlock directory = {d}
\tstate directory = {d}/state
\tcache directory = {d}/cache
\tbinddns dir = {d}/bind-dns
\tpid directory = {d}/run
\tncalrpc dir = {d}/run/ncalrpc
\tlog file = {d}/samba.log
\told password allowed period = 0
\ttls enabled = yes
\ttls keyfile = {d}/tls/server.key
\ttls certfile = {d}/tls/server.pem
\ttls cafile = {d}/tls/ca.pem
{schema}"
    )
}

/// Starts `samba` for the domain in `dir` in a new network namespace, forwards its LDAP and
/// LDAPS ports to free ports on 127.0.0.1, and waits until LDAPS accepts connections.
fn launch(dir: &Path, schema: bool) -> Result<Running, String> {
    let conf = dir.join("smb.conf");
    std::fs::write(&conf, smb_conf(dir, schema)).map_err(|e| format!("smb.conf: {e}"))?;
    std::fs::create_dir_all(dir.join("run")).map_err(|e| format!("mkdir: {e}"))?;
    let out = File::create(dir.join("samba.out")).map_err(|e| format!("samba.out: {e}"))?;
    let mut child = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"])
        .args(["samba", "--foreground", "--no-process-group", "-M", "single"])
        .arg("-s")
        .arg(&conf)
        .args(["-d", "1"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .spawn()
        .map_err(|e| format!("cannot start samba in a network namespace: {e} (needs root, util-linux and iproute2)"))?;
    let failed = |child: &mut Child, what: String| {
        let _ = child.kill();
        let _ = child.wait();
        let out = std::fs::read_to_string(dir.join("samba.out")).unwrap_or_default();
        let log = std::fs::read_to_string(dir.join("samba.log")).unwrap_or_default();
        format!("{what}\n{out}\n{log}")
    };
    let ns = match namespace_of(&mut child) {
        Ok(ns) => ns,
        Err(e) => return Err(failed(&mut child, e)),
    };
    let forwards = Forward::start(&ns, 636).and_then(|s| Ok((s, Forward::start(&ns, 389)?)));
    let (ldaps, ldap) = match forwards {
        Ok(f) => f,
        Err(e) => return Err(failed(&mut child, e)),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(&mut child, format!("samba exited ({status})")));
        }
        if inside(&ns, |ns_port| TcpStream::connect(ns_port).is_ok(), 636) {
            return Ok(Running { child, ldaps, ldap });
        }
        if Instant::now() > deadline {
            return Err(failed(
                &mut child,
                format!("samba did not accept connections within {START_TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The network namespace `child` moved into (`/proc/<pid>/ns/net`), once it differs from
/// this process's own.
fn namespace_of(child: &mut Child) -> Result<File, String> {
    let own = std::fs::read_link("/proc/self/ns/net").map_err(|e| format!("own netns: {e}"))?;
    let path = format!("/proc/{}/ns/net", child.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("unshare exited ({status})"));
        }
        if std::fs::read_link(&path).is_ok_and(|l| l != own) {
            return File::open(&path).map_err(|e| format!("{path}: {e}"));
        }
        if Instant::now() > deadline {
            return Err("no new network namespace within 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Moves the calling thread into the network namespace `ns`.
fn enter(ns: &File) -> std::io::Result<()> {
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(std::io::Error::from)
}

/// Runs `f(127.0.0.1:port)` on a thread inside `ns`; false when the thread cannot enter it.
fn inside(ns: &File, f: fn(SocketAddr) -> bool, port: u16) -> bool {
    let Ok(ns) = ns.try_clone() else {
        return false;
    };
    std::thread::spawn(move || {
        enter(&ns).is_ok() && f(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    })
    .join()
    .unwrap_or(false)
}

/// A listener on the test's 127.0.0.1 whose connections are relayed to 127.0.0.1:`port`
/// inside a DC's namespace.
#[derive(Debug)]
struct Forward {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forward {
    fn start(ns: &File, port: u16) -> Result<Forward, String> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let ns = ns.try_clone().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            // The listener was made outside; every socket this thread makes from here on is
            // inside the DC's namespace.
            if enter(&ns).is_err() {
                return;
            }
            for outer in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(outer) = outer else { continue };
                if let Ok(inner) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
                    relay(outer, inner);
                }
            }
        });
        Ok(Forward {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        if self.thread.is_none() {
            return;
        }
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies bytes both ways until either side closes.
fn relay(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    std::thread::spawn(move || pipe(a, b));
    std::thread::spawn(move || pipe(b2, a2));
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The provisioned template (provisioned now when missing or stale) and a shared lock on it
/// to hold while copying it.
fn template() -> Result<(PathBuf, File), String> {
    let version = Command::new("samba")
        .arg("--version")
        .output()
        .map_err(|e| {
            format!("cannot run samba: {e} (install the packages of scripts/install-test-deps)")
        })?
        .stdout;
    let mut hash = Sha256::new();
    hash.update(include_str!("samba.rs"));
    hash.update(&version);
    let key: String = hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tmp = std::env::temp_dir();
    let dir = tmp.join(format!("resetline-samba-{key}"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(tmp.join(format!("resetline-samba-{key}.lock")))
        .map_err(|e| format!("template lock: {e}"))?;
    lock.lock_shared().map_err(|e| format!("flock: {e}"))?;
    if fresh(&dir) {
        return Ok((dir, lock));
    }
    lock.lock().map_err(|e| format!("flock: {e}"))?;
    if !fresh(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        if let Err(e) = provision(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let took = started.elapsed();
        eprintln!(
            "samba test domain provisioned in {took:.1?} ({})",
            dir.display()
        );
        std::fs::write(dir.join(READY), format!("{took:?}\n")).map_err(|e| e.to_string())?;
        remove_other_templates(&tmp, &dir);
    }
    lock.lock_shared().map_err(|e| format!("flock: {e}"))?;
    Ok((dir, lock))
}

/// Removes the templates of other recipes or Samba versions that nobody is copying now.
fn remove_other_templates(tmp: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_template = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("resetline-samba-") && !n.ends_with(".lock"));
        if !is_template || path == keep {
            continue;
        }
        let lock = path.with_extension("lock");
        let Ok(file) = File::options().write(true).open(&lock) else {
            continue;
        };
        if file.try_lock().is_ok() {
            let _ = std::fs::remove_dir_all(&path);
            let _ = std::fs::remove_file(&lock);
        }
    }
}

/// A complete template younger than [`TEMPLATE_MAX_AGE`].
fn fresh(dir: &Path) -> bool {
    std::fs::metadata(dir.join(READY))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < TEMPLATE_MAX_AGE)
}

/// `samba-tool` with `args` against the domain in `dir` (offline, on its sam.ldb).
fn samba_tool(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("samba-tool")
        .args(args)
        .arg("-H")
        .arg(dir.join("private/sam.ldb"))
        .arg("-s")
        .arg(dir.join("smb.conf"))
        .output()
        .map_err(|e| format!("cannot run samba-tool: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "samba-tool {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Provisions and seeds the domain into `dir` (see the module docs).
fn provision(dir: &Path) -> Result<(), String> {
    run(Command::new("samba-tool")
        .args(["domain", "provision"])
        .arg(format!("--targetdir={}", dir.display()))
        .arg(format!("--realm={REALM}"))
        .arg(format!("--domain={DOMAIN}"))
        .args(["--server-role=dc", "--dns-backend=NONE", "--host-name=dc1"])
        .args(["--host-ip=127.0.0.1", "--option=interfaces=lo"])
        .arg("--option=bind interfaces only=yes")
        .arg(format!("--adminpass={ADMIN_PASSWORD}")))?;
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).map_err(|e| format!("mkdir: {e}"))?;
    make_certificates(&tls)?;
    std::fs::write(dir.join("smb.conf"), smb_conf(dir, true)).map_err(|e| e.to_string())?;
    samba_tool(
        dir,
        &[
            "domain",
            "passwordsettings",
            "set",
            "--complexity=off",
            "--min-pwd-length=8",
            "--history-length=5",
            "--min-pwd-age=0",
            "--max-pwd-age=0",
            "--account-lockout-threshold=5",
            "--account-lockout-duration=2880",
            "--reset-account-lockout-after=30",
        ],
    )?;
    let running = launch(dir, true)?;
    let seeded = seed(dir, &running);
    running.stop();
    seeded
}

/// Adds the schema extension, the OUs, the service account and the users over LDAPS, then
/// delegates the rights, creates the PSOs and locks Blake's account.
fn seed(dir: &Path, dc: &Running) -> Result<(), String> {
    let files = dir.join("seed");
    std::fs::create_dir_all(&files).map_err(|e| format!("mkdir: {e}"))?;
    let ldif = files.join("seed.ldif");
    std::fs::write(&ldif, seed_ldif(&files)?).map_err(|e| e.to_string())?;
    let url = format!("ldaps://127.0.0.1:{}", dc.ldaps.addr.port());
    run(Command::new("ldapmodify")
        .env("LDAPTLS_CACERT", dir.join("tls/ca.pem"))
        .args(["-x", "-H", &url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-f"])
        .arg(&ldif))?;
    let _ = std::fs::remove_dir_all(&files);

    let shown = samba_tool(
        dir,
        &["user", "show", "svc-resetline", "--attributes=objectSid"],
    )?;
    let sid = shown
        .lines()
        .find_map(|l| l.strip_prefix("objectSid: "))
        .ok_or_else(|| format!("no objectSid in {shown}"))?
        .trim()
        .to_owned();
    let on_users =
        |rights: &str, object: &str| format!("(OA;CIIO;{rights};{object};{USER_CLASS};{sid})");
    let sddl = [
        on_users("CR", RESET_PASSWORD_RIGHT),
        on_users("WP", PWD_LAST_SET),
        on_users("RPCR", PIN_HASH_GUID),
    ]
    .concat();
    samba_tool(
        dir,
        &[
            "dsacl",
            "set",
            "--action=allow",
            &format!("--objectdn={PEOPLE_DN}"),
            &format!("--sddl={sddl}"),
        ],
    )?;
    samba_tool(
        dir,
        &[
            "dsacl",
            "set",
            "--action=allow",
            &format!("--objectdn=CN=Password Settings Container,CN=System,{BASE_DN}"),
            &format!("--sddl=(A;CI;RPLCLORC;;;{sid})"),
        ],
    )?;
    for (pso, precedence, settings, user) in [
        (
            "strict",
            "10",
            &["--complexity=on", "--min-pwd-age=1"][..],
            "devans",
        ),
        (
            "tight",
            "20",
            &["--account-lockout-threshold=3"][..],
            "ghart",
        ),
    ] {
        let mut args = vec![
            "domain",
            "passwordsettings",
            "pso",
            "create",
            pso,
            precedence,
        ];
        args.extend_from_slice(settings);
        samba_tool(dir, &args)?;
        samba_tool(
            dir,
            &["domain", "passwordsettings", "pso", "apply", pso, user],
        )?;
    }
    for attempt in 1..=5 {
        // Each bind fails (data 52e) and counts; the fifth locks the account.
        let _ = Command::new("ldapwhoami")
            .env("LDAPTLS_CACERT", dir.join("tls/ca.pem"))
            .args(["-x", "-H", &url, "-D", &user_dn("bchen"), "-w"])
            .arg(format!("wrong-{attempt}"))
            .output();
    }
    Ok(())
}

/// The seed LDIF; the new passwords go in files under `files` (`unicodePwd:<`).
fn seed_ldif(files: &Path) -> Result<String, String> {
    let guid = files.join("pin-hash.guid");
    std::fs::write(&guid, PIN_HASH_GUID_BYTES).map_err(|e| e.to_string())?;
    let schema = format!("CN=Schema,CN=Configuration,{BASE_DN}");
    let mut s = format!(
        "dn: CN={PIN_HASH_ATTRIBUTE},{schema}
changetype: add
objectClass: attributeSchema
cn: {PIN_HASH_ATTRIBUTE}
lDAPDisplayName: {PIN_HASH_ATTRIBUTE}
attributeID: 1.3.6.1.4.1.4203.666.11.99.1
attributeSyntax: 2.5.5.12
oMSyntax: 64
isSingleValued: TRUE
searchFlags: 128
schemaIDGUID:< file://{guid}
adminDescription: Argon2id PHC hash of the phone PIN (Resetline tests); confidential

dn:
changetype: modify
add: schemaUpdateNow
schemaUpdateNow: 1
-

dn: CN=User,{schema}
changetype: modify
add: mayContain
mayContain: {PIN_HASH_ATTRIBUTE}
-

dn:
changetype: modify
add: schemaUpdateNow
schemaUpdateNow: 1
-

dn: {PEOPLE_DN}
changetype: add
objectClass: organizationalUnit
ou: People

dn: OU=Services,{BASE_DN}
changetype: add
objectClass: organizationalUnit
ou: Services

",
        guid = guid.display()
    );
    let password = |name: &str, value: &str| -> Result<String, String> {
        let path = files.join(format!("{name}.pwd"));
        std::fs::write(&path, unicode_pwd(&Secret::new(value))).map_err(|e| e.to_string())?;
        Ok(format!("unicodePwd:< file://{}\n", path.display()))
    };
    s += &format!(
        "dn: {SERVICE_DN}\nchangetype: add\nobjectClass: user\nsAMAccountName: svc-resetline\nuserPrincipalName: svc-resetline@resetline.test\nuserAccountControl: {NEVER_EXPIRES}\n{}\n",
        password("svc-resetline", SERVICE_PASSWORD)?
    );
    for u in USERS {
        let upn = if u.sam == "arivera" {
            "alex.rivera".to_owned()
        } else {
            u.sam.to_owned()
        };
        let pin_hash = match u.sam {
            "arivera" => format!("{PIN_HASH_ATTRIBUTE}: {DEMO_PIN_HASH}\n"),
            "eshared" => format!("{PIN_HASH_ATTRIBUTE}: {WEAK_PIN_HASH}\n"),
            _ => String::new(),
        };
        s += &format!(
            "dn: {dn}\nchangetype: add\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {upn}@resetline.test\nemployeeID: {id}\ndisplayName: {name}\nmobile: {mobile}\nuserAccountControl: {uac}\n{extra}{pin_hash}{pwd}\n",
            dn = user_dn(u.sam),
            sam = u.sam,
            id = u.employee_id,
            name = u.name,
            mobile = u.mobile,
            uac = u.user_account_control,
            extra = u.extra,
            pwd = password(u.sam, u.password)?,
        );
    }
    Ok(s)
}
