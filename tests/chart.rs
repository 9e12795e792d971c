//! The Helm chart (charts/natsgate) rendered and linted by the real `helm`,
//! every rendered object validated against Kubernetes' schemas by
//! `kubernetes-validate`, the rendered objects checked against each other
//! and against a live gateway; plus text checks of the Dockerfile.
//!
//! The value sets: defaults (bundled NATS), HPA, KEDA, an existing Secret,
//! ServiceMonitor and Ingress on, an external NATS URL, and one that sets
//! nearly every option. The NATS subchart can't be fetched here, so it is
//! replaced by an empty stand-in (`chart_support::helm::stage`): its own
//! objects are neither rendered nor validated (charts/natsgate/README.md).
//! Without helm or the validator these tests skip loudly, and fail under
//! `CI=true` (`.ci/run` installs both).

mod chart_support;
use natsgate_test_support as common;

use chart_support::helm::{self, Tools, CRD_KINDS, NAMESPACE, RELEASE};
use chart_support::{leaf_paths, lookup, undocumented_keys, values_refs};
use common::{free_port, hs256_token, Gateway, Protocol, WsClient, SECRET};
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    root().join("charts/natsgate")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn values_text() -> String {
    read(&chart_dir().join("values.yaml"))
}

fn values() -> Value {
    serde_norway::from_str(&values_text()).unwrap_or_else(|e| panic!("values.yaml is not valid YAML: {e}"))
}

fn value<'a>(values: &'a Value, path: &str) -> &'a Value {
    lookup(values, path).unwrap_or_else(|| panic!("values.yaml has no `{path}`"))
}

fn int(values: &Value, path: &str) -> i64 {
    value(values, path).as_i64().unwrap_or_else(|| panic!("values.yaml: `{path}` must be an integer"))
}

/// templates/* file name -> text, sorted.
fn templates() -> BTreeMap<String, String> {
    let dir = chart_dir().join("templates");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        out.insert(name, read(&path));
    }
    assert!(!out.is_empty(), "no templates in {}", dir.display());
    out
}

/// Every variable the gateway reads: the options `.env.example` lists (a
/// test keeps that file equal to the options) and `NATSGATE_CONFIG`, which
/// the command line reads.
fn known_variables() -> BTreeSet<String> {
    read(&root().join(".env.example"))
        .lines()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim().to_string()))
        .filter(|name| name.starts_with("NATSGATE_"))
        .chain(["NATSGATE_CONFIG".to_string()])
        .collect()
}

fn at<'a>(doc: &'a Value, path: &str) -> &'a Value {
    try_at(doc, path).unwrap_or_else(|| panic!("rendered object has no `{path}`: {}", yaml(doc)))
}

fn try_at<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = doc;
    for key in path.split('.') {
        node = match key.parse::<usize>() {
            Ok(i) => node.as_sequence().and_then(|s| s.get(i)),
            Err(_) => node.as_mapping().and_then(|m| m.get(key)),
        }?;
    }
    Some(node)
}

fn str_at<'a>(doc: &'a Value, path: &str) -> &'a str {
    at(doc, path).as_str().unwrap_or_else(|| panic!("`{path}` is not a string: {:?}", at(doc, path)))
}

fn int_at(doc: &Value, path: &str) -> i64 {
    at(doc, path).as_i64().unwrap_or_else(|| panic!("`{path}` is not an integer: {:?}", at(doc, path)))
}

fn yaml(doc: &Value) -> String {
    serde_norway::to_string(doc).unwrap_or_default()
}

fn string_map(doc: &Value, path: &str) -> BTreeMap<String, String> {
    at(doc, path)
        .as_mapping()
        .unwrap_or_else(|| panic!("`{path}` is not a map"))
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v.as_str().unwrap_or_else(|| panic!("{k:?}: {v:?}")).into()))
        .collect()
}

// ---------------------------------------------------------------------------
// The value sets, rendered once by helm.

