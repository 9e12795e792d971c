//! The .deb and .rpm packages (deploy/packaging/, `[package.metadata.deb]`
//! and `[package.metadata.generate-rpm]` in Cargo.toml), built from the
//! release binary this `cargo test --release` run already built:
//!
//! - the .deb (`cargo deb --no-build --strip --fast`) is installed with
//!   `dpkg -i` into a minimal Debian bookworm root (`.ci/rootfs`, extracted
//!   into a temporary directory, entered with `chroot`): the maintainer
//!   scripts create the system user, `natsgate version` runs, the installed
//!   config is valid for that user, the installed gateway serves and exits on
//!   SIGTERM within the unit's stop timeout, and `dpkg --purge` removes it all;
//! - the installed unit passes `systemd-analyze verify` on the host, with
//!   `/usr/bin/natsgate` resolving to the installed binary through an overlay
//!   on `/usr/bin` in a private mount namespace (nothing changes on the host);
//! - the .rpm (`cargo generate-rpm` over a stripped copy of the binary) is
//!   read with `rpm -qp` (files, config files, owners and modes, scriptlets,
//!   requirements), then installed with `rpm --root` into another Debian
//!   root, where its `%pre` makes the user, and erased.
//!
//! Needs root (chroot, mount), cargo-deb, cargo-generate-rpm, dpkg, rpm,
//! systemd-analyze, strip, unshare and the rootfs; `bash .ci/run` installs
//! what is missing. Without one, these tests skip loudly; under `CI=true`
//! they fail.

use natsgate_test_support as common;

use common::{free_port, hs256_token, NatsServer, Protocol, WsClient};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Longest any one packaging command may take (the rootfs may need a
/// debootstrap the first time: ~30 s).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

fn root_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok(v) if !v.is_empty() && v != "false" && v != "0")
}

/// `Ok(())`, or why these tests cannot run here: a panic under `CI=true`,
/// else a note on the process's stderr (the harness captures `eprintln!`,
/// and a skip nobody sees is a silent pass) and `false`.
fn can_run(what: &str, found: &Result<(), String>) -> bool {
    match found {
        Ok(()) => true,
        Err(why) if in_ci() => panic!("{what} needs, under CI=true: {why}"),
        Err(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: {what} did not run: {why}.\n*** `bash .ci/run` installs the tools.\n"
            );
            false
        }
    }
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|dir| dir.join(name).is_file()))
        || Path::new("/usr/sbin").join(name).is_file()
        || Path::new("/sbin").join(name).is_file()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The tools one test needs, as a reason when any is missing.
fn require(tools: &[&str], cargo_subcommands: &[&str], root: bool) -> Result<(), String> {
    let mut missing: Vec<String> = tools.iter().filter(|t| !on_path(t)).map(|t| t.to_string()).collect();
    for sub in cargo_subcommands {
        let ok = Command::new(cargo())
            .args([sub, "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            missing.push(format!("cargo {sub}"));
        }
    }
    if root && unsafe { libc::geteuid() } != 0 {
        missing.push("root (chroot and mount)".into());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing {}", missing.join(", ")))
    }
}

/// Runs `cmd` to its end within `timeout` (killed after it), returning its
/// output; panics if it cannot start or times out.
fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => output.unwrap_or_else(|e| panic!("{shown}: {e}")),
        Err(_) => {
            // SAFETY: kill(2) on the pid of a child we have not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{shown} did not finish within {timeout:?}");
        }
    }
}

/// Like `run`, asserting success; returns stdout.
fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `path` made of `dir` and the only file in it.
fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(files.len(), 1, "expected one package in {}: {files:?}", dir.display());
    files[0].clone()
}

// ---------------------------------------------------------------------------
// What the package must hold, from the files in deploy/packaging.

