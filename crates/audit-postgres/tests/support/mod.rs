//! A real PostgreSQL 15 for one test: `initdb` into a temp dir owned by the `postgres`
//! system user (initdb refuses root), started with `pg_ctl` on 127.0.0.1 and a free port,
//! its unix socket inside the temp dir, stopped (immediate mode) on Drop. Needs the Debian
//! `postgresql` package (`scripts/install-test-deps` installs it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running PostgreSQL cluster.
pub(crate) struct Postgres {
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    fsync: bool,
}

fn as_postgres(program: &str, args: &[&str]) -> std::process::Output {
    let path = Path::new(BIN).join(program);
    let mut cmd = if nix_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    cmd.args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e} (is the postgresql package installed? scripts/install-test-deps)",
            path.display()
        )
    })
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    /// initdb + start with fsync off (tests); panics with the server's own words if either
    /// fails.
    #[allow(dead_code)] // not every user of the harness calls both constructors
    pub(crate) fn start() -> Self {
        Self::start_with_fsync(false)
    }

    /// initdb + start; `fsync` as a production server would have it (benchmarks).
    pub(crate) fn start_with_fsync(fsync: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("resetline-pg-")
            .tempdir()
            .expect("tempdir");
        if nix_is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the temp dir to postgres");
        }
        let data = dir.path().join("data");
        let out = as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf8 path"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let pg = Postgres { dir, port, fsync };
        pg.up();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (again) on the same port and data.
    pub(crate) fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={}",
            self.port,
            self.dir.path().display(),
            if self.fsync { "on" } else { "off" }
        );
        let log = self.dir.path().join("server.log");
        let out = as_postgres(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().expect("utf8"),
                "-l",
                log.to_str().expect("utf8"),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops immediately (like a crash of the database).
    pub(crate) fn down(&self) {
        let _ = as_postgres(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().expect("utf8"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// A connection string for the superuser on the `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.down();
    }
}