/// Nearly every option set, to render the branches the defaults skip.
const EVERYTHING: &str = r#"
replicaCount: 3
imagePullSecrets: [{name: regcred}]
fullnameOverride: gw
image: {repository: registry.example.com/natsgate, tag: "9.9.9"}
gateway:
  natsUrl: nats://nats.messaging.svc:4222
  allowedOrigins: "https://app.example.com"
  tokenRsaPublicKey: "-----BEGIN PUBLIC KEY-----\nnot checked by checkconfig here\n-----END PUBLIC KEY-----"
  namespaces: [{name: chat, presence: true, history_size: 10, history_ttl: 60s}]
  configFile: {allow_subscribe_for_client: true}
  extraEnv: {NATSGATE_PING_INTERVAL: 25s}
secrets: {tokenHmacSecretKey: a-test-secret, apiKey: a-test-api-key}
shutdown: {preStopSleepSeconds: 0, terminationGracePeriodSeconds: 45}
serviceAccount: {create: false, name: existing-sa}
podAnnotations: {team: realtime}
podLabels: {tier: edge}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: realtime, effect: NoSchedule}]
affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 100, podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app.kubernetes.io/name: natsgate}}}}]}}
topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: natsgate}}}]
priorityClassName: high
service: {type: LoadBalancer, annotations: {a: b}}
ingress: {enabled: true, tls: [{secretName: natsgate-tls, hosts: [natsgate.example.com]}]}
podDisruptionBudget: {minAvailable: "50%"}
metrics: {scrapeAnnotations: false, serviceMonitor: {enabled: true, labels: {release: prom}}}
autoscaling:
  enabled: true
  cpu: {enabled: false}
  keda: {enabled: true, prometheus: {labelSelector: 'namespace="realtime",app_kubernetes_io_instance="natsgate"'}}
nats: {enabled: false}
"#;

/// (name, `--set` arguments, extra values file).
const SETS: &[(&str, &[&str], Option<&str>)] = &[
    ("defaults", &[], None),
    ("hpa", &["autoscaling.enabled=true"], None),
    ("keda", &["autoscaling.enabled=true", "autoscaling.keda.enabled=true"], None),
    ("existing-secret", &["secrets.existingSecret=natsgate-secrets"], None),
    ("monitor-ingress", &["metrics.serviceMonitor.enabled=true", "ingress.enabled=true"], None),
    ("nats-url", &["nats.enabled=false", "gateway.natsUrl=nats://nats.messaging.svc:4222"], None),
    ("everything", &[], Some(EVERYTHING)),
];

/// One rendered object and the template it came from.
struct Object {
    template: String,
    doc: Value,
}

struct Rendered {
    args: Vec<String>,
    yaml: String,
    objects: Vec<Object>,
}

impl Rendered {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .map(|o| &o.doc)
            .filter(|d| try_at(d, "kind").and_then(Value::as_str) == Some(kind))
            .collect()
    }

    fn get(&self, kind: &str) -> Option<&Value> {
        let all = self.all(kind);
        assert!(all.len() <= 1, "more than one {kind}");
        all.into_iter().next()
    }

    fn one(&self, kind: &str) -> &Value {
        self.get(kind).unwrap_or_else(|| panic!("no {kind} rendered with {:?}", self.args))
    }

    /// The ConfigMap of NATSGATE_* settings (not the config-file one).
    fn settings(&self) -> &Value {
        let maps = self.all("ConfigMap");
        maps.into_iter().find(|m| string_map(m, "data").contains_key("NATSGATE_PORT")).expect("the settings ConfigMap")
    }

    fn pod(&self) -> &Value {
        at(self.one("Deployment"), "spec.template.spec")
    }

    fn container(&self) -> &Value {
        at(self.pod(), "containers.0")
    }
}

struct Renders {
    tools: &'static Tools,
    staged: helm::Staged,
    sets: BTreeMap<&'static str, Rendered>,
}

impl Renders {
    fn set(&self, name: &str) -> &Rendered {
        &self.sets[name]
    }
}

/// `--set`/`-f` arguments of a value set (the values file lives in the staged dir).
fn set_args(staged: &helm::Staged, name: &str, sets: &[&str], file: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = sets.iter().flat_map(|s| ["--set".to_string(), s.to_string()]).collect();
    if let Some(text) = file {
        let path = staged.chart.parent().unwrap().join(format!("{name}.values.yaml"));
        std::fs::write(&path, text).unwrap();
        args.extend(["-f".to_string(), path.display().to_string()]);
    }
    args
}

