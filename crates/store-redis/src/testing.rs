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
    persistent: bool,
}

/// A port nobody listens on right now (Redis cannot be asked for port 0).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl RedisServer {
    /// Starts a server keeping its files in `dir`. `persistent`: append-only file with an
    /// fsync per write (a restart loses nothing); otherwise no persistence at all.
    pub fn start(dir: &Path, persistent: bool) -> std::io::Result<Self> {
        let mut last = None;
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port()?,
                dir: dir.to_path_buf(),
                persistent,
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("redis-server did not start")))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) -> std::io::Result<()> {
        let port = self.port.to_string();
        let dir = self.dir.display().to_string();
        let mut args = vec![
            "--port", &port, "--bind", "127.0.0.1", "--dir", &dir, "--save", "", "--daemonize",
            "no", "--protected-mode", "yes", "--loglevel", "warning",
        ];
        if self.persistent {
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
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
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
