//! The real `helm` (v3, a Go module: `.ci/run` builds it with `go install`)
//! and `kubernetes-validate` (PyPI, ships Kubernetes' JSON schemas, so it
//! validates offline; `.ci/run` installs it into a cached venv).
//!
//! Where they are looked for: `$HELM_BIN`, `$GOBIN`/`$GOPATH/bin`/`~/go/bin`,
//! then `PATH`; `$KUBERNETES_VALIDATE`, the venv `.ci/run` makes, then `PATH`.
//! Missing tools fail the tests under `CI=true` and skip them (loudly, with
//! the reason and the command that installs them) otherwise.

use serde::Deserialize;
use serde_norway::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Kubernetes versions every object is validated against: the oldest and
/// the newest whose schemas kubernetes-validate ships.
pub const KUBE_VERSIONS: &[&str] = &["1.25.0", "1.37.0"];
/// The version `helm template` and `helm lint` assume. A `go install`ed
/// helm has no default of its own (it says v1.20, which the chart refuses).
pub const KUBE_VERSION: &str = "1.25.0";
/// Kinds from CRDs (KEDA, Prometheus Operator): kubernetes-validate has no
/// schema for them, so they are checked field by field in tests/chart.rs.
pub const CRD_KINDS: &[&str] = &["ScaledObject", "ServiceMonitor"];
/// Release name and namespace used for every rendering.
pub const RELEASE: &str = "natsgate";
pub const NAMESPACE: &str = "realtime";
/// The kubernetes-validate release `.ci/run` installs.
pub const VALIDATOR_VERSION: &str = "1.37.0";

pub struct Tools {
    pub helm: PathBuf,
    pub validator: PathBuf,
}

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok(v) if !v.is_empty() && v != "false" && v != "0")
}

/// The tools, or `None` (after saying why on stderr) when they are missing
/// outside CI. Panics under `CI=true` when one is missing.
pub fn tools() -> Option<&'static Tools> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    let found = TOOLS.get_or_init(|| {
        let helm = find_helm();
        let validator = find_validator();
        match (helm, validator) {
            (Ok(helm), Ok(validator)) => Ok(Tools { helm, validator }),
            (helm, validator) => {
                Err([helm.err(), validator.err()].into_iter().flatten().collect::<Vec<_>>().join("; "))
            }
        }
    });
    match found {
        Ok(tools) => Some(tools),
        Err(why) if in_ci() => panic!("chart tests need helm and kubernetes-validate under CI=true: {why}"),
        Err(why) => {
            // Straight to the process's stderr: the test harness captures
            // eprintln!, and a skip nobody sees is a silent pass.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: chart rendering and schema validation did not run: {why}.\n\
                     *** `bash .ci/run` installs both (go install helm.sh/helm/v3/cmd/helm@v3.22.0; \
                     pip install kubernetes-validate=={VALIDATOR_VERSION} into a venv).\n"
                );
            });
            None
        }
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Where `.ci/run` puts the validator's venv.
pub fn validator_venv() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| home().map(|h| h.join(".cache")))?;
    Some(cache.join("natsgate-ci").join(format!("kubernetes-validate-{VALIDATOR_VERSION}")))
}

fn find_helm() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = [
        std::env::var_os("HELM_BIN").map(PathBuf::from),
        std::env::var_os("GOBIN").map(|d| PathBuf::from(d).join("helm")),
        std::env::var_os("GOPATH").map(|d| PathBuf::from(d).join("bin/helm")),
        home().map(|h| h.join("go/bin/helm")),
        on_path("helm"),
    ]
    .into_iter()
    .flatten()
    .collect();
    for bin in &candidates {
        if let Ok(out) = Command::new(bin).args(["version", "--short"]).output() {
            let version = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && version.starts_with("v3.") {
                return Ok(bin.clone());
            }
        }
    }
    Err(format!("no helm v3 found (HELM_BIN, GOBIN, GOPATH/bin, ~/go/bin, PATH; tried {candidates:?})"))
}