/// Every value set rendered by `helm template`; `None` when the tools are
/// missing outside CI (the tests then skip, saying so).
fn renders() -> Option<&'static Renders> {
    static RENDERS: OnceLock<Option<Renders>> = OnceLock::new();
    RENDERS
        .get_or_init(|| {
            let tools = helm::tools()?;
            let staged = helm::stage(&chart_dir());
            let mut sets = BTreeMap::new();
            for (name, set, file) in SETS {
                let args = set_args(&staged, name, set, *file);
                let run = helm::template(tools, &staged.chart, &args);
                assert!(run.ok, "helm template ({name}: {args:?}) failed:\n{}", run.text());
                let objects = split_sources(&run.stdout);
                sets.insert(*name, Rendered { args, yaml: run.stdout, objects });
            }
            Some(Renders { tools, staged, sets })
        })
        .as_ref()
}

/// Splits helm's output at `---` lines, keeping each object's `# Source:`.
fn split_sources(text: &str) -> Vec<Object> {
    let mut out = Vec::new();
    for chunk in text.split("\n---\n").flat_map(|c| c.split("---\n")) {
        let Some(source) = chunk.lines().find_map(|l| l.strip_prefix("# Source: ")) else { continue };
        let template = source.rsplit('/').next().unwrap().to_string();
        for doc in helm::parse_objects(chunk) {
            out.push(Object { template: template.clone(), doc });
        }
    }
    out
}

macro_rules! renders_or_skip {
    () => {
        match renders() {
            Some(r) => r,
            None => return,
        }
    };
}

// ---------------------------------------------------------------------------
// helm lint, helm template, Kubernetes schemas.

#[test]
fn helm_lint_passes_strict_for_every_value_set() {
    let r = renders_or_skip!();
    for (name, rendered) in &r.sets {
        let run = helm::lint(r.tools, &r.staged.chart, &rendered.args);
        let text = run.text();
        assert!(run.ok && text.contains("1 chart(s) linted, 0 chart(s) failed"), "helm lint ({name}):\n{text}");
        let findings: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
        assert!(findings.iter().all(|l| l.starts_with("[INFO]")), "helm lint ({name}) has warnings or errors:\n{text}");
    }
}

#[test]
fn every_rendered_object_passes_the_kubernetes_schemas() {
    let r = renders_or_skip!();
    let mut report = Vec::new();
    for (name, rendered) in &r.sets {
        let crds = rendered.objects.iter().filter(|o| CRD_KINDS.contains(&str_at(&o.doc, "kind"))).count();
        match helm::validate(r.tools, &rendered.yaml, rendered.objects.len(), crds) {
            Ok(passed) => report.push(format!("{name}: {passed} objects valid, {crds} CRD objects without schema")),
            Err(e) => panic!("value set {name}: {e}"),
        }
    }
    eprintln!("kubernetes-validate --strict against {:?}:\n  {}", helm::KUBE_VERSIONS, report.join("\n  "));
}

#[test]
fn every_template_renders_its_kind_in_some_value_set() {
    let r = renders_or_skip!();
    let expected: BTreeMap<&str, (&str, &str)> = [
        ("configfile.yaml", ("v1", "ConfigMap")),
        ("configmap.yaml", ("v1", "ConfigMap")),
        ("deployment.yaml", ("apps/v1", "Deployment")),
        ("hpa.yaml", ("autoscaling/v2", "HorizontalPodAutoscaler")),
        ("ingress.yaml", ("networking.k8s.io/v1", "Ingress")),
        ("keda-scaledobject.yaml", ("keda.sh/v1alpha1", "ScaledObject")),
        ("pdb.yaml", ("policy/v1", "PodDisruptionBudget")),
        ("secret.yaml", ("v1", "Secret")),
        ("service.yaml", ("v1", "Service")),
        ("serviceaccount.yaml", ("v1", "ServiceAccount")),
        ("servicemonitor.yaml", ("monitoring.coreos.com/v1", "ServiceMonitor")),
    ]
    .into_iter()
    .collect();
    let names: Vec<String> = templates().into_keys().filter(|n| n.ends_with(".yaml")).collect();
    assert_eq!(
        names,
        expected.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
        "templates changed: update this test"
    );
    let mut seen = BTreeSet::new();
    for rendered in r.sets.values() {
        for object in &rendered.objects {
            let (api, kind) = expected[object.template.as_str()];
            assert_eq!(str_at(&object.doc, "apiVersion"), api, "{}", object.template);
            assert_eq!(str_at(&object.doc, "kind"), kind, "{}", object.template);
            assert_eq!(string_map(&object.doc, "metadata.labels")["app.kubernetes.io/component"], "gateway");
            seen.insert(object.template.clone());
        }
    }
    let missing: Vec<&&str> = expected.keys().filter(|k| !seen.contains(**k)).collect();
    assert!(missing.is_empty(), "never rendered by any value set: {missing:?}");

    // Neither an external NATS URL nor the bundled NATS: refused with a reason.
    let args = vec!["--set".to_string(), "nats.enabled=false".to_string()];
    let run = helm::template(r.tools, &r.staged.chart, &args);
    assert!(!run.ok && run.text().contains("set gateway.natsUrl"), "{}", run.text());
}

