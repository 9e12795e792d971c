//! Static checks of the Helm chart (charts/natsgate), the Dockerfile and
//! .dockerignore. No network, no helm, no docker: helm isn't available from
//! this project's package sources, so templates are rendered by the small
//! stand-in in `chart_support` (its rules are in its module docs), which takes
//! the first branch of every `if` and renders placeholders for everything but
//! plain `.Values` lookups. charts/natsgate/README.md says what this covers
//! and what it doesn't.

mod chart_support;

use chart_support::{
    control, defines, includes, leaf_paths, lookup, strip_comments, tokenize, undocumented_keys, values_refs,
    values_refs_transitive, Control, Renderer, Seg,
};
use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The per-pod gauge the autoscalers use; it must be exported by src/metrics.rs.
const CONNECTIONS_METRIC: &str = "natsgate_client_connections";

/// NATSGATE_* variables the gateway reads (the configuration contract).
const KNOWN_ENV: &[&str] = &[
    "NATSGATE_ADDRESS",
    "NATSGATE_PORT",
    "NATSGATE_INTERNAL_PORT",
    "NATSGATE_NAME",
    "NATSGATE_NATS_URL",
    "NATSGATE_NATS_PREFIX",
    "NATSGATE_TOKEN_HMAC_SECRET_KEY",
    "NATSGATE_TOKEN_RSA_PUBLIC_KEY",
    "NATSGATE_API_KEY",
    "NATSGATE_ALLOWED_ORIGINS",
    "NATSGATE_LOG_LEVEL",
    "NATSGATE_LOG_FORMAT",
    "NATSGATE_SHUTDOWN_TIMEOUT",
    "NATSGATE_DRAIN_PERIOD",
    "NATSGATE_CONFIG",
    "NATSGATE_NAMESPACES",
];

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

/// The manifest templates (everything rendered to Kubernetes objects).
fn manifests() -> BTreeMap<String, String> {
    templates().into_iter().filter(|(name, _)| name.ends_with(".yaml")).collect()
}

fn helpers() -> BTreeMap<String, String> {
    let text = read(&chart_dir().join("templates/_helpers.tpl"));
    defines(&text).unwrap_or_else(|e| panic!("_helpers.tpl: {e}"))
}

/// Renders one manifest template with the stand-in and parses the result.
fn render(name: &str) -> Value {
    let values = values();
    let text = manifests().remove(name).unwrap_or_else(|| panic!("no template {name}"));
    let rendered = Renderer::new(&values).render(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_norway::from_str(&rendered)
        .unwrap_or_else(|e| panic!("{name} does not render to YAML: {e}\n--- rendered ---\n{rendered}"))
}

fn at<'a>(doc: &'a Value, path: &str) -> &'a Value {
    let mut node = doc;
    for key in path.split('.') {
        node = match key.parse::<usize>() {
            Ok(i) => node.as_sequence().and_then(|s| s.get(i)),
            Err(_) => node.as_mapping().and_then(|m| m.get(key)),
        }
        .unwrap_or_else(|| panic!("rendered manifest has no `{path}` (stuck at `{key}`)"));
    }
    node
}

fn str_at<'a>(doc: &'a Value, path: &str) -> &'a str {
    at(doc, path).as_str().unwrap_or_else(|| panic!("`{path}` is not a string: {:?}", at(doc, path)))
}

// ---------------------------------------------------------------------------
// The stand-in renderer itself.

