//! The Python of `target/grpc-venv` (grpcio, grpcio-tools, centrifuge-python;
//! `.ci/run` makes it) with stubs generated from one of natsgate's `.proto`
//! files, and Python servers that announce their port.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to print `PORT <n>`.
const PORT_TIMEOUT: Duration = Duration::from_secs(30);

/// The venv's Python if it imports `modules` (e.g. `"grpc, centrifuge"`).
/// Without the venv the test is skipped (None, said on stderr), except under
/// `CI=true`, where it panics.
pub fn venv_python(modules: &str) -> Option<PathBuf> {
    let python = crate::repo_root().join("target/grpc-venv/bin/python");
    let usable = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        let what = format!("target/grpc-venv with {modules}");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{what} is missing under CI=true");
        eprintln!("SKIPPED: {what} is missing (run `bash .ci/run`, which installs it)");
        return None;
    }
    Some(python)
}

/// The venv's Python and a temp directory with grpcio-tools' stubs.
pub struct GrpcPython {
    pub python: PathBuf,
    stubs: tempfile::TempDir,
}

impl GrpcPython {
    /// [`venv_python`] (`modules` should name grpc_tools) with stubs
    /// generated from `proto` (a path from the repository root, e.g.
    /// `"proto/api.proto"`).
    pub fn find(modules: &str, proto: &str) -> Option<GrpcPython> {
        let python = venv_python(modules)?;
        let stubs = tempfile::tempdir().expect("temp dir for stubs");
        let out = stubs.path().display().to_string();
        let status = Command::new(&python)
            .current_dir(crate::repo_root())
            .args(["-m", "grpc_tools.protoc", "-Iproto"])
            .arg(format!("--python_out={out}"))
            .arg(format!("--grpc_python_out={out}"))
            .arg(proto)
            .status()
            .expect("run grpc_tools.protoc");
        assert!(status.success(), "grpc_tools.protoc failed on {proto}");
        Some(GrpcPython { python, stubs })
    }

    /// Where the stubs are (put it on `PYTHONPATH`).
    pub fn stubs(&self) -> &Path {
        self.stubs.path()
    }

    /// `python <script>` (a path from the repository root) with the stubs
    /// on `PYTHONPATH`.
    pub fn command(&self, script: &str) -> Command {
        let mut command = Command::new(&self.python);
        command.arg(crate::repo_root().join(script)).env("PYTHONPATH", self.stubs.path());
        command
    }
}

/// A server process that printed `PORT <n>` as its first line; killed on drop.
pub struct PortProcess {
    child: Child,
    pub port: u16,
}

impl PortProcess {
    /// Spawns `command` with stdin and stdout piped (a server that stops
    /// when its stdin closes may rely on it) and waits for its port.
    pub fn start(mut command: Command) -> PortProcess {
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start the server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut process = PortProcess { child, port: 0 };
        let line = rx.recv_timeout(PORT_TIMEOUT).expect("the server printed its port");
        process.port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).expect("PORT <n>");
        process
    }
}

impl Drop for PortProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
