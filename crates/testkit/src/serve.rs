//! `resetline serve` as a child process of a test: started from `<dir>/resetline.yaml`,
//! waited for until `/healthz` answers, killed on drop, its stderr kept in `<dir>/server.log`.
//!
//! The binary's path is the caller's `env!("CARGO_BIN_EXE_resetline")`: Cargo gives it only
//! to the tests of the crate that builds the binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::webhook::{ACCOUNT, Signed, exchange, get};

/// The carrier auth token the tests' configs name.
pub const TOKEN: &str = "twilio-auth-token";

/// A running `resetline serve`; killed on drop.
#[derive(Debug)]
pub struct Served {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its `public_url`.
    pub public: String,
    /// Its admin port (`/metrics`, `/readyz`).
    pub admin: SocketAddr,
    log: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `yaml` with an `admin_listen` (one on a free loopback port when it has none, so servers
/// started side by side do not share the default 127.0.0.1:9090), and that address.
pub fn with_admin_listen(yaml: &str) -> (String, SocketAddr) {
    if let Some(addr) = yaml
        .lines()
        .find_map(|l| l.strip_prefix("admin_listen:"))
        .and_then(|a| a.trim().parse().ok())
    {
        return (yaml.to_string(), addr);
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
    (format!("{yaml}\nadmin_listen: {addr}\n"), addr)
}

impl Served {
    /// Writes `yaml` to `<dir>/resetline.yaml` and runs `bin serve --config` on it with `env`
    /// (after `RUST_LOG=info`); waits until `/healthz` answers 200. `yaml` must listen on
    /// `port` with `public_url` `http://127.0.0.1:<port>`; without an `admin_listen`, one on
    /// a free port is added.
    pub async fn start(
        bin: &str,
        dir: &Path,
        port: u16,
        yaml: &str,
        env: &[(&str, &str)],
    ) -> Served {
        let config = dir.join("resetline.yaml");
        let (yaml, admin) = with_admin_listen(yaml);
        std::fs::write(&config, yaml).expect("config");
        let log = dir.join("server.log");
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut served = Served {
            child: cmd.spawn().expect("spawn resetline serve"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            public: format!("http://127.0.0.1:{port}"),
            admin,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("resetline serve exited ({status}):\n{}", served.log());
            }
            if get(served.addr, "/healthz")
                .await
                .starts_with("HTTP/1.1 200")
            {
                return served;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = served.log();
        drop(served);
        panic!("resetline serve did not answer:\n{text}");
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's process id (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A raw HTTP/1.1 exchange with the webhook port.
    pub async fn raw(&self, request: &str) -> String {
        exchange(self.addr, request).await
    }

    /// A GET of `path` on the admin port: the raw answer.
    pub async fn admin_get(&self, path: &str) -> String {
        get(self.admin, path).await
    }

    /// A webhook signed with [`TOKEN`] for its public URL; the raw answer.
    pub async fn post(&self, path: &str, params: &[(&str, &str)]) -> String {
        Signed::new(TOKEN, &self.public, path, params)
            .post(self.addr)
            .await
    }

    /// The first webhook of a call `sid` to `flow`, from +15555550100 to +15555550000.
    pub async fn start_call(&self, flow: &str, sid: &str) -> String {
        self.post(
            &format!("/voice/{flow}"),
            &[
                ("CallSid", sid),
                ("AccountSid", ACCOUNT),
                ("From", "+15555550100"),
                ("To", "+15555550000"),
            ],
        )
        .await
    }
}
