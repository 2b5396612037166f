//! The Kubernetes manifests in deploy/k8s validate against the Kubernetes API schemas
//! (`kubernetes-validate --strict`, from PyPI: it ships the JSON schemas of every Kubernetes
//! version since 1.25), for the oldest version the manifests promise and the newest one the
//! validator knows. A deliberately broken manifest must be refused, so a validator that
//! accepts anything fails this test too.
//!
//! Needs `python3 -m kubernetes_validate`: scripts/install-test-deps.sh installs it with pip.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The oldest Kubernetes version deploy/k8s is written for (autoscaling/v2, the
/// `net.ipv4.ip_unprivileged_port_start` safe sysctl, policy/v1 PDBs are all older).
const OLDEST: &str = "1.30";

fn validate(version: Option<&str>, files: &[PathBuf]) -> Output {
    let mut command = Command::new("python3");
    command.args(["-m", "kubernetes_validate", "--strict"]);
    if let Some(version) = version {
        command.args(["--kubernetes-version", version]);
    }
    command.args(files);
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("python3 is not installed; run scripts/install-test-deps.sh")
        }
        Err(e) => panic!("cannot run python3: {e}"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named kubernetes_validate"),
        "kubernetes-validate is not installed; run scripts/install-test-deps.sh \
         (pip install kubernetes-validate)"
    );
    output
}

fn report(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every manifest except kustomization.yaml (a kustomize file, not an API object).
fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    files
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let files = manifests();
    for version in [Some(OLDEST), None] {
        let output = validate(version, &files);
        let text = report(&output);
        assert!(
            output.status.success(),
            "kubernetes-validate {version:?} refused a manifest:\n{text}"
        );
        // Every object was checked against a schema (an unknown kind or apiVersion is only a
        // warning for the tool, and a failure here).
        assert!(!text.contains("WARN"), "{version:?}:\n{text}");
        let passed = text.matches(" passed for resource ").count();
        assert!(passed >= 14, "only {passed} objects validated:\n{text}");
    }
}

#[test]
fn the_validator_refuses_a_broken_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let deployment = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/deployment.yaml"),
    )
    .unwrap();
    for (label, broken) in [
        // A typo in a field name (strict mode refuses unknown properties).
        (
            "unknown field",
            deployment.replace("readOnlyRootFilesystem:", "readOnlyRootFileSystem:"),
        ),
        // A wrong type.
        (
            "wrong type",
            deployment.replace("replicas: 2", "replicas: two"),
        ),
    ] {
        assert_ne!(broken, deployment, "{label}: the replacement did not apply");
        let path = dir.path().join("broken.yaml");
        std::fs::write(&path, broken).unwrap();
        let output = validate(None, &[path]);
        assert!(
            !output.status.success(),
            "{label}: kubernetes-validate accepted it:\n{}",
            report(&output)
        );
    }
}