#[test]
fn renderer_follows_helm_for_the_supported_subset() {
    let values: Value = serde_norway::from_str("a: {b: 7, s: hi, m: {k: v}}\nflag: true\n").unwrap();
    let mut r = Renderer::new(&values);

    // Plain lookups render values; first `if` branch kept, `else` skipped.
    let out = r
        .render(
            "x: {{ .Values.a.b }}\n{{- if .Values.flag }}\ny: {{ .Values.a.s | quote }}\n{{- else }}\ny: other\n{{- end }}\nz: \"{{ .Values.a.b }}s\"\n",
        )
        .unwrap();
    assert_eq!(out, "x: 7\ny: \"hi\"\nz: \"7s\"\n");

    // Non-scalar or computed expressions become placeholders; nindent at its column.
    let out = r.render("m: {{ .Values.a.m }}\nlabels:\n  {{- include \"x\" . | nindent 2 }}\n").unwrap();
    let doc: Value = serde_norway::from_str(&out).unwrap();
    assert!(at(&doc, "m").as_str().unwrap().starts_with("__tpl"));
    assert_eq!(at(&doc, "labels").as_mapping().unwrap().len(), 1);

    // nindent must nest under a bare `key:` line or sit beside the entry above.
    assert!(r.render("a:\n  k: v\n  {{- include \"x\" . | nindent 2 }}\n").is_ok());
    assert!(r.render("a:\n  {{- include \"x\" . | nindent 0 }}\n").is_err());
    assert!(r.render("a:\n  k: v\n  {{- include \"x\" . | nindent 4 }}\n").is_err());

    // Trim markers behave as in Helm, so their misuse shows.
    assert_eq!(r.render("k: {{- .Values.a.b }}\n").unwrap(), "k:7\n");

    // What it can't follow is refused, not guessed.
    for bad in [
        "k: {{ if .Values.flag }}a{{ end }}\n",
        "{{ if .Values.flag }}\n{{- end }}\n",
        "{{- if .Values.flag }}\n",
        "k: {{ .Values.a.nope }}\n",
        "k: {{ toYaml .Values.a.m | nindent 2 }}\n",
        "k: {{ .Values.a.b\n}}\n",
        "{{- end }}\n",
    ] {
        assert!(Renderer::new(&values).render(bad).is_err(), "accepted {bad:?}");
    }
    assert_eq!(control("else if .Values.x"), Some(Control::Else));
    assert_eq!(strip_comments("a{{/* x\ny */}}b").unwrap(), "a\nb");
    assert_eq!(
        tokenize("a {{- x -}} b").unwrap(),
        vec![
            Seg::Text("a ".into()),
            Seg::Action { trim_left: true, trim_right: true, body: "x".into() },
            Seg::Text(" b".into())
        ]
    );
}

// ---------------------------------------------------------------------------
// Chart.yaml and values.yaml.

#[test]
fn chart_yaml_declares_the_optional_nats_dependency() {
    let chart: Value = serde_norway::from_str(&read(&chart_dir().join("Chart.yaml")))
        .unwrap_or_else(|e| panic!("Chart.yaml is not valid YAML: {e}"));
    assert_eq!(str_at(&chart, "apiVersion"), "v2");
    assert_eq!(str_at(&chart, "name"), "natsgate");
    assert_eq!(str_at(&chart, "type"), "application");
    for key in ["version", "appVersion"] {
        let v = str_at(&chart, key);
        assert_eq!(v.split('.').count(), 3, "{key} {v:?} is not semver");
    }
    let deps = at(&chart, "dependencies").as_sequence().expect("dependencies is a list");
    let nats =
        deps.iter().find(|d| d.get("name").and_then(Value::as_str) == Some("nats")).expect("a dependency named nats");
    assert_eq!(str_at(nats, "repository"), "https://nats-io.github.io/k8s/helm/charts/");
    assert_eq!(str_at(nats, "condition"), "nats.enabled");
    assert!(!str_at(nats, "version").is_empty());

    let values = values();
    assert!(value(&values, "nats.enabled").is_bool(), "nats.enabled must be a boolean");
    assert_eq!(value(&values, "nats.config.jetstream.enabled"), &Value::Bool(true), "JetStream on in the bundled NATS");
    assert!(
        !value(&values, "nats.fullnameOverride").as_str().unwrap_or("").is_empty(),
        "nats.fullnameOverride names the NATS Service the gateway connects to"
    );
}

#[test]
fn values_yaml_parses_and_every_key_is_documented() {
    let values = values();
    assert!(values.is_mapping(), "values.yaml must be a mapping");
    let missing = undocumented_keys(&values_text());
    assert!(missing.is_empty(), "keys without a comment line above them:\n{}", missing.join("\n"));
}

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