fn find_validator() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = [
        std::env::var_os("KUBERNETES_VALIDATE").map(PathBuf::from),
        validator_venv().map(|v| v.join("bin/kubernetes-validate")),
        on_path("kubernetes-validate"),
    ]
    .into_iter()
    .flatten()
    .collect();
    for bin in &candidates {
        if Command::new(bin).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Ok(bin.clone());
        }
    }
    Err(format!("no kubernetes-validate found (KUBERNETES_VALIDATE, the .ci/run venv, PATH; tried {candidates:?})"))
}

/// A copy of the chart with an empty stand-in for the `nats` subchart
/// (Chart.yaml only, no templates): the real one cannot be fetched here,
/// and helm refuses to render a chart whose dependency is missing.
pub struct Staged {
    _dir: tempfile::TempDir,
    pub chart: PathBuf,
}

pub fn stage(source: &Path) -> Staged {
    let dir = tempfile::Builder::new().prefix("natsgate-chart-").tempdir().expect("tempdir");
    let chart = dir.path().join("natsgate");
    copy_dir(source, &chart);
    let stub = chart.join("charts/nats");
    std::fs::create_dir_all(&stub).unwrap();
    std::fs::write(
        stub.join("Chart.yaml"),
        "apiVersion: v2\nname: nats\nversion: 1.2.0\ndescription: empty stand-in for the NATS chart (tests only)\n",
    )
    .unwrap();
    Staged { _dir: dir, chart }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot list {}: {e}", from.display())) {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What one helm or validator run said.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn run(bin: &Path, args: &[String]) -> Run {
    let out = Command::new(bin).args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn chart_args(command: &str, chart: &Path, args: &[String]) -> Vec<String> {
    let mut all = vec![command.to_string()];
    if command == "template" {
        all.push(RELEASE.to_string());
    }
    all.extend([
        chart.display().to_string(),
        "--namespace".into(),
        NAMESPACE.into(),
        "--kube-version".into(),
        KUBE_VERSION.into(),
    ]);
    all.extend(args.iter().cloned());
    all
}

/// `helm lint --strict` with these value arguments.
pub fn lint(tools: &Tools, chart: &Path, args: &[String]) -> Run {
    let mut all = chart_args("lint", chart, args);
    all.push("--strict".into());
    run(&tools.helm, &all)
}

/// `helm template`: the raw output.
pub fn template(tools: &Tools, chart: &Path, args: &[String]) -> Run {
    run(&tools.helm, &chart_args("template", chart, args))
}

/// Splits a multi-document YAML stream into objects (empty documents dropped).
pub fn parse_objects(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("helm output is not YAML: {e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// Validates `yaml` (many objects) with `kubernetes-validate --strict`
/// against every version in [`KUBE_VERSIONS`]. Ok: how many objects passed
/// per version; CRD kinds may only be reported as having no schema.
pub fn validate(tools: &Tools, yaml: &str, objects: usize, crds: usize) -> Result<usize, String> {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().expect("tempfile");
    std::fs::write(file.path(), yaml).unwrap();
    let mut args = vec!["--strict".to_string()];
    for v in KUBE_VERSIONS {
        args.extend(["-k".to_string(), v.to_string()]);
    }
    args.push(file.path().display().to_string());
    let out = run(&tools.validator, &args);
    let text = out.text();
    let mut passed = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("INFO ") && line.contains(" passed for resource ") {
            passed += 1;
        } else if line.starts_with("WARN ") && CRD_KINDS.iter().any(|k| line.contains(&format!("for kind {k} "))) {
            continue;
        } else {
            return Err(format!("kubernetes-validate: {line}\n--- full output ---\n{text}"));
        }
    }
    if !out.ok {
        return Err(format!("kubernetes-validate failed:\n{text}"));
    }
    let expected = (objects - crds) * KUBE_VERSIONS.len();
    if passed != expected {
        return Err(format!("kubernetes-validate passed {passed} objects, expected {expected}:\n{text}"));
    }
    Ok(passed / KUBE_VERSIONS.len())
}
