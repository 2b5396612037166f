//! Checks the deployment files under `deploy/`: every YAML/JSON/TOML file parses, the
//! Prometheus rules pass `promtool check rules` and their unit tests, the dashboard queries are
//! valid PromQL, every metric they name exists, the systemd unit passes `systemd-analyze
//! verify` and `security`, `haproxy -c` accepts the load-balancer config, and the Dockerfile
//! and Kubernetes manifests have the properties the deployment relies on.
//!
//! Needs the Debian packages `prometheus` (promtool), `systemd` (systemd-analyze) and `haproxy`;
//! a missing tool fails the test with a hint to run scripts/install-test-deps.sh.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_norway::Value as Yaml;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"))
}

/// Runs an external tool; a missing tool is a test failure with an installation hint.
fn run_tool(program: &str, args: &[&str], cwd: &Path) -> Output {
    match Command::new(program).args(args).current_dir(cwd).output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{program}` is not installed; run scripts/install-test-deps.sh \
             (Debian packages: prometheus, systemd, haproxy)"
        ),
        Err(e) => panic!("cannot run `{program}`: {e}"),
    }
}

/// Asserts success and returns stdout + stderr for further checks.
fn assert_tool_ok(program: &str, args: &[&str], cwd: &Path) -> String {
    let output = run_tool(program, args, cwd);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "`{program} {args:?}` failed:\n{report}"
    );
    report
}

fn files_with_extensions(dir: &Path, extensions: &[&str], found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_with_extensions(&path, extensions, found);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
        {
            found.push(path);
        }
    }
}

/// Parses every document of a (possibly multi-document) YAML text.
fn yaml_documents(text: &str) -> Result<Vec<Yaml>, serde_norway::Error> {
    serde_norway::Deserializer::from_str(text)
        .map(Yaml::deserialize)
        .collect()
}

fn all_k8s_documents() -> Vec<Yaml> {
    let mut files = Vec::new();
    files_with_extensions(&deploy_dir().join("k8s"), &["yaml"], &mut files);
    files
        .iter()
        .flat_map(|f| yaml_documents(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

fn k8s_object<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
}

#[test]
fn every_yaml_and_json_file_parses() {
    let mut files = Vec::new();
    files_with_extensions(&deploy_dir(), &["yaml", "yml", "json"], &mut files);
    assert!(
        files.len() >= 15,
        "expected the deploy files, found {files:?}"
    );
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if file.extension().is_some_and(|e| e == "json") {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(&text);
            assert!(parsed.is_ok(), "{file:?}: {parsed:?}");
            continue;
        }
        let docs = yaml_documents(&text).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        assert!(!docs.is_empty(), "{file:?} has no YAML document");
        for doc in docs {
            assert!(
                doc.is_mapping(),
                "{file:?}: a document is not a mapping: {doc:?}"
            );
        }
    }
}

/// Checks the config shape the deployment relies on: listeners reference existing backends,
/// metrics are on 9925.
fn assert_config_shape(label: &str, text: &str) {
    let config: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{label}: {e}"));
    let backends: BTreeSet<&str> = config["backend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    let listeners = config["listener"].as_array().unwrap();
    let mut binds = BTreeSet::new();
    for listener in listeners {
        let backend = listener["backend"].as_str().unwrap();
        assert!(
            backends.contains(backend),
            "{label}: unknown backend {backend}"
        );
        let bind = listener["bind"].as_str().unwrap();
        binds.insert(bind.rsplit(':').next().unwrap().to_owned());
    }
    let expected: BTreeSet<String> = ["110", "143", "993", "995"].map(String::from).into();
    assert_eq!(binds, expected, "{label}: listener ports");
    assert_eq!(config["metrics"]["bind"].as_str(), Some("0.0.0.0:9925"));
    assert!(config["tls"]["cert"].is_str() && config["tls"]["key"].is_str());
    assert!(config["scan"]["clamd"].is_array());
    assert_eq!(
        config["scan"]["quarantine_dir"].as_str(),
        Some("/var/lib/portcullis/quarantine")
    );
}

#[test]
fn example_configs_parse_and_are_consistent() {
    assert_config_shape("deploy/portcullis.toml", &read("portcullis.toml"));
    assert_config_shape(
        "deploy/compose/portcullis.toml",
        &read("compose/portcullis.toml"),
    );
    let docs = all_k8s_documents();
    let configmap = k8s_object(&docs, "ConfigMap", "portcullis-config");
    let text = configmap["data"]["portcullis.toml"].as_str().unwrap();
    assert_config_shape("deploy/k8s/configmap.yaml", text);
}

#[test]
fn prometheus_rules_pass_promtool_and_their_unit_tests() {
    let dir = deploy_dir().join("prometheus");
    let report = assert_tool_ok("promtool", &["check", "rules", "alerts.yml"], &dir);
    assert!(report.contains("SUCCESS"), "{report}");
    assert_tool_ok("promtool", &["test", "rules", "alerts_test.yml"], &dir);
}

/// All PromQL expressions of the Grafana dashboard, with Grafana's variables substituted.
fn dashboard_expressions() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/portcullis.json")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let exprs: Vec<String> = panels
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    exprs
        .iter()
        .map(|e| {
            e.replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$instance", ".*")
        })
        .collect()
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let exprs = dashboard_expressions();
    assert!(exprs.len() >= 18, "dashboard has {} queries", exprs.len());
    // promtool has no "check expression"; a rules file with one recording rule per query
    // makes it parse every query.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(expr).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.yml"), rules).unwrap();
    assert_tool_ok("promtool", &["check", "rules", "dashboard.yml"], dir.path());
}

/// Metric family names the process exports, from a rendered registry.
fn exported_families() -> BTreeSet<String> {
    let m = portcullis::metrics::Metrics::new().unwrap();
    m.prime_listener("imaps", portcullis::metrics::Protocol::Imap);
    m.prime_backend("legacy");
    m.rule_hits.with_label_values(&["r"]).inc();
    m.tls_handshakes
        .with_label_values(&["imaps", "ok", "ok", "TLSv1_3"])
        .inc();
    m.backend_errors
        .with_label_values(&["legacy", "connect", "timeout"])
        .inc();
    m.backend_ready.with_label_values(&["legacy"]).set(1);
    m.cluster_errors.with_label_values(&["get"]).inc();
    m.cluster_lookups.with_label_values(&["hit"]).inc();
    m.set_certificates(&[("/etc/portcullis/tls/server.pem".into(), i64::MAX)]);
    m.render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect()
}

fn referenced_metric_names(text: &str) -> BTreeSet<String> {
    let pattern = regex::Regex::new(r"portcullis_[a-z0-9_]+").unwrap();
    pattern
        .find_iter(text)
        .map(|m| m.as_str().to_owned())
        .collect()
}

#[test]
fn alerts_and_dashboard_only_use_exported_metrics() {
    let families = exported_families();
    assert_eq!(families.len(), 30, "{families:?}");
    let exists = |name: &str| {
        families.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| families.contains(base))
            })
    };
    let dashboard = read("grafana/portcullis.json");
    for (file, text) in [
        ("alerts.yml", read("prometheus/alerts.yml")),
        ("portcullis.json", dashboard.clone()),
    ] {
        for name in referenced_metric_names(&text) {
            assert!(
                exists(&name),
                "{file} uses {name}, which portcullis does not export"
            );
        }
    }
    let shown: BTreeSet<String> = referenced_metric_names(&dashboard)
        .into_iter()
        .map(|n| n.trim_end_matches("_bucket").to_owned())
        .collect();
    let missing: Vec<_> = families.difference(&shown).collect();
    assert!(missing.is_empty(), "dashboard lacks panels for {missing:?}");
}

/// The unit with every `/usr/bin/portcullis` replaced by the binary built by cargo, written to a
/// temp dir: `systemd-analyze verify` checks that ExecStart binaries exist and are executable.
fn unit_with_built_binary() -> (tempfile::TempDir, PathBuf) {
    let unit =
        read("portcullis.service").replace("/usr/bin/portcullis", env!("CARGO_BIN_EXE_portcullis"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.service");
    std::fs::write(&path, unit).unwrap();
    (dir, path)
}

#[test]
fn systemd_unit_passes_verify_without_warnings() {
    let (dir, path) = unit_with_built_binary();
    let path = path.to_str().unwrap();
    // verify exits 0 even for unknown keys or unparsable values; it only warns. Every line
    // it prints is therefore a failure.
    let report = assert_tool_ok("systemd-analyze", &["verify", path], dir.path());
    assert!(
        report.trim().is_empty(),
        "systemd-analyze verify warned:\n{report}"
    );
    let security = ["security", "--offline=true", "--threshold=20", path];
    assert_tool_ok("systemd-analyze", &security, dir.path());
}

#[test]
fn systemd_unit_has_the_required_hardening() {
    let unit = read("portcullis.service");
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    for required in [
        "ExecStartPre=/usr/bin/portcullis check-config --config /etc/portcullis/portcullis.toml",
        "ExecStart=/usr/bin/portcullis serve --config /etc/portcullis/portcullis.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=portcullis",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "ReadWritePaths=/var/lib/portcullis/quarantine",
    ] {
        assert!(
            lines.contains(required),
            "portcullis.service lacks `{required}`"
        );
    }
    assert!(lines
        .iter()
        .any(|l| l.starts_with("StateDirectory=portcullis")));
    assert!(lines.iter().any(|l| l.starts_with("LimitNOFILE=")));
}

#[test]
fn haproxy_config_is_valid_and_sends_proxy_v2() {
    let dir = deploy_dir();
    let report = assert_tool_ok("haproxy", &["-c", "-f", "haproxy.cfg"], &dir);
    assert!(report.contains("Configuration file is valid"), "{report}");
    let config = read("haproxy.cfg");
    let servers: Vec<&str> = config
        .lines()
        .filter(|l| l.trim().starts_with("server "))
        .collect();
    assert!(!servers.is_empty());
    for server in servers {
        assert!(
            server.contains("send-proxy-v2"),
            "no PROXY v2 on `{server}`"
        );
    }
    assert!(config.contains("mode tcp"));
}

#[test]
fn dockerfile_builds_locked_release_and_runs_unprivileged() {
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("FROM rust:1-bookworm AS builder"));
    assert!(dockerfile.contains("cargo build --release --locked"));
    let users: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("USER "))
        .collect();
    let last_user = users.last().expect("Dockerfile sets no USER").trim();
    let uid = last_user.split(':').next().unwrap();
    assert!(!["root", "0"].contains(&uid), "runtime USER is {last_user}");
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/bin/portcullis\"]"));
    for port in ["993", "143", "995", "110", "9925"] {
        assert!(dockerfile.contains(port), "EXPOSE lacks {port}");
    }
}

fn http_probe<'a>(container: &'a Yaml, probe: &str) -> (&'a str, &'a str) {
    let get = &container[probe]["httpGet"];
    (get["path"].as_str().unwrap(), get["port"].as_str().unwrap())
}

#[test]
fn kubernetes_deployment_probes_and_security() {
    let docs = all_k8s_documents();
    let deployment = k8s_object(&docs, "Deployment", "portcullis");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        http_probe(container, "readinessProbe"),
        ("/readyz", "metrics")
    );
    assert_eq!(
        http_probe(container, "livenessProbe"),
        ("/healthz", "metrics")
    );
    let metrics_port = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("metrics"))
        .unwrap();
    assert_eq!(metrics_port["containerPort"].as_u64(), Some(9925));
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert!(pod["securityContext"]["runAsUser"]
        .as_u64()
        .is_some_and(|uid| uid > 0));
}

#[test]
fn kubernetes_objects_are_complete() {
    let docs = all_k8s_documents();
    let service = k8s_object(&docs, "Service", "portcullis");
    assert_eq!(service["spec"]["type"].as_str(), Some("LoadBalancer"));
    let ports: BTreeSet<u64> = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, BTreeSet::from([110, 143, 993, 995]));
    let hpa = k8s_object(&docs, "HorizontalPodAutoscaler", "portcullis");
    assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2"));
    for (kind, name) in [
        ("Secret", "portcullis-tls"),
        ("PodDisruptionBudget", "portcullis"),
        ("NetworkPolicy", "portcullis"),
        ("Deployment", "clamd"),
        ("Service", "clamd"),
    ] {
        k8s_object(&docs, kind, name);
    }
    // kustomization.yaml must list every other manifest, or `kubectl apply -k` skips it.
    let kustomization = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Kustomization"))
        .expect("deploy/k8s/kustomization.yaml");
    let listed: BTreeSet<&str> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let mut files = Vec::new();
    files_with_extensions(&deploy_dir().join("k8s"), &["yaml"], &mut files);
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        if name != "kustomization.yaml" {
            assert!(
                listed.contains(name.as_str()),
                "kustomization.yaml lacks {name}"
            );
        }
    }
}