#[test]
fn includes_name_defined_helpers_and_existing_templates() {
    let helpers = helpers();
    let names: Vec<String> = templates().keys().cloned().collect();
    for (name, text) in templates() {
        let text = strip_comments(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        for inc in includes(&text) {
            assert!(helpers.contains_key(&inc), "{name} includes undefined helper {inc:?}");
        }
        // include (print $.Template.BasePath "/x.yaml") .
        for part in text.split("$.Template.BasePath \"/").skip(1) {
            let file = part.split('"').next().unwrap();
            assert!(names.iter().any(|n| n == file), "{name} includes missing template {file}");
        }
    }
}

// ---------------------------------------------------------------------------
// Every manifest.

#[test]
fn every_manifest_renders_to_a_kubernetes_object() {
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
    let manifests = manifests();
    let names: Vec<&str> = manifests.keys().map(String::as_str).collect();
    let wanted: Vec<&str> = expected.keys().copied().collect();
    assert_eq!(names, wanted, "templates/*.yaml changed: update this test");
    for (name, (api, kind)) in expected {
        let doc = render(name);
        assert_eq!(str_at(&doc, "apiVersion"), api, "{name}");
        assert_eq!(str_at(&doc, "kind"), kind, "{name}");
        assert!(!str_at(&doc, "metadata.name").is_empty(), "{name}: metadata.name");
        assert!(at(&doc, "metadata.labels").is_mapping(), "{name}: metadata.labels");
    }
    let notes = templates().remove("NOTES.txt").expect("templates/NOTES.txt");
    for (n, line) in notes.lines().enumerate() {
        tokenize(line).unwrap_or_else(|e| panic!("NOTES.txt:{}: {e}", n + 1));
    }
}

#[test]
fn configmap_sets_only_known_variables_and_listens_everywhere() {
    let values = values();
    let cm = render("configmap.yaml");
    let data = at(&cm, "data").as_mapping().unwrap();
    for key in data.keys() {
        let key = key.as_str().unwrap();
        if key.starts_with("__tpl") {
            continue; // gateway.extraEnv entries
        }
        assert!(KNOWN_ENV.contains(&key), "configmap sets unknown variable {key}");
    }
    assert_eq!(str_at(&cm, "data.NATSGATE_ADDRESS"), "0.0.0.0");
    assert_eq!(str_at(&cm, "data.NATSGATE_PORT"), int(&values, "containerPorts.client").to_string());
    assert_eq!(str_at(&cm, "data.NATSGATE_INTERNAL_PORT"), int(&values, "containerPorts.internal").to_string());
    assert_eq!(int(&values, "containerPorts.internal"), 9000);
    let secret = render("secret.yaml");
    for key in at(&secret, "stringData").as_mapping().unwrap().keys() {
        let key = key.as_str().unwrap();
        assert!(KNOWN_ENV.contains(&key), "secret sets unknown variable {key}");
    }
    assert!(at(&secret, "stringData.NATSGATE_TOKEN_HMAC_SECRET_KEY").is_string());
    assert!(at(&secret, "stringData.NATSGATE_API_KEY").is_string());
}

// ---------------------------------------------------------------------------
// Deployment: probes, shutdown, wiring.

#[test]
fn deployment_probes_point_at_health_and_ready_on_the_internal_port() {
    let dep = render("deployment.yaml");
    let c = at(&dep, "spec.template.spec.containers.0");
    assert_eq!(str_at(c, "livenessProbe.httpGet.path"), "/health");
    assert_eq!(str_at(c, "livenessProbe.httpGet.port"), "internal");
    assert_eq!(str_at(c, "readinessProbe.httpGet.path"), "/ready");
    assert_eq!(str_at(c, "readinessProbe.httpGet.port"), "internal");
    let ports: Vec<&str> = at(c, "ports").as_sequence().unwrap().iter().map(|p| str_at(p, "name")).collect();
    assert_eq!(ports, ["client", "internal"]);

    let svc = render("service.yaml");
    for port in at(&svc, "spec.ports").as_sequence().unwrap() {
        let target = str_at(port, "targetPort");
        assert!(ports.contains(&target), "service targets unknown container port {target}");
    }
    let monitor = render("servicemonitor.yaml");
    assert_eq!(str_at(&monitor, "spec.endpoints.0.port"), "internal");
    assert_eq!(str_at(&monitor, "spec.endpoints.0.path"), "/metrics");

    // Configuration: ConfigMap + Secret, gateway named after the pod.
    assert_eq!(str_at(c, "env.0.name"), "NATSGATE_NAME");
    assert_eq!(str_at(c, "env.0.valueFrom.fieldRef.fieldPath"), "metadata.name");
    assert!(at(c, "envFrom.0.configMapRef.name").is_string());
    assert!(at(c, "envFrom.1.secretRef.name").is_string());
    let helpers = helpers();
    assert!(
        helpers["natsgate.secretName"].contains(".Values.secrets.existingSecret"),
        "the Secret can come from secrets.existingSecret"
    );
}

#[test]
fn termination_grace_period_covers_prestop_and_the_whole_shutdown() {
    let values = values();
    let pre_stop = int(&values, "shutdown.preStopSleepSeconds");
    let drain = int(&values, "shutdown.drainPeriodSeconds");
    let timeout = int(&values, "shutdown.timeoutSeconds");
    let margin = int(&values, "shutdown.marginSeconds");
    assert!(drain > 0 && timeout > 0 && margin > 0 && pre_stop >= 0);
    // NATSGATE_SHUTDOWN_TIMEOUT counts from SIGTERM and includes the drain; the
    // gateway rejects a drain period that isn't shorter.
    assert!(drain < timeout, "shutdown.drainPeriodSeconds {drain} must be < shutdown.timeoutSeconds {timeout}");

    // The deployment takes the grace period from the helper, which sums preStop, timeout and margin.
    let dep_text = &manifests()["deployment.yaml"];
    assert!(
        dep_text.contains("terminationGracePeriodSeconds: {{ include \"natsgate.terminationGracePeriodSeconds\" . }}")
    );
    let helper = &helpers()["natsgate.terminationGracePeriodSeconds"];
    assert!(helper.contains(
        "add .Values.shutdown.preStopSleepSeconds .Values.shutdown.timeoutSeconds .Values.shutdown.marginSeconds"
    ));
    let grace = match value(&values, "shutdown.terminationGracePeriodSeconds") {
        Value::Null => pre_stop + timeout + margin,
        v => v.as_i64().expect("shutdown.terminationGracePeriodSeconds: integer or empty"),
    };
    assert!(grace >= pre_stop + timeout, "grace period {grace}s shorter than preStop {pre_stop}s + timeout {timeout}s");
    assert!(grace > pre_stop + drain);

    // The gateway gets the same drain period and timeout.
    let cm = render("configmap.yaml");
    assert_eq!(str_at(&cm, "data.NATSGATE_DRAIN_PERIOD"), format!("{drain}s"));
    assert_eq!(str_at(&cm, "data.NATSGATE_SHUTDOWN_TIMEOUT"), format!("{timeout}s"));

    // preStop sleeps before SIGTERM.
    let dep = render("deployment.yaml");
    let cmd = at(&dep, "spec.template.spec.containers.0.lifecycle.preStop.exec.command");
    let cmd: Vec<&str> = cmd.as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(cmd, ["sleep", pre_stop.to_string().as_str()]);
}

// ---------------------------------------------------------------------------
// Autoscaling on the connections gauge.

#[test]
fn autoscalers_use_the_connections_metric_named_once_in_values() {
    let values = values();
    assert_eq!(
        value(&values, "autoscaling.connections.metricName").as_str(),
        Some(CONNECTIONS_METRIC),
        "autoscaling.connections.metricName"
    );
    for (name, text) in templates() {
        assert!(
            !text.contains(CONNECTIONS_METRIC),
            "{name} spells out {CONNECTIONS_METRIC}; use .Values.autoscaling.connections.metricName"
        );
    }
    let helpers = helpers();
    let manifests = manifests();
    for name in ["hpa.yaml", "keda-scaledobject.yaml"] {
        let refs = values_refs_transitive(&manifests[name], &helpers);
        for path in ["autoscaling.connections.metricName", "autoscaling.connections.targetAverageValue"] {
            assert!(refs.contains(path), "{name} does not use .Values.{path}");
        }
    }

    let target = int(&values, "autoscaling.connections.targetAverageValue");
    let hpa = render("hpa.yaml");
    assert_eq!(str_at(&hpa, "spec.metrics.0.type"), "Pods");
    assert_eq!(str_at(&hpa, "spec.metrics.0.pods.metric.name"), CONNECTIONS_METRIC);
    assert_eq!(str_at(&hpa, "spec.metrics.0.pods.target.type"), "AverageValue");
    assert_eq!(str_at(&hpa, "spec.metrics.0.pods.target.averageValue"), target.to_string());
    assert_eq!(str_at(&hpa, "spec.metrics.1.type"), "Resource");
    assert_eq!(str_at(&hpa, "spec.metrics.1.resource.name"), "cpu");
    assert_eq!(str_at(&hpa, "spec.scaleTargetRef.kind"), "Deployment");

    let keda = render("keda-scaledobject.yaml");
    assert_eq!(str_at(&keda, "spec.triggers.0.type"), "prometheus");
    assert_eq!(str_at(&keda, "spec.triggers.0.metricType"), "AverageValue");
    assert_eq!(str_at(&keda, "spec.triggers.0.metadata.threshold"), target.to_string());
    assert!(manifests["keda-scaledobject.yaml"].contains("query: {{ include \"natsgate.kedaQuery\" . | quote }}"));
    assert!(helpers["natsgate.kedaQuery"].contains("printf \"sum(%s{%s})\" .Values.autoscaling.connections.metricName"));
    assert_eq!(str_at(&keda, "spec.triggers.1.type"), "cpu");

    // HPA and ScaledObject never both: KEDA makes its own HPA.
    assert!(manifests["hpa.yaml"]
        .starts_with("{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.keda.enabled) }}"));
    assert!(manifests["keda-scaledobject.yaml"]
        .starts_with("{{- if and .Values.autoscaling.enabled .Values.autoscaling.keda.enabled }}"));

    let readme = read(&chart_dir().join("README.md"));
    assert!(readme.contains(CONNECTIONS_METRIC), "README's prometheus-adapter rule names the metric");
}

#[test]
fn metrics_source_exports_the_connections_gauge() {
    let path = root().join("src/metrics.rs");
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): the chart autoscales on the gauge {CONNECTIONS_METRIC:?}, \
             which src/metrics.rs must export",
            path.display()
        )
    });
    assert!(
        source.contains(&format!("\"{CONNECTIONS_METRIC}\"")),
        "src/metrics.rs does not contain the string \"{CONNECTIONS_METRIC}\", the gauge the chart autoscales on"
    );
}

