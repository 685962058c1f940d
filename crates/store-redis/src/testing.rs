//! Real Redis for tests (Debian package `redis-server`), started on 127.0.0.1 with free ports
//! in a directory the caller owns and killed on drop: one server ([`RedisServer`]), a
//! three-master Cluster ([`RedisCluster`]), or a master, a replica and a Sentinel
//! ([`RedisSentinel`]). Not used by the product.

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
    /// One more ACL user, as a `--user` rule (e.g. `app on >secret ~* &* +@all`).
    pub acl_user: Option<String>,
    /// A Cluster node (`--cluster-enabled yes`); see [`RedisCluster`].
    pub cluster: bool,
    /// A replica of the server on this port (`--replicaof 127.0.0.1 <port>`).
    pub replica_of: Option<u16>,
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
        if let Some(rule) = &self.options.acl_user {
            // One argument per word: redis-server joins them into the `user` line.
            args.push("--user");
            args.extend(rule.split_whitespace());
        }
        if self.options.persistent {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            args.extend(["--appendonly", "no"]);
        }
        // Several servers may share `dir`: each its own files.
        let (rdb, aof, nodes) = (
            format!("dump-{port}.rdb"),
            format!("appendonly-{port}"),
            format!("nodes-{port}.conf"),
        );
        args.extend(["--dbfilename", &rdb, "--appenddirname", &aof]);
        if self.options.cluster {
            args.extend([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &nodes,
                "--cluster-node-timeout",
                "2000",
            ]);
        }
        let master = self.options.replica_of.map(|p| p.to_string());
        if let Some(master) = &master {
            args.extend(["--replicaof", "127.0.0.1", master]);
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

/// Runs `redis-cli -p <port> <args>` on 127.0.0.1 and returns what it printed.
pub fn cli(port: u16, args: &[&str]) -> std::io::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits up to `within` for `ready`, checking every 50 ms.
fn wait_for(within: Duration, what: &str, mut ready: impl FnMut() -> bool) -> std::io::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(std::io::Error::other(format!(
        "timed out waiting for {what}"
    )))
}

/// A Redis Cluster of three masters (no replicas), slots spread by `redis-cli --cluster create`.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster nodes keeping their files in `dir`, joins them and waits until the
    /// cluster answers (`cluster_state:ok` on every node).
    pub fn start(dir: &Path) -> std::io::Result<Self> {
        let options = RedisOptions {
            cluster: true,
            ..RedisOptions::default()
        };
        let nodes = (0..3)
            .map(|_| RedisServer::start_with(dir, options.clone()))
            .collect::<std::io::Result<Vec<_>>>()?;
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        cli(nodes[0].port, &create)?;
        wait_for(Duration::from_secs(20), "cluster_state:ok", || {
            nodes.iter().all(|n| {
                cli(n.port, &["CLUSTER", "INFO"]).is_ok_and(|i| i.contains("cluster_state:ok"))
            })
        })?;
        Ok(RedisCluster { nodes })
    }

    /// The nodes' URLs (`redis://127.0.0.1:<port>`).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// The monitored master's name in [`RedisSentinel`].
pub const SENTINEL_SERVICE: &str = "resetline-test";

/// A master, its replica and one Sentinel watching them (quorum 1, down after 500 ms, a
/// failover given 2 s): [`RedisSentinel::kill_master`] makes the Sentinel promote the replica.
#[derive(Debug)]
pub struct RedisSentinel {
    /// The master at start.
    pub master: RedisServer,
    /// Its replica at start.
    pub replica: RedisServer,
    sentinel: Option<Child>,
    /// The Sentinel's port on 127.0.0.1.
    pub sentinel_port: u16,
}

impl RedisSentinel {
    /// Starts the three processes keeping their files in `dir`, and waits until the Sentinel
    /// knows the replica (a failover needs one).
    pub fn start(dir: &Path) -> std::io::Result<Self> {
        let master = RedisServer::start_with(dir, RedisOptions::default())?;
        let replica = RedisServer::start_with(
            dir,
            RedisOptions {
                replica_of: Some(master.port),
                ..RedisOptions::default()
            },
        )?;
        let sentinel_port = free_port()?;
        let config = dir.join(format!("sentinel-{sentinel_port}.conf"));
        std::fs::write(
            &config,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_SERVICE} 500\n\
                 sentinel failover-timeout {SENTINEL_SERVICE} 2000\n",
                dir = dir.display(),
                master = master.port,
            ),
        )?;
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let sentinel = RedisSentinel {
            master,
            replica,
            sentinel: Some(child),
            sentinel_port,
        };
        let replica_port = format!("{}", sentinel.replica.port);
        wait_for(
            Duration::from_secs(20),
            "the Sentinel to see the replica",
            || {
                cli(sentinel_port, &["SENTINEL", "REPLICAS", SENTINEL_SERVICE])
                    .is_ok_and(|r| r.lines().any(|l| l == replica_port))
                    && cli(sentinel.replica.port, &["INFO", "replication"])
                        .is_ok_and(|i| i.contains("master_link_status:up"))
            },
        )?;
        Ok(sentinel)
    }

    /// The Sentinel's URL (`redis://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.sentinel_port)
    }

    /// The port of the master the Sentinel names now.
    pub fn master_port(&self) -> Option<u16> {
        let said = cli(
            self.sentinel_port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE],
        )
        .ok()?;
        said.lines().nth(1)?.trim().parse().ok()
    }

    /// Kills the master (SIGKILL) once its replica holds every write, and waits until the
    /// Sentinel has promoted the replica, names it, and sees it up.
    pub fn kill_master(&mut self) -> std::io::Result<()> {
        cli(self.master.port, &["WAIT", "1", "2000"])?;
        self.master.stop();
        let new = self.replica.port;
        wait_for(Duration::from_secs(30), "the failover", || {
            self.master_port() == Some(new)
                && cli(new, &["ROLE"]).is_ok_and(|r| r.starts_with("master"))
                && self.master_flags().is_some_and(|f| f == "master")
        })
    }

    /// The Sentinel's flags of the master (`master`, or with `s_down`, `o_down`,
    /// `failover_in_progress` while it moves).
    fn master_flags(&self) -> Option<String> {
        let said = cli(
            self.sentinel_port,
            &["SENTINEL", "MASTER", SENTINEL_SERVICE],
        )
        .ok()?;
        let mut lines = said.lines();
        lines.find(|l| *l == "flags")?;
        lines.next().map(str::to_string)
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut c) = self.sentinel.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