/// The unit's `[Service]` settings, by name (the last value of a repeated one).
fn unit_settings(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn unit_text() -> String {
    read(&root_dir().join("deploy/packaging/natsgate.service"))
}

/// Seconds in a systemd time span such as `35s`, `35`, `1min 5s`.
fn seconds(span: &str) -> u64 {
    let re = regex::Regex::new(r"^\s*(\d+)\s*(min|s)?\s*").unwrap();
    let mut rest = span;
    let mut total = 0;
    while !rest.trim().is_empty() {
        let caps = re.captures(rest).unwrap_or_else(|| panic!("not a time span: {span:?}"));
        let n: u64 = caps[1].parse().unwrap();
        total += if caps.get(2).map(|m| m.as_str()) == Some("min") { 60 * n } else { n };
        rest = &rest[caps[0].len()..];
    }
    total
}

#[test]
fn unit_runs_unprivileged_with_fds_restarts_and_a_stop_timeout_beyond_the_drain() {
    let unit = unit_settings(&unit_text());
    let get = |k: &str| unit.get(k).map(String::as_str).unwrap_or_else(|| panic!("the unit has no {k}="));
    assert_eq!(get("User"), "natsgate");
    assert_eq!(get("Group"), "natsgate");
    assert_eq!(get("ExecStart"), "/usr/bin/natsgate --config /etc/natsgate/config.json");
    assert_eq!(get("EnvironmentFile"), "-/etc/natsgate/natsgate.env");
    let nofile: u64 = get("LimitNOFILE").parse().expect("LimitNOFILE is a number");
    assert!(nofile >= 1 << 20, "LimitNOFILE={nofile}: one descriptor per client, up to 1M");
    assert_eq!(get("Restart"), "on-failure");
    // 78 = EX_CONFIG, what natsgate exits with on a bad configuration.
    assert_eq!(get("RestartPreventExitStatus"), "78");
    assert_eq!(get("KillSignal"), "SIGTERM");
    assert_eq!(get("NoNewPrivileges"), "yes");
    assert_eq!(get("CapabilityBoundingSet"), "");

    // The stop timeout outlasts the drain and the shutdown deadline, so a
    // draining gateway is never SIGKILLed.
    let defaults = natsgate::config::Config::from_iter(Vec::new()).expect("the default configuration");
    let stop = Duration::from_secs(seconds(get("TimeoutStopSec")));
    assert!(stop > defaults.drain_period, "TimeoutStopSec {stop:?} <= drain {:?}", defaults.drain_period);
    assert!(
        stop > defaults.shutdown_timeout,
        "TimeoutStopSec {stop:?} <= shutdown timeout {:?}",
        defaults.shutdown_timeout
    );
}

#[test]
fn default_config_and_environment_file_name_only_real_options() {
    let options: BTreeSet<&str> = natsgate::config::Config::option_names().iter().map(String::as_str).collect();
    let config: serde_json::Value =
        serde_json::from_str(&read(&root_dir().join("deploy/packaging/config.json"))).expect("config.json is JSON");
    for key in config.as_object().expect("config.json is an object").keys() {
        assert!(options.contains(key.as_str()), "config.json: {key} is no option");
    }
    // Every line: a comment, blank, or NAME=value; commented-out examples
    // (`#NATSGATE_X=...`) must name real options too, so a rename shows.
    let env = read(&root_dir().join("deploy/packaging/natsgate.env"));
    let mut named = 0;
    for line in env.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let assignment = line.strip_prefix('#').unwrap_or(line);
        let Some((name, _)) = assignment.split_once('=') else {
            assert!(line.starts_with('#'), "natsgate.env: not NAME=value nor a comment: {line}");
            continue;
        };
        if !name.starts_with("NATSGATE_") || name.contains(' ') {
            assert!(line.starts_with('#'), "natsgate.env: {line}");
            continue;
        }
        let option = name.trim_start_matches("NATSGATE_").to_lowercase();
        assert!(options.contains(option.as_str()), "natsgate.env: {name} is no option");
        named += 1;
    }
    assert!(named >= 3, "natsgate.env shows only {named} options");
    assert!(env.contains("NATSGATE_TOKEN_HMAC_SECRET_KEY") && env.contains("NATSGATE_API_KEY"));
}

// ---------------------------------------------------------------------------
// The .deb