#[test]
fn ingress_keeps_websockets_open() {
    let values = values();
    for key in ["proxy-read-timeout", "proxy-send-timeout"] {
        let path = format!("nginx.ingress.kubernetes.io/{key}");
        let v = value(&values, "ingress.annotations")
            .get(path.as_str())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("ingress.annotations has no {path}"));
        assert!(v.parse::<u32>().unwrap() >= 3600, "{path} = {v}");
    }
    let ing = render("ingress.yaml");
    assert_eq!(str_at(&ing, "spec.rules.0.http.paths.0.backend.service.port.name"), "client");
    let paths = value(&values, "ingress.hosts").as_sequence().unwrap();
    assert_eq!(str_at(&paths[0], "paths.0.path"), "/connection");
}

// ---------------------------------------------------------------------------
// Dockerfile and .dockerignore (text checks: no docker engine here).

#[test]
fn dockerfile_builds_locked_release_and_runs_unprivileged() {
    let docker = read(&root().join("Dockerfile"));
    let lines: Vec<&str> = docker.lines().map(str::trim).collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    assert!(docker.contains("ARG RUST_IMAGE=rust:1-bookworm"));
    assert!(has("FROM ${RUST_IMAGE} AS builder"));
    assert!(docker.contains("cargo build --release --locked"));
    assert!(has("FROM ${RUNTIME_IMAGE} AS runtime"));
    assert!(has("USER 10001:10001"), "runtime runs as the numeric non-root user");
    assert!(has("EXPOSE 8000 9000"));
    assert!(has("HEALTHCHECK "));
    assert!(docker.contains("NATSGATE_ADDRESS=0.0.0.0"));
    assert!(docker.contains("NATSGATE_INTERNAL_PORT=9000"));
    assert!(has("ENTRYPOINT [\"/usr/local/bin/natsgate\"]"));
    // The chart's pod securityContext matches the image's user.
    let values = values();
    assert_eq!(int(&values, "podSecurityContext.runAsUser"), 10001);

    let ignore = read(&root().join(".dockerignore"));
    for entry in ["target/", ".git/", "tests/js/node_modules/"] {
        assert!(ignore.lines().any(|l| l.trim() == entry), ".dockerignore lacks {entry}");
    }
    for needed in ["src", "proto", "build.rs", "Cargo.toml", "Cargo.lock", "benches", "tests"] {
        assert!(
            !ignore.lines().any(|l| l.trim().trim_end_matches('/') == needed),
            ".dockerignore excludes {needed}, which cargo build needs"
        );
    }
}

/// `CHART_DUMP=1 cargo test --test chart dump -- --nocapture` prints what the
/// stand-in renders, for eyeballing.
#[test]
fn dump_rendered_manifests_on_request() {
    if std::env::var_os("CHART_DUMP").is_none() {
        return;
    }
    let values = values();
    let mut r = Renderer::new(&values);
    for (name, text) in manifests() {
        println!("--- # {name}\n{}", r.render(&text).unwrap());
    }
}
