//! A child process whose stdout and stderr go to a log file, so a failing
//! test can show what the process said. Shared by `nats` and `gateway`.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// At most this much of a log's end is printed when a test fails.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

pub struct LoggedChild {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
}

impl LoggedChild {
    /// Spawns `cmd` with both output streams appended to `log_path`.
    pub fn spawn(name: &str, mut cmd: Command, log_path: &Path) -> std::io::Result<Self> {
        let log = OpenOptions::new().create(true).append(true).open(log_path)?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = cmd.spawn()?;
        Ok(Self { name: name.to_string(), child: Some(child), log_path: log_path.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait on child"))
    }

    /// Sends a signal by number-less name (`TERM`, `INT`, `KILL`, `HUP`) with
    /// the system `kill`, so no signal crate is needed.
    pub fn signal(&self, signal: &str) {
        if self.child.is_none() {
            return;
        }
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().expect("run kill");
        // kill fails when the process has already exited: nothing to do then.
        let _ = status;
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The log's last `LOG_TAIL_BYTES`, framed with the process name.
    pub fn log_report(&self) -> String {
        let mut tail = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let skip = len.saturating_sub(LOG_TAIL_BYTES);
            let mut bytes = Vec::new();
            if std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(skip)).is_ok() {
                let _ = file.read_to_end(&mut bytes);
            }
            if skip > 0 {
                tail.push_str(&format!("[... {skip} earlier bytes omitted ...]\n"));
            }
            tail.push_str(&String::from_utf8_lossy(&bytes));
        }
        format!(
            "----- {} log ({}) -----\n{}\n----- end of {} log -----",
            self.name,
            self.log_path.display(),
            tail.trim_end(),
            self.name
        )
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.log_report());
        }
    }
}
