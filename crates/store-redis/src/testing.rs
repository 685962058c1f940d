//! A real `redis-server` for tests (Debian package `redis-server`): started on 127.0.0.1 with a
//! free port in a directory the caller owns, killed on drop. Not used by the product.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    options: RedisOptions,
}

/// How to run the test server.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Append-only file with an fsync per write (a restart loses nothing); otherwise no
    /// persistence at all.
    pub persistent: bool,
    /// TLS only (no plain port), with a certificate for 127.0.0.1 signed by a throwaway CA
    /// written to `<dir>/ca.pem` (needs the `openssl` command).
    pub tls: bool,
    /// `requirepass`.
    pub password: Option<String>,
}

/// A port nobody listens on right now (Redis cannot be asked for port 0).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl RedisServer {
    /// Starts a server keeping its files in `dir`. `persistent`: append-only file with an
    /// fsync per write (a restart loses nothing); otherwise no persistence at all.
    pub fn start(dir: &Path, persistent: bool) -> std::io::Result<Self> {
        RedisServer::start_with(
            dir,
            RedisOptions {
                persistent,
                ..RedisOptions::default()
            },
        )
    }

    /// Starts a server with `options`, keeping its files in `dir`.
    pub fn start_with(dir: &Path, options: RedisOptions) -> std::io::Result<Self> {
        if options.tls {
            make_certificates(dir)?;
        }
        let mut last = None;
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port()?,
                dir: dir.to_path_buf(),
                options: options.clone(),
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("redis-server did not start")))
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` with TLS; never with the password).
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA certificate clients must trust (TLS servers only).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn launch(&mut self) -> std::io::Result<()> {
        let port = self.port.to_string();
        let dir = self.dir.display().to_string();
        let file = |name: &str| self.dir.join(name).display().to_string();
        let (cert, key, ca) = (file("server.pem"), file("server.key"), file("ca.pem"));
        let mut args = vec![
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir,
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ];
        if self.options.tls {
            args.extend([
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
            ]);
        } else {
            args.extend(["--port", &port]);
        }
        if let Some(p) = &self.options.password {
            args.extend(["--requirepass", p]);
        }
        if self.options.persistent {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            args.extend(["--appendonly", "no"]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                self.child = None;
                return Err(std::io::Error::other("redis-server exited at start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        Err(std::io::Error::other("redis-server did not answer PING"))
    }

    /// True when the server answers PING (not while it is loading its file).
    pub fn ping(&self) -> bool {
        if self.options.tls || self.options.password.is_some() {
            let mut cli = Command::new("redis-cli");
            cli.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
            if self.options.tls {
                cli.arg("--tls").arg("--cacert").arg(self.ca_file());
            }
            if let Some(p) = &self.options.password {
                cli.args(["--no-auth-warning", "-a", p]);
            }
            return cli
                .arg("PING")
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"PONG"));
        }
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    /// Kills the server (SIGKILL: with persistence on, every acknowledged write is on disk).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        self.launch()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) -> std::io::Result<()> {
    let run = |args: &[&str]| -> std::io::Result<()> {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("openssl {} failed", args[0])))
        }
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")?;
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=resetline test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ])
}