/// Builds the .deb into `out`, returning its path.
fn build_deb(out: &Path) -> PathBuf {
    // --no-build: package the binary this test run built; --strip: the
    // release profile keeps debug info (for profiling) that a package
    // should not ship; --fast: lighter xz, 9 s instead of 40.
    run_ok(
        Command::new(cargo())
            .current_dir(root_dir())
            .args(["deb", "--no-build", "--strip", "--fast", "--output"])
            .arg(out),
    );
    only_file(out)
}

/// The cached Debian root from `.ci/rootfs`, extracted into a fresh
/// temporary directory (removed on drop).
fn debian_root() -> Result<TempDir, String> {
    let out = run(Command::new("bash").arg(root_dir().join(".ci/rootfs")), COMMAND_TIMEOUT);
    if !out.status.success() {
        return Err(format!(".ci/rootfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let tar = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = tempfile::Builder::new().prefix("natsgate-debroot-").tempdir().expect("tempdir");
    run_ok(Command::new("tar").arg("-C").arg(dir.path()).args(["-xf", &tar]));
    // The tarball's top directory was a private mktemp directory; a real /
    // is world-searchable, which the natsgate user needs.
    run_ok(Command::new("chmod").arg("755").arg(dir.path()));
    Ok(dir)
}

/// `chroot root args...` with a clean environment plus `env`.
fn chroot(root: &Path, user: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new("/usr/sbin/chroot");
    cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("LANG", "C");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(user) = user {
        cmd.arg(format!("--userspec={user}:{user}"));
    }
    cmd.arg(root).args(args);
    cmd
}

/// The installed environment file read as systemd's EnvironmentFile= reads
/// it (NAME=value lines; comments and blanks skipped).
fn environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

#[test]
fn deb_installs_into_debian_runs_as_its_user_and_purges_cleanly() {
    let tools = require(&["dpkg-deb", "chroot", "tar", "strip"], &["deb"], true);
    if !can_run("the .deb install test", &tools) {
        return;
    }
    let root_guard = match debian_root() {
        Ok(root) => root,
        Err(why) => {
            // Panics under CI=true, else says why it skips.
            can_run("the .deb install test", &Err(why));
            return;
        }
    };
    let root = root_guard.path();
    let out = tempfile::Builder::new().prefix("natsgate-deb-").tempdir().expect("tempdir");
    let deb = &build_deb(out.path());

    // What the package holds, before installing it.
    let contents = run_ok(Command::new("dpkg-deb").arg("--contents").arg(deb));
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/natsgate"),
        ("-rw-r--r--", "./usr/lib/systemd/system/natsgate.service"),
        ("-rw-r--r--", "./etc/natsgate/config.json"),
        ("-rw-r-----", "./etc/natsgate/natsgate.env"),
        ("-rw-r--r--", "./usr/share/doc/natsgate/env.example"),
    ] {
        assert!(
            contents.lines().any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{path} ({mode}) not in the .deb:\n{contents}"
        );
    }
    let conffiles = run_ok(Command::new("dpkg-deb").args(["--info"]).arg(deb).arg("conffiles"));
    assert_eq!(
        conffiles.lines().collect::<BTreeSet<_>>(),
        BTreeSet::from(["/etc/natsgate/config.json", "/etc/natsgate/natsgate.env"]),
        "conffiles (kept on upgrade when edited)"
    );
    let binary_size = contents.lines().find(|l| l.ends_with("./usr/bin/natsgate")).unwrap_or_default().to_string();
    let _ = writeln!(
        std::io::stderr(),
        "packages: {} ({} bytes): {binary_size}",
        deb.display(),
        deb.metadata().unwrap().len()
    );

    // Install into the Debian root.
    std::fs::copy(deb, root.join("tmp/natsgate.deb")).expect("copy the .deb into the root");
    let install = run_ok(&mut chroot(root, None, &[], &["dpkg", "-i", "/tmp/natsgate.deb"]));
    assert!(install.contains("Setting up natsgate"), "{install}");
    let version = run_ok(&mut chroot(root, None, &[], &["natsgate", "version"]));
    assert_eq!(version.trim(), format!("natsgate {VERSION}"));

    // The maintainer scripts' system user: no login, no home, system uid.
    let passwd = run_ok(&mut chroot(root, None, &[], &["getent", "passwd", "natsgate"]));
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields.len(), 7, "{passwd}");
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid > 0 && uid < 1000, "not a system uid: {passwd}");
    assert_eq!(fields[5], "/nonexistent", "{passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");
    let owner = run_ok(&mut chroot(root, None, &[], &["stat", "-c", "%U:%G %a", "/etc/natsgate/natsgate.env"]));
    assert_eq!(owner.trim(), "root:natsgate 640", "the secrets file");
    let denied = run(&mut chroot(root, Some("nobody"), &[], &["cat", "/etc/natsgate/natsgate.env"]), COMMAND_TIMEOUT);
    assert!(!denied.status.success(), "another user can read the secrets file");
    assert!(
        root.join("etc/systemd/system/multi-user.target.wants/natsgate.service").symlink_metadata().is_ok(),
        "the unit is not enabled (multi-user.target.wants)"
    );

    // The installed config is valid for the service's user, with the
    // secrets the admin puts in the environment file.
    let secrets = [("NATSGATE_TOKEN_HMAC_SECRET_KEY", "k"), ("NATSGATE_API_KEY", "a")];
    let check = run_ok(&mut chroot(
        root,
        Some("natsgate"),
        &secrets,
        &["/usr/bin/natsgate", "--config", "/etc/natsgate/config.json", "checkconfig"],
    ));
    assert_eq!(check.trim(), "configuration is valid");

    verify_unit(root);
    serve_as_the_unit_would(root);

    // Purge: files, conffiles and the enablement go; the user stays.
    run_ok(&mut chroot(root, None, &[], &["dpkg", "--purge", "natsgate"]));
    assert!(!root.join("usr/bin/natsgate").exists(), "purge left the binary");
    assert!(!root.join("etc/natsgate").exists(), "purge left /etc/natsgate");
    assert!(
        root.join("etc/systemd/system/multi-user.target.wants/natsgate.service").symlink_metadata().is_err(),
        "purge left the unit enabled"
    );
}

