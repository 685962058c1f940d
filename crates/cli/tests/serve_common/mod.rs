//! Shared by the tests that run the real `resetline serve` binary: a free port, the server
//! process (killed on drop) started from a config file, and signed webhooks over TCP.

#![allow(dead_code, unreachable_pub)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "twilio-auth-token";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Sends `request` to `addr` and reads the answer until the server closes.
async fn exchange(addr: SocketAddr, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
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
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    (format!("{yaml}\nadmin_listen: {addr}\n"), addr)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The server process, killed on drop; its stderr goes to `log`.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The admin port (`/metrics`, `/readyz`).
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `resetline serve --config <dir>/resetline.yaml` with `yaml` (which must listen
    /// on `port`; without an `admin_listen`, one on a free port is added) and `env`, and waits
    /// until it accepts connections.
    pub async fn start(dir: &Path, port: u16, yaml: &str, env: &[(&str, &str)]) -> Server {
        let config = dir.join("resetline.yaml");
        let (yaml, admin) = with_admin_listen(yaml);
        std::fs::write(&config, yaml).expect("config");
        let log = dir.join("stderr.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_resetline"));
        command
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        for (k, v) in env {
            command.env(k, v);
        }
        let server = Server {
            child: command.spawn().expect("resetline serve"),
            addr: format!("127.0.0.1:{port}").parse().expect("addr"),
            admin,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(server.addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the server did not start:\n{}",
                server.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// The server's process id (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// A raw HTTP/1.1 exchange.
    pub async fn raw(&self, request: String) -> String {
        exchange(self.addr, request).await
    }

    /// A GET of `path` on the admin port: the raw answer.
    pub async fn admin_get(&self, path: &str) -> String {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.admin
        );
        exchange(self.admin, request).await
    }

    /// A webhook signed with [`TOKEN`] over `http://<addr><path>`.
    pub async fn post(&self, path: &str, params: &[(&str, &str)]) -> String {
        let addr = self.addr;
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sig = resetline_twiml::signature::compute(
            TOKEN.as_bytes(),
            &format!("http://{addr}{path}"),
            &owned,
        );
        let body = params
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
            .collect::<Vec<_>>()
            .join("&");
        self.raw(format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await
    }

    /// The first webhook of a call to `flow`.
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