// ---------------------------------------------------------------------------
// The Deployment: pod settings, probes, shutdown timing.

#[test]
fn deployment_disables_service_links_and_probes_health_and_ready() {
    let r = renders_or_skip!();
    for (name, rendered) in &r.sets {
        let pod = rendered.pod();
        // Service links would put e.g. NATSGATE_SERVICE_HOST and
        // NATSGATE_PORT=tcp://... (from a Service named natsgate) into the
        // environment of a gateway that reads NATSGATE_*.
        assert_eq!(at(pod, "enableServiceLinks"), &Value::Bool(false), "{name}");
        assert_eq!(at(pod, "automountServiceAccountToken"), &Value::Bool(false), "{name}");
        let c = rendered.container();
        assert_eq!(str_at(c, "livenessProbe.httpGet.path"), "/health", "{name}");
        assert_eq!(str_at(c, "readinessProbe.httpGet.path"), "/ready", "{name}");
        assert_eq!(str_at(c, "livenessProbe.httpGet.port"), "internal", "{name}");
        assert_eq!(str_at(c, "readinessProbe.httpGet.port"), "internal", "{name}");
        let ports: BTreeMap<&str, i64> = at(c, "ports")
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| (str_at(p, "name"), int_at(p, "containerPort")))
            .collect();
        let settings = rendered.settings();
        assert_eq!(ports["internal"].to_string(), str_at(settings, "data.NATSGATE_INTERNAL_PORT"), "{name}");
        assert_eq!(ports["client"].to_string(), str_at(settings, "data.NATSGATE_PORT"), "{name}");
        assert_eq!(str_at(settings, "data.NATSGATE_ADDRESS"), "0.0.0.0", "{name}");
        // The gateway is named after its pod.
        assert_eq!(str_at(c, "env.0.name"), "NATSGATE_NAME");
        assert_eq!(str_at(c, "env.0.valueFrom.fieldRef.fieldPath"), "metadata.name");
        // The image runs as 10001 (Dockerfile): the pod says so too.
        assert_eq!(int_at(pod, "securityContext.runAsUser"), 10001, "{name}");
    }
}

#[test]
fn grace_period_outlasts_prestop_and_the_whole_shutdown() {
    let r = renders_or_skip!();
    for (name, rendered) in &r.sets {
        let c = rendered.container();
        let settings = rendered.settings();
        let seconds = |key: &str| -> i64 {
            let v = str_at(settings, &format!("data.{key}"));
            v.strip_suffix('s').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{key}={v}"))
        };
        let drain = seconds("NATSGATE_DRAIN_PERIOD");
        let timeout = seconds("NATSGATE_SHUTDOWN_TIMEOUT");
        let pre_stop = match try_at(c, "lifecycle.preStop.exec.command") {
            Some(cmd) => {
                let cmd: Vec<&str> = cmd.as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
                assert_eq!(cmd[0], "sleep", "{name}");
                cmd[1].parse::<i64>().unwrap()
            }
            None => 0,
        };
        let grace = int_at(rendered.pod(), "terminationGracePeriodSeconds");
        // The gateway refuses a drain period that is not shorter than the timeout.
        assert!(drain < timeout, "{name}: drain {drain}s, timeout {timeout}s");
        assert!(grace >= pre_stop + timeout, "{name}: grace {grace}s < preStop {pre_stop}s + timeout {timeout}s");
        assert!(grace > pre_stop + drain, "{name}");
    }
    let defaults = r.set("defaults");
    let values = values();
    let expected = int(&values, "shutdown.preStopSleepSeconds")
        + int(&values, "shutdown.timeoutSeconds")
        + int(&values, "shutdown.marginSeconds");
    assert_eq!(int_at(defaults.pod(), "terminationGracePeriodSeconds"), expected);
    assert_eq!(int_at(r.set("everything").pod(), "terminationGracePeriodSeconds"), 45);
    assert!(try_at(r.set("everything").container(), "lifecycle").is_none(), "preStopSleepSeconds 0: no preStop");
}

