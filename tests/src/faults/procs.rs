//! Real `orgplane` processes: finding (or building) the binary, starting a process, optionally
//! inside a network namespace, with its output in a log file, and the signals the faults use
//! (SIGKILL, SIGSTOP, SIGCONT). Every process started is killed when its [`Proc`] drops, and
//! its pid is registered in a file so that the next run kills it if this one crashed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long building the binary may take on the 2-core machine before the test gives up.
const BUILD_BOUND: Duration = Duration::from_secs(20 * 60);

/// The workspace's target directory (`CARGO_TARGET_DIR` when set, else `target/`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_dir().join("target"),
    }
}

/// The workspace's root folder.
pub fn workspace_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// The `orgplane` binary, built once per test process: `cargo build -p orgplane` runs first
/// (a no-op when it is fresh) so a stale binary never stands in for the code under test.
/// `ORGPLANE_BIN` names another binary and skips the build.
pub fn orgplane_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("ORGPLANE_BIN") {
            let bin = PathBuf::from(bin);
            assert!(bin.exists(), "ORGPLANE_BIN={} does not exist", bin.display());
            return bin;
        }
        let bin = target_dir().join("debug").join("orgplane");
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let started = Instant::now();
        let mut child = Command::new(cargo)
            .args(["build", "-p", "orgplane", "--bin", "orgplane"])
            .current_dir(workspace_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{cargo} build -p orgplane` to build {}: {e}", bin.display()));
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for cargo") {
                break status;
            }
            if started.elapsed() > BUILD_BOUND {
                let _ = child.kill();
                panic!("`cargo build -p orgplane` took longer than {BUILD_BOUND:?}; build it first, then rerun");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if !status.success() {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
            }
            panic!("`cargo build -p orgplane` failed ({status}):\n{err}");
        }
        assert!(bin.exists(), "`cargo build -p orgplane` succeeded but {} is missing", bin.display());
        bin
    })
    .clone()
}

/// Sends `signal` (KILL, STOP, CONT, ...) to `pid` through the shell's `kill` builtin.
pub fn signal(pid: u32, signal: &str) {
    if pid == 0 {
        return;
    }
    let _ = Command::new("sh").args(["-c", &format!("kill -s {signal} {pid}")]).stderr(Stdio::null()).status();
}

fn pid_registry() -> PathBuf {
    std::env::temp_dir().join("orgplane-faults").join("pids")
}

/// Kills the processes an earlier, crashed run registered and that still run our binary.
pub fn kill_registered_leftovers() {
    let Ok(entries) = std::fs::read_dir(pid_registry()) else { return };
    for entry in entries.flatten() {
        let pid: u32 = entry.file_name().to_string_lossy().parse().unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&cmdline).contains("orgplane");
        let marker = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if ours && !marker.is_empty() && String::from_utf8_lossy(&cmdline).contains(marker.trim()) {
            signal(pid, "KILL");
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

/// How to start one process.
#[derive(Debug, Clone)]
pub struct ProcSpec {
    /// A short name for messages (`eu-n1`, `router`).
    pub name: String,
    /// The network namespace to run in; `None`: the root namespace.
    pub netns: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr go (appended to across restarts).
    pub log: PathBuf,
    /// A string of the command line that identifies this run's processes (the run folder).
    pub marker: String,
}

/// A running (or killed) process.
pub struct Proc {
    pub spec: ProcSpec,
    child: Option<Child>,
    paused: bool,
}

impl Proc {
    pub fn new(spec: ProcSpec) -> Proc {
        Proc { spec, child: None, paused: false }
    }

    /// Starts the process; it must not be running.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.spec.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.spec.log.display()));
        let bin = orgplane_binary();
        let mut command = match &self.spec.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        command
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", self.spec.name));
        let registry = pid_registry();
        let _ = std::fs::create_dir_all(&registry);
        let _ = std::fs::write(registry.join(child.id().to_string()), &self.spec.marker);
        self.child = Some(child);
        self.paused = false;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process was started and has not exited.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, and reap it: its data dir and port are free when this returns.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(pid_registry().join(child.id().to_string()));
        }
        self.paused = false;
    }

    /// SIGSTOP: the process freezes with its sockets open.
    pub fn pause(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, "STOP");
            self.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, "CONT");
            self.paused = false;
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}