/// `systemd-analyze verify` on the installed unit, on the host (its
/// systemd and targets), with `/usr/bin/natsgate` resolving to the
/// installed binary: `/usr/bin` is overlaid with the root's in a private
/// mount namespace that ends with the command. Warnings (unknown keys, bad
/// values) exit 0, so the output must be empty too.
fn verify_unit(root: &Path) {
    if !can_run("systemd-analyze verify", &require(&["systemd-analyze", "unshare", "mount"], &[], true)) {
        return;
    }
    let unit = root.join("usr/lib/systemd/system/natsgate.service");
    let script = format!(
        "mount -t overlay overlay -o lowerdir={}/usr/bin:/usr/bin /usr/bin && \
         test -x /usr/bin/natsgate && exec systemd-analyze verify {}",
        root.display(),
        unit.display()
    );
    let before = Path::new("/usr/bin/natsgate").exists();
    let out = run(
        Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]),
        COMMAND_TIMEOUT,
    );
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {}: {}\n{said}",
        unit.display(),
        out.status
    );
    assert_eq!(Path::new("/usr/bin/natsgate").exists(), before, "the overlay outlived its mount namespace");
}

/// Runs the installed gateway as the unit does (its user, ExecStart, the
/// environment file, then test ports and NATS), waits for `/ready`, sends
/// the unit's KillSignal and checks that it exits cleanly well within
/// TimeoutStopSec.
fn serve_as_the_unit_would(root: &Path) {
    let unit = unit_settings(&read(&root.join("usr/lib/systemd/system/natsgate.service")));
    let exec: Vec<&str> = unit["ExecStart"].split_whitespace().collect();
    let stop = Duration::from_secs(seconds(&unit["TimeoutStopSec"]));
    assert_eq!(unit["KillSignal"], "SIGTERM");

    let nats = NatsServer::start();
    let (port, internal) = (free_port(), free_port());
    let mut env = environment_file(&read(&root.join("etc/natsgate/natsgate.env")));
    env.extend([
        ("NATSGATE_TOKEN_HMAC_SECRET_KEY".into(), "k".into()),
        ("NATSGATE_API_KEY".into(), "a".into()),
        ("NATSGATE_NATS_URL".into(), nats.url()),
        ("NATSGATE_PORT".into(), port.to_string()),
        ("NATSGATE_INTERNAL_PORT".into(), internal.to_string()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut cmd = chroot(root, Some(unit["User"].as_str()), &env, &exec);
    let log = tempfile::NamedTempFile::new().expect("log file");
    cmd.stdin(Stdio::null()).stdout(log.reopen().unwrap()).stderr(log.reopen().unwrap());
    let mut child = cmd.spawn().expect("start the installed natsgate");
    let log_text = || std::fs::read_to_string(log.path()).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the installed natsgate exited ({status}):\n{}", log_text());
        }
        if matches!(common::gateway::http_get(internal, "/ready"), Ok((200, _))) {
            break;
        }
        assert!(Instant::now() < deadline, "the installed natsgate was not ready in 15 s:\n{}", log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    // A client connected through the installed gateway is drained with
    // 3001 (reconnect elsewhere), and the process exits cleanly well within
    // TimeoutStopSec. chroot execs natsgate: the child's pid is the gateway's.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let url = format!("ws://127.0.0.1:{port}/connection/websocket");
    let (status, took, close) = runtime.block_on(async {
        let mut client = WsClient::connect(&url, Protocol::Json).await;
        client.set_auto_pong(true);
        client.connect_token(&hs256_token("k", "packaged", None, serde_json::json!(null))).await;
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        let close = client.expect_close(stop).await;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > stop {
                let _ = child.kill();
                panic!("natsgate still running {stop:?} after SIGTERM (systemd would SIGKILL):\n{}", log_text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        (status, started.elapsed(), close)
    });
    assert_eq!(close.0, 3001, "the drain's close: {close:?}\n{}", log_text());
    assert!(status.success(), "exit after SIGTERM: {status}\n{}", log_text());
    let _ = writeln!(
        std::io::stderr(),
        "packages: the installed gateway stopped {took:?} after SIGTERM (TimeoutStopSec {stop:?})"
    );
}

// ---------------------------------------------------------------------------
// The .rpm

#[test]
fn rpm_holds_the_binary_unit_config_and_user_scriptlets() {
    let tools = require(&["rpm", "strip"], &["generate-rpm"], false);
    if !can_run("the .rpm test", &tools) {
        return;
    }
    // cargo-generate-rpm packages target/release/natsgate as it is, and the
    // release profile keeps debug info: package a stripped copy, in a
    // target dir of its own (`--target-dir` replaces the `target/` prefix
    // of the asset paths).
    let staging = tempfile::Builder::new().prefix("natsgate-rpm-").tempdir().expect("tempdir");
    std::fs::create_dir(staging.path().join("release")).unwrap();
    run_ok(
        Command::new("strip")
            .arg("-o")
            .arg(staging.path().join("release/natsgate"))
            .arg(env!("CARGO_BIN_EXE_natsgate")),
    );
    let out = staging.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run_ok(
        Command::new(cargo())
            .current_dir(root_dir())
            .args(["generate-rpm", "--target-dir"])
            .arg(staging.path())
            .arg("--output")
            .arg(&out),
    );
    let rpm = only_file(&out);
    let _ = writeln!(std::io::stderr(), "packages: {} ({} bytes)", rpm.display(), rpm.metadata().unwrap().len());
    let query =
        |args: &[&str]| run_ok(Command::new("rpm").args(["-qp", "--nosignature", "--nodigest"]).args(args).arg(&rpm));

    let files: BTreeSet<String> = query(&["-l"]).lines().map(str::to_string).collect();
    for want in [
        "/usr/bin/natsgate",
        "/usr/lib/systemd/system/natsgate.service",
        "/etc/natsgate/config.json",
        "/etc/natsgate/natsgate.env",
        "/usr/share/doc/natsgate/env.example",
    ] {
        assert!(files.contains(want), "rpm -qpl has no {want}: {files:?}");
    }
    let configs: BTreeSet<String> = query(&["-c"]).lines().map(str::to_string).collect();
    assert_eq!(
        configs,
        BTreeSet::from(["/etc/natsgate/config.json".to_string(), "/etc/natsgate/natsgate.env".to_string()]),
        "rpm -qpc: config files"
    );
    let modes =
        query(&["--qf", "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]"]);
    for want in [
        "-rwxr-xr-x root root  /usr/bin/natsgate",
        "-rw-r----- root natsgate cn /etc/natsgate/natsgate.env",
        "-rw-r--r-- root root cn /etc/natsgate/config.json",
    ] {
        assert!(modes.lines().any(|l| l == want), "no `{want}` in:\n{modes}");
    }
    assert_eq!(query(&["--qf", "%{NAME} %{VERSION}"]), format!("natsgate {VERSION}"));
    let scripts = query(&["--scripts"]);
    assert!(scripts.contains("preinstall scriptlet") && scripts.contains("useradd --system"), "{scripts}");
    assert!(
        scripts.contains("preuninstall scriptlet") && scripts.contains("disable --now natsgate.service"),
        "{scripts}"
    );
    let requires = query(&["--requires"]);
    assert!(requires.lines().any(|l| l.trim() == "/usr/sbin/useradd"), "{requires}");
    // The unit in the rpm is the one the .deb installs and the tests check:
    // same SHA-256 (`--dump`: path size mtime digest ...).
    let dump = query(&["--dump"]);
    let digest = dump
        .lines()
        .find_map(|l| l.strip_prefix("/usr/lib/systemd/system/natsgate.service "))
        .and_then(|rest| rest.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("no unit in rpm --dump:\n{dump}"))
        .to_string();
    let ours = run_ok(Command::new("sha256sum").arg(root_dir().join("deploy/packaging/natsgate.service")));
    assert_eq!(ours.split_whitespace().next(), Some(digest.as_str()), "the rpm's unit differs from deploy/packaging's");

    // Its scriptlets run: installed with rpm into the Debian root (no rpm
    // database knows Debian's libc there, hence --nodeps), the %pre makes the
    // user before the secrets file is given its group; erase removes it.
    if !can_run("the .rpm install", &require(&["chroot", "tar"], &[], true)) {
        return;
    }
    let root_guard = match debian_root() {
        Ok(root) => root,
        Err(why) => {
            can_run("the .rpm install", &Err(why));
            return;
        }
    };
    let root = root_guard.path();
    let rpm_root = |args: &[&str]| {
        let mut cmd = Command::new("rpm");
        cmd.arg("--root").arg(root).args(args);
        cmd
    };
    run_ok(&mut rpm_root(&["--initdb"]));
    run_ok(rpm_root(&["-i", "--nodeps", "--nosignature"]).arg(&rpm));
    let passwd = run_ok(&mut chroot(root, None, &[], &["getent", "passwd", "natsgate"]));
    assert!(passwd.trim().ends_with(":/nonexistent:/sbin/nologin"), "{passwd}");
    let owner = run_ok(&mut chroot(root, None, &[], &["stat", "-c", "%U:%G %a", "/etc/natsgate/natsgate.env"]));
    assert_eq!(owner.trim(), "root:natsgate 640", "the secrets file");
    let version = run_ok(&mut chroot(root, None, &[], &["natsgate", "version"]));
    assert_eq!(version.trim(), format!("natsgate {VERSION}"));
    run_ok(&mut rpm_root(&["-e", "natsgate"]));
    assert!(!root.join("usr/bin/natsgate").exists(), "rpm -e left the binary");
    assert!(!root.join("etc/natsgate/config.json").exists(), "rpm -e left an unchanged config file");
}
