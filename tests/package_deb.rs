//! The Debian package: `scripts/build-deb.sh --no-build` packages the binary cargo just built
//! (the test binary stands in for the release one: same metadata, no second build) and
//! `dpkg-deb --info` / `--contents` show what an operator gets — control fields, conffiles,
//! the user created by sysusers, a service that is not started on installation but restarted
//! after an upgrade, the binary, unit, sysusers entry, man pages, completions and copyright,
//! with the files equal to their sources; systemd-sysusers creates the user from the packaged
//! entry (in the extracted tree). Also: LICENSE is the license Cargo.toml declares.
//!
//! Needs cargo-deb (scripts/test.sh installs it) and dpkg-deb. Without cargo-deb the test says
//! so and passes, except under CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(command: &mut Command) -> String {
    String::from_utf8(run(command).stdout).expect("UTF-8 output")
}

fn cargo_deb_available() -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds the package from the binary under test; `None` when cargo-deb is missing outside CI.
fn build_package(dir: &Path) -> Option<PathBuf> {
    if !cargo_deb_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "cargo-deb is not installed (scripts/test.sh installs it: cargo install cargo-deb --locked)"
        );
        eprintln!("SKIPPED: cargo-deb is not installed (cargo install cargo-deb --locked)");
        return None;
    }
    let target = dir.join("target");
    let release = target.join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_portcullis"), release.join("portcullis")).unwrap();
    let deb = dir.join("portcullis.deb");
    run(Command::new(repo().join("scripts/build-deb.sh"))
        .args(["--no-build", "--fast", "--output"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(repo()));
    Some(deb)
}

fn field<'a>(info: &'a str, name: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in\n{info}"))
}

#[test]
fn deb_package_has_the_files_and_scripts_an_operator_needs() {
    let dir = tempfile::tempdir().unwrap();
    let Some(deb) = build_package(dir.path()) else {
        return;
    };
    let size = std::fs::metadata(&deb).unwrap().len();
    eprintln!("package: {size} bytes (from the debug binary, stripped)");

    let info = stdout(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert_eq!(field(&info, "Package"), "portcullis");
    assert_eq!(
        field(&info, "Version"),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(field(&info, "Section"), "mail");
    let depends = field(&info, "Depends");
    assert!(depends.contains("libc6"), "{depends}");
    assert!(depends.contains("systemd | systemd-sysusers"), "{depends}");
    assert!(field(&info, "Description").contains("IMAP and POP3"));

    let control = dir.path().join("control");
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    let conffiles: Vec<&str> = conffiles.lines().collect();
    assert_eq!(
        conffiles,
        [
            "/etc/portcullis/portcullis.toml",
            "/etc/portcullis/rules/default.toml"
        ]
    );
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("systemd-sysusers"), "{postinst}");
    assert!(postinst.contains("portcullis.conf"), "{postinst}");
    assert!(
        postinst.contains("-g portcullis /etc/portcullis/tls"),
        "{postinst}"
    );
    // Not started on installation (no certificate yet); a running service restarts on upgrade.
    assert!(!postinst.contains("invoke start"), "{postinst}");
    assert!(!postinst.contains("_dh_action=start"), "{postinst}");
    assert!(
        postinst.contains("try-restart portcullis.service"),
        "{postinst}"
    );
    assert!(!postinst.contains("#DEBHELPER#"));

    let contents = stdout(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let entry = |path: &str| {
        contents
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{contents}"))
    };
    assert!(entry("usr/bin/portcullis").starts_with("-rwxr-xr-x 0/0"));
    for path in [
        "usr/lib/systemd/system/portcullis.service",
        "usr/lib/sysusers.d/portcullis.conf",
        "etc/portcullis/portcullis.toml",
        "etc/portcullis/rules/default.toml",
        "usr/share/man/man1/portcullis.1.gz",
        "usr/share/man/man1/portcullis-serve.1.gz",
        "usr/share/man/man1/portcullis-generate-cert.1.gz",
        "usr/share/bash-completion/completions/portcullis",
        "usr/share/zsh/vendor-completions/_portcullis",
        "usr/share/fish/vendor_completions.d/portcullis.fish",
        "usr/share/doc/portcullis/copyright",
        "usr/share/doc/portcullis/CHANGELOG.md",
    ] {
        assert!(entry(path).starts_with("-rw-r--r-- 0/0"), "{}", entry(path));
    }

    // The files are the repository's (and the binary runs).
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    for (packaged, source) in [
        (
            "usr/lib/systemd/system/portcullis.service",
            "deploy/portcullis.service",
        ),
        (
            "usr/lib/sysusers.d/portcullis.conf",
            "deploy/portcullis.sysusers",
        ),
        ("etc/portcullis/portcullis.toml", "deploy/portcullis.toml"),
        ("etc/portcullis/rules/default.toml", "rules/default.toml"),
    ] {
        assert_eq!(
            std::fs::read(root.join(packaged)).unwrap(),
            std::fs::read(repo().join(source)).unwrap(),
            "{packaged} differs from {source}"
        );
    }
    // What postinst runs creates the service user (in the extracted tree, not on this host).
    run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg("portcullis.conf"));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd.lines().any(|l| l.starts_with("portcullis:")
            && l.ends_with(":/var/lib/portcullis:/usr/sbin/nologin")),
        "{passwd}"
    );
    let version = stdout(Command::new(root.join("usr/bin/portcullis")).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let copyright =
        std::fs::read_to_string(root.join("usr/share/doc/portcullis/copyright")).unwrap();
    assert!(copyright.contains("Apache License"), "{copyright}");
}

#[test]
fn license_file_is_the_declared_license() {
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    assert_eq!(manifest["package"]["license"].as_str(), Some("Apache-2.0"));
    let license = std::fs::read_to_string(repo().join("LICENSE")).unwrap();
    assert!(
        license.contains("Apache License"),
        "LICENSE is not the Apache License"
    );
    assert!(license.contains("Version 2.0, January 2004"));
    assert!(
        license.contains("END OF TERMS AND CONDITIONS"),
        "LICENSE is not complete"
    );
    let deb = &manifest["package"]["metadata"]["deb"];
    assert_eq!(deb["license-file"][0].as_str(), Some("LICENSE"));
}