/// The gateway accepts each value set's configuration: `natsgate checkconfig`
/// with the rendered ConfigMap, Secret and config file as its environment.
#[test]
fn the_gateway_accepts_every_rendered_configuration() {
    let r = renders_or_skip!();
    let known = known_variables();
    for (name, rendered) in &r.sets {
        let dir = tempfile::tempdir().unwrap();
        let mut env = string_map(rendered.settings(), "data");
        if let Some(secret) = rendered.get("Secret") {
            env.extend(string_map(secret, "stringData"));
        }
        for key in env.keys() {
            assert!(known.contains(key), "{name}: the chart sets {key}, which is not a natsgate option");
        }
        if let Some(path) = env.get("NATSGATE_CONFIG").cloned() {
            // Mounted from the config-file ConfigMap at that path.
            let file = rendered.all("ConfigMap").into_iter().find_map(|m| string_map(m, "data").remove("config.json"));
            let file = file.expect("NATSGATE_CONFIG set but no config-file ConfigMap");
            let mount = str_at(rendered.container(), "volumeMounts.0.mountPath");
            assert_eq!(path, format!("{mount}/config.json"), "{name}");
            std::fs::write(dir.path().join("config.json"), file).unwrap();
            env.insert("NATSGATE_CONFIG".into(), dir.path().join("config.json").display().to_string());
        }
        if name == &"everything" {
            // A real PEM key is not worth carrying here; the variable name is checked above.
            env.remove("NATSGATE_TOKEN_RSA_PUBLIC_KEY");
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_natsgate"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("NATSGATE_") {
                cmd.env_remove(key);
            }
        }
        let out = cmd.current_dir(dir.path()).arg("checkconfig").envs(&env).env("NATSGATE_NAME", "pod-0").output();
        let out = out.expect("run natsgate checkconfig");
        assert!(
            out.status.success(),
            "{name}: natsgate checkconfig refuses the chart's configuration:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let defaults = r.set("defaults").settings();
    assert_eq!(
        str_at(defaults, "data.NATSGATE_NATS_URL"),
        format!("nats://{}.{NAMESPACE}.svc:4222", str_at(&values(), "nats.fullnameOverride"))
    );
    assert_eq!(str_at(r.set("nats-url").settings(), "data.NATSGATE_NATS_URL"), "nats://nats.messaging.svc:4222");
}

// ---------------------------------------------------------------------------
// Objects that point at each other.

fn labels_match(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn services_selectors_and_references_line_up() {
    let r = renders_or_skip!();
    for (name, rendered) in &r.sets {
        let dep = rendered.one("Deployment");
        let pod_labels = string_map(dep, "spec.template.metadata.labels");
        assert!(labels_match(&string_map(dep, "spec.selector.matchLabels"), &pod_labels), "{name}");
        let svc = rendered.one("Service");
        let svc_name = str_at(svc, "metadata.name");
        assert!(labels_match(&string_map(svc, "spec.selector"), &pod_labels), "{name}: Service selects no pod");
        let container_ports: Vec<&str> =
            at(rendered.container(), "ports").as_sequence().unwrap().iter().map(|p| str_at(p, "name")).collect();
        let svc_ports: Vec<&str> =
            at(svc, "spec.ports").as_sequence().unwrap().iter().map(|p| str_at(p, "name")).collect();
        for port in at(svc, "spec.ports").as_sequence().unwrap() {
            assert!(container_ports.contains(&str_at(port, "targetPort")), "{name}: {port:?}");
        }
        if let Some(pdb) = rendered.get("PodDisruptionBudget") {
            assert!(labels_match(&string_map(pdb, "spec.selector.matchLabels"), &pod_labels), "{name}: PDB");
        }
        if let Some(monitor) = rendered.get("ServiceMonitor") {
            let svc_labels = string_map(svc, "metadata.labels");
            assert!(labels_match(&string_map(monitor, "spec.selector.matchLabels"), &svc_labels), "{name}");
            assert!(svc_ports.contains(&str_at(monitor, "spec.endpoints.0.port")), "{name}");
            assert_eq!(str_at(monitor, "spec.endpoints.0.path"), "/metrics");
        }
        if let Some(ingress) = rendered.get("Ingress") {
            assert_eq!(str_at(ingress, "spec.rules.0.http.paths.0.backend.service.name"), svc_name, "{name}");
            let port = str_at(ingress, "spec.rules.0.http.paths.0.backend.service.port.name");
            assert!(svc_ports.contains(&port), "{name}");
            assert_eq!(str_at(ingress, "spec.rules.0.http.paths.0.path"), "/connection");
            for key in ["proxy-read-timeout", "proxy-send-timeout"] {
                let annotations = string_map(ingress, "metadata.annotations");
                let v = &annotations[&format!("nginx.ingress.kubernetes.io/{key}")];
                assert!(v.parse::<u32>().unwrap() >= 3600, "{key} = {v}");
            }
        }
        // envFrom names objects that exist (or the existing Secret).
        let c = rendered.container();
        assert_eq!(str_at(c, "envFrom.0.configMapRef.name"), str_at(rendered.settings(), "metadata.name"));
        let secret_ref = str_at(c, "envFrom.1.secretRef.name");
        match rendered.get("Secret") {
            Some(secret) => assert_eq!(secret_ref, str_at(secret, "metadata.name"), "{name}"),
            None => assert_eq!(secret_ref, "natsgate-secrets", "{name}: the existing Secret"),
        }
        let sa = str_at(rendered.pod(), "serviceAccountName");
        match rendered.get("ServiceAccount") {
            Some(account) => assert_eq!(sa, str_at(account, "metadata.name")),
            None => assert_eq!(sa, "existing-sa", "{name}"),
        }
    }
    assert!(r.set("existing-secret").get("Secret").is_none(), "existingSecret: no Secret of our own");
    let default_secret = r.set("defaults").one("Secret");
    assert_eq!(str_at(default_secret, "metadata.name"), RELEASE);
}

// ---------------------------------------------------------------------------
// Autoscaling on the connections gauge a live gateway exports.

/// The HPA's per-pod metric and the KEDA query name the gauge that a live
/// gateway, started with the chart's settings, exports on the path and port
/// the ServiceMonitor scrapes; the probes answer there too.
#[tokio::test]
async fn autoscalers_use_the_gauge_a_live_gateway_exports() {
    let Some(r) = renders() else { return };
    let hpa_set = r.set("hpa");
    let hpa = hpa_set.one("HorizontalPodAutoscaler");
    assert!(hpa_set.get("ScaledObject").is_none(), "HPA and ScaledObject never both");
    assert!(try_at(hpa_set.one("Deployment"), "spec.replicas").is_none(), "the autoscaler owns replicas");
    assert_eq!(str_at(hpa, "spec.scaleTargetRef.name"), str_at(hpa_set.one("Deployment"), "metadata.name"));
    assert_eq!(str_at(hpa, "spec.metrics.0.type"), "Pods");
    assert_eq!(str_at(hpa, "spec.metrics.0.pods.target.type"), "AverageValue");
    let target = int(&values(), "autoscaling.connections.targetAverageValue");
    assert_eq!(str_at(hpa, "spec.metrics.0.pods.target.averageValue"), target.to_string());
    assert_eq!(str_at(hpa, "spec.metrics.1.resource.name"), "cpu");
    let metric = str_at(hpa, "spec.metrics.0.pods.metric.name").to_string();

    let keda_set = r.set("keda");
    let keda = keda_set.one("ScaledObject");
    assert!(keda_set.get("HorizontalPodAutoscaler").is_none(), "KEDA makes its own HPA");
    assert_eq!(str_at(keda, "spec.scaleTargetRef.name"), str_at(keda_set.one("Deployment"), "metadata.name"));
    assert_eq!(str_at(keda, "spec.triggers.0.type"), "prometheus");
    assert_eq!(str_at(keda, "spec.triggers.0.metricType"), "AverageValue");
    assert_eq!(str_at(keda, "spec.triggers.0.metadata.threshold"), target.to_string());
    let service = str_at(keda_set.one("Service"), "metadata.name");
    assert_eq!(
        str_at(keda, "spec.triggers.0.metadata.query"),
        format!("sum({metric}{{namespace=\"{NAMESPACE}\",service=\"{service}\"}})")
    );
    assert_eq!(str_at(keda, "spec.triggers.1.type"), "cpu");
    let custom = r.set("everything").one("ScaledObject");
    assert_eq!(
        str_at(custom, "spec.triggers.0.metadata.query"),
        format!("sum({metric}{{namespace=\"realtime\",app_kubernetes_io_instance=\"natsgate\"}})")
    );
    assert_eq!(at(custom, "spec.triggers").as_sequence().unwrap().len(), 1, "cpu.enabled=false: no cpu trigger");
    for (name, text) in templates() {
        assert!(!text.contains(&metric), "{name} spells out {metric}; use .Values.autoscaling.connections.metricName");
    }
    let readme = read(&chart_dir().join("README.md"));
    assert!(readme.contains(&metric), "the README's prometheus-adapter rule names the metric");

    // A gateway with the chart's settings (its own ports, embedded broker).
    let defaults = r.set("defaults");
    let mut env = string_map(defaults.settings(), "data");
    for key in ["NATSGATE_ADDRESS", "NATSGATE_PORT", "NATSGATE_NATS_URL"] {
        env.remove(key);
    }
    let internal = free_port();
    env.insert("NATSGATE_INTERNAL_PORT".into(), internal.to_string());
    env.insert("NATSGATE_TOKEN_HMAC_SECRET_KEY".into(), SECRET.into());
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gw = Gateway::builder().envs(&vars).start();
    let c = defaults.container();
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = str_at(c, &format!("{probe}.httpGet.path"));
        let (status, body) = common::gateway::http_get(internal, path).expect("probe");
        assert_eq!(status, 200, "{probe} {path}: {body}");
    }
    let scrape = |path: String| async move {
        let (status, body) = common::gateway::http_get(internal, &path).expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        body
    };
    let monitor_path = str_at(r.set("monitor-ingress").one("ServiceMonitor"), "spec.endpoints.0.path").to_string();
    let body = scrape(monitor_path.clone()).await;
    assert!(body.lines().any(|l| l == format!("# TYPE {metric} gauge")), "{metric} is not a gauge:\n{body}");
    assert!(body.lines().any(|l| l == format!("{metric} 0")), "{body}");
    // It counts this pod's client connections.
    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    client.connect_token(&hs256_token(SECRET, "alice", None, serde_json::json!(null))).await;
    let body = scrape(monitor_path).await;
    assert!(body.lines().any(|l| l == format!("{metric} 1")), "{body}");
}

// ---------------------------------------------------------------------------
// Chart.yaml and values.yaml (text; no helm needed).

#[test]
fn chart_yaml_declares_the_optional_nats_dependency() {
    let chart: Value = serde_norway::from_str(&read(&chart_dir().join("Chart.yaml")))
        .unwrap_or_else(|e| panic!("Chart.yaml is not valid YAML: {e}"));
    assert_eq!(str_at(&chart, "apiVersion"), "v2");
    assert_eq!(str_at(&chart, "name"), "natsgate");
    let deps = at(&chart, "dependencies").as_sequence().expect("dependencies is a list");
    let nats =
        deps.iter().find(|d| d.get("name").and_then(Value::as_str) == Some("nats")).expect("a dependency named nats");
    assert_eq!(str_at(nats, "repository"), "https://nats-io.github.io/k8s/helm/charts/");
    assert_eq!(str_at(nats, "condition"), "nats.enabled");
    let values = values();
    assert_eq!(value(&values, "nats.config.jetstream.enabled"), &Value::Bool(true), "JetStream on in the bundled NATS");
    assert!(!value(&values, "nats.fullnameOverride").as_str().unwrap_or("").is_empty());
}

#[test]
fn values_yaml_parses_and_every_key_is_documented() {
    let values = values();
    assert!(values.is_mapping(), "values.yaml must be a mapping");
    let missing = undocumented_keys(&values_text());
    assert!(missing.is_empty(), "keys without a comment line above them:\n{}", missing.join("\n"));
}

/// helm renders a missing value as empty without a word, so a misspelt
/// `.Values` path is only caught here.
#[test]
fn every_values_reference_in_templates_exists() {
    let values = values();
    let mut missing = Vec::new();
    for (name, text) in templates() {
        for path in values_refs(&text) {
            if lookup(&values, &path).is_none() {
                missing.push(format!("{name}: .Values.{path}"));
            }
        }
    }
    assert!(missing.is_empty(), "referenced but not in values.yaml:\n{}", missing.join("\n"));
}

#[test]
fn every_value_is_used_by_a_template() {
    // Everything under `nats:` goes to the NATS subchart instead.
    let values = values();
    let refs: Vec<String> = templates().values().flat_map(|t| values_refs(t)).collect();
    let mut leaves = Vec::new();
    leaf_paths(&values, "", &mut leaves);
    let unused: Vec<&String> = leaves
        .iter()
        .filter(|leaf| !leaf.starts_with("nats."))
        .filter(|leaf| !refs.iter().any(|r| *leaf == r || leaf.starts_with(&format!("{r}."))))
        .collect();
    assert!(unused.is_empty(), "values no template reads: {unused:?}");
}

// ---------------------------------------------------------------------------
// Dockerfile and .dockerignore (text checks; tests/docker.rs builds and runs the image).

#[test]
fn dockerfile_builds_locked_release_and_runs_unprivileged() {
    let docker = read(&root().join("Dockerfile"));
    let lines: Vec<&str> = docker.lines().map(str::trim).collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    // A `# syntax=` line makes BuildKit pull a frontend image first, which
    // fails without a registry; cache mounts work without it.
    assert!(!lines.iter().any(|l| l.to_ascii_lowercase().replace(' ', "").starts_with("#syntax=")));
    assert!(docker.contains("ARG RUST_IMAGE=rust:1-bookworm"));
    assert!(has("FROM ${RUST_IMAGE} AS builder"));
    assert!(docker.contains("cargo build --release --locked"));
    assert!(has("FROM ${RUNTIME_IMAGE} AS runtime"));
    assert!(has("USER 10001:10001"), "runtime runs as the numeric non-root user");
    assert!(has("EXPOSE 8000 9000"));
    assert!(has("HEALTHCHECK "));
    assert!(docker.contains("NATSGATE_ADDRESS=0.0.0.0"));
    assert!(docker.contains("NATSGATE_INTERNAL_PORT=9000"));
    assert!(has("STOPSIGNAL SIGTERM"));
    assert!(has("ENTRYPOINT [\"/usr/local/bin/natsgate\"]"));
    // `docker stop` waits 10 s by default, shorter than the drain: the
    // documented run command gives the whole shutdown timeout.
    assert!(docker.contains("--stop-timeout"), "Dockerfile documents docker run --stop-timeout");
    let readme = read(&root().join("README.md"));
    assert!(readme.contains("--stop-timeout"), "README documents docker run --stop-timeout");
    let values = values();
    assert_eq!(int(&values, "podSecurityContext.runAsUser"), 10001);

    let ignore = read(&root().join(".dockerignore"));
    for entry in ["target/", ".git/", "tests/js/node_modules/", ".env", "config.json"] {
        assert!(ignore.lines().any(|l| l.trim() == entry), ".dockerignore lacks {entry}");
    }
    for needed in ["src", "proto", "build.rs", "Cargo.toml", "Cargo.lock", "benches", "tests"] {
        assert!(
            !ignore.lines().any(|l| l.trim().trim_end_matches('/') == needed),
            ".dockerignore excludes {needed}, which cargo build needs"
        );
    }
}
