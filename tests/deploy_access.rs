//! The deployment files let clients and the process in: the example configurations accept
//! direct clients (PROXY protocol only where a balancer is documented), and in every container
//! setup the user portcullis runs as can read its private key while nobody else can — the
//! Dockerfile's user, the Kubernetes pod's user, group, fsGroup and secret mode, and the compose
//! stack's certificate volume written by that same user.

use std::path::{Path, PathBuf};

use portcullis::config::Config;
use serde::Deserialize;
use serde_norway::Value as Yaml;

fn deploy_file(relative: &str) -> String {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"))
}

fn yaml_documents(text: &str) -> Vec<Yaml> {
    serde_norway::Deserializer::from_str(text)
        .map(Yaml::deserialize)
        .collect::<Result<_, _>>()
        .expect("valid YAML")
}

fn assert_direct_clients_accepted(label: &str, text: &str) {
    let config = Config::parse(text).unwrap_or_else(|e| panic!("{label}: {e}"));
    assert!(!config.listeners.is_empty(), "{label}: no listener");
    for listener in &config.listeners {
        assert!(
            !listener.proxy_protocol,
            "{label}: listener {} requires a PROXY header, so direct clients are refused",
            listener.name
        );
    }
}

#[test]
fn example_configurations_accept_direct_clients() {
    let example = deploy_file("portcullis.toml");
    assert_direct_clients_accepted("deploy/portcullis.toml", &example);
    // The opt-in is documented next to the listeners.
    assert!(
        example.contains("#   proxy_protocol = true"),
        "no opt-in comment"
    );
    assert!(
        example.contains("#   trusted_proxies = "),
        "no opt-in comment"
    );
    assert_direct_clients_accepted(
        "deploy/compose/portcullis.toml",
        &deploy_file("compose/portcullis.toml"),
    );
    let configmap = yaml_documents(&deploy_file("k8s/configmap.yaml"));
    let text = configmap[0]["data"]["portcullis.toml"].as_str().unwrap();
    assert_direct_clients_accepted("deploy/k8s/configmap.yaml", text);
}

/// The final `USER uid:gid` of the Dockerfile.
fn image_user() -> (u64, u64) {
    let dockerfile = deploy_file("Dockerfile");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("Dockerfile sets USER");
    let (uid, gid) = user.trim().split_once(':').expect("USER uid:gid");
    (uid.parse().unwrap(), gid.parse().unwrap())
}

/// The `[tls]` cert and key of a configuration.
fn tls_paths(text: &str) -> (PathBuf, PathBuf) {
    let tls = Config::parse(text).unwrap().tls.expect("[tls]");
    (tls.cert, tls.key)
}

/// A file mode as Kubernetes reads it from YAML 1.1: a leading 0 means octal.
fn kubernetes_mode(manifest: &str, key: &str) -> u32 {
    let value = manifest
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key}"))
        .trim();
    match value.strip_prefix('0') {
        Some(octal) if !octal.is_empty() => u32::from_str_radix(octal, 8).unwrap(),
        _ => value.parse().unwrap(),
    }
}

#[test]
fn kubernetes_pod_user_reads_the_key_through_its_group_only() {
    let (uid, gid) = image_user();
    let manifest = deploy_file("k8s/deployment.yaml");
    let deployment = &yaml_documents(&manifest)[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let security = &pod["securityContext"];
    assert_eq!(
        security["runAsUser"].as_u64(),
        Some(uid),
        "pod user != image user"
    );
    assert_eq!(security["runAsGroup"].as_u64(), Some(gid));
    // Secret files belong to root with group fsGroup: the process reads them through that group.
    let fs_group = security["fsGroup"].as_u64().expect("fsGroup");
    assert_eq!(
        fs_group, gid,
        "fsGroup must be a group the container user has"
    );

    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some("tls"))
        .expect("tls volume");
    assert_eq!(
        volume["secret"]["secretName"].as_str(),
        Some("portcullis-tls")
    );
    let mode = kubernetes_mode(&manifest, "defaultMode");
    assert_ne!(
        mode & 0o040,
        0,
        "defaultMode {mode:o}: the group cannot read the key"
    );
    assert_eq!(
        mode & 0o007,
        0,
        "defaultMode {mode:o}: everyone can read the key"
    );
    assert_eq!(mode & 0o222, 0, "defaultMode {mode:o}: the key is writable");

    // The mount is where the configuration looks for the pair.
    let container = &pod["containers"][0];
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some("tls"))
        .expect("tls mount");
    let dir = mount["mountPath"].as_str().unwrap();
    let configmap = yaml_documents(&deploy_file("k8s/configmap.yaml"));
    let (cert, key) = tls_paths(configmap[0]["data"]["portcullis.toml"].as_str().unwrap());
    let items: Vec<&str> = volume["secret"]["items"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    for path in [cert, key] {
        assert_eq!(path.parent(), Some(Path::new(dir)), "{path:?} not in {dir}");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(items.contains(&name), "the secret does not provide {name}");
    }
}

#[test]
fn compose_certificates_are_written_by_the_user_that_reads_them() {
    let (uid, gid) = image_user();
    let dockerfile = deploy_file("Dockerfile");
    assert!(
        dockerfile.contains(&format!(
            "COPY --from=builder --chown={uid}:{gid} /out/tls /etc/portcullis/tls"
        )),
        "the image's /etc/portcullis/tls must belong to {uid}:{gid} (a new volume copies it)"
    );
    let compose = &yaml_documents(&deploy_file("compose.yaml"))[0];
    let services = &compose["services"];
    let portcullis = &services["portcullis"];
    let certs = &services["certs"];
    for (name, service) in [("portcullis", portcullis), ("certs", certs)] {
        assert!(
            service["user"].is_null(),
            "{name} overrides the image user, so it may not read the key"
        );
        assert_eq!(
            service["image"].as_str(),
            Some("portcullis:latest"),
            "{name}"
        );
    }
    // portcullis reads the key from a named volume (a host directory would keep the host's
    // owner and mode, typically root 0600: unreadable for uid 65532)...
    let mounts: Vec<&str> = portcullis["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let tls_mount = mounts
        .iter()
        .find(|m| m.contains(":/etc/portcullis/tls"))
        .expect("portcullis mounts /etc/portcullis/tls");
    let volume = tls_mount.split(':').next().unwrap();
    assert!(
        !volume.starts_with('.') && !volume.starts_with('/'),
        "{tls_mount} is a host directory"
    );
    assert!(
        compose["volumes"][volume].is_mapping(),
        "volume {volume} not declared"
    );
    // ...that the certs service fills first, as the same user, keeping it on later starts.
    assert_eq!(
        portcullis["depends_on"]["certs"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    let command: Vec<&str> = certs["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(&command[..2], ["generate", "cert"]);
    assert!(command.contains(&"--keep-existing"), "{command:?}");
    let out = command
        .windows(2)
        .find(|w| w[0] == "--out")
        .map(|w| w[1])
        .expect("--out");
    assert!(certs["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| v.as_str() == Some(&format!("{volume}:{out}"))));
    // The configuration names the files generate cert writes.
    let (cert, key) = tls_paths(&deploy_file("compose/portcullis.toml"));
    assert_eq!(cert, Path::new(out).join("server.pem"));
    assert_eq!(key, Path::new(out).join("server.key"));
}
