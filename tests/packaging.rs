//! What a newcomer and a packager get: `make help`, the README's quoted unit lines and sizes,
//! the `/` page, and what `make deb`, `make image` and `make dist` make. The `#[ignore]`d tests
//! need root, the static builds, the packages and the programs `make interop-deps` installs;
//! `make interop` makes those (`make static deb image dist`) and runs them. docs/testing.md
//! says what each checks.

mod common;

use common::*;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// The static build `make static` makes for `arch` (`x86_64` or `aarch64`).
fn static_binary(arch: &str) -> PathBuf {
    target_dir().join(format!("{arch}-unknown-linux-musl/release/handoff"))
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}): make interop makes it", path.display()))
}

fn readme() -> String {
    fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// Runs `program args` in the repository and returns its output; panics, with everything it
/// printed, if it cannot start or exits non-zero.
fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("handoff-packaging-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn str(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `make help` has a line for every target the Makefile defines, each with a description.
#[test]
fn make_help_lists_every_target() {
    let makefile = fs::read_to_string(root().join("Makefile")).expect("Makefile");
    let targets: Vec<&str> = makefile
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, rest)| {
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !rest.starts_with('=')
        })
        .map(|(name, _)| name)
        .collect();
    assert!(targets.len() >= 10 && targets.contains(&"deb"), "targets found: {targets:?}");
    let help = stdout(&run("make", &["-s", "help"]));
    for target in &targets {
        let line = help
            .lines()
            .find(|l| l.split_whitespace().take(2).eq(["make", *target]))
            .unwrap_or_else(|| panic!("make help has no line for {target}:\n{help}"));
        assert!(line.split_whitespace().count() > 3, "no description for {target}: {line:?}");
    }
    assert_eq!(help.lines().count(), targets.len(), "make help lists other lines:\n{help}");
}

/// Every `Key=value` the README quotes with a key the shipped units use is a line of them,
/// `ExecStart=` also as the `.deb` rewrites it.
#[test]
fn readme_quotes_the_shipped_unit_lines() {
    let units: String = ["handoff.socket", "handoff.service"]
        .iter()
        .map(|f| fs::read_to_string(root().join("systemd").join(f)).expect("unit file"))
        .collect();
    let lines: Vec<&str> =
        units.lines().filter(|l| l.contains('=') && !l.starts_with('#')).collect();
    let keys: Vec<&str> = lines.iter().filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect();
    // The .deb's unit: packaging/deb.sh points ExecStart at /usr/bin (tested by deb_packages_*).
    let derived = ["ExecStart=/usr/bin/handoff"];

    let text = readme();
    let spans: Vec<&str> = text.split('`').skip(1).step_by(2).collect();
    let mut checked = Vec::new();
    for span in spans {
        let Some((key, value)) = span.split_once('=') else { continue };
        // `Key=` alone names a directive (or a drop-in's reset), not a line.
        if !keys.contains(&key) || value.is_empty() {
            continue;
        }
        assert!(
            lines.contains(&span) || derived.contains(&span),
            "README quotes `{span}`, which is no line of systemd/handoff.{{socket,service}}"
        );
        checked.push(key);
    }
    for key in ["ListenStream", "ExecReload", "StateDirectory", "DynamicUser", "ExecStart"] {
        assert!(checked.contains(&key), "README no longer quotes {key}= (checked: {checked:?})");
    }
}

/// The `/` page's route list is one column of paths and one of descriptions.
#[test]
fn root_page_columns_line_up() {
    let relay = Relay::start(&[]);
    let response = relay.get("/");
    assert_eq!(response.status, 200, "{response}");
    let text = response.text();
    let columns: Vec<(usize, &str)> = text
        .lines()
        .filter(|l| ["GET ", "POST ", "DELETE "].iter().any(|m| l.starts_with(m)))
        .map(|l| {
            let path_end = l.find('/').and_then(|p| l[p..].find(' ').map(|e| p + e)).unwrap_or(0);
            let description = path_end + l[path_end..].len() - l[path_end..].trim_start().len();
            (description, l)
        })
        .collect();
    assert!(columns.len() >= 9, "{text}");
    let first = columns[0].0;
    for (at, line) in &columns {
        assert_eq!(*at, first, "description not in column {first}: {line:?}\n{text}");
    }
}

/// A README size quote: the KB figure in the table row whose first cell is `label`.
fn readme_kb(readme: &str, label: &str) -> f64 {
    let row = readme
        .lines()
        .find(|l| l.starts_with(&format!("| {label} |")))
        .unwrap_or_else(|| panic!("README has no size row {label:?}"));
    let cell = row.trim_end_matches('|').rsplit('|').next().unwrap_or("").trim();
    cell.strip_suffix(" KB")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("README's size row {label:?} has no 'N KB': {row:?}"))
}

fn assert_about(label: &str, quoted_kb: f64, bytes: u64) {
    let actual_kb = bytes as f64 / 1000.0;
    let off = (actual_kb - quoted_kb).abs() / actual_kb;
    assert!(
        off <= 0.05,
        "README says {label} is {quoted_kb} KB; it is {bytes} bytes ({actual_kb:.0} KB): update README"
    );
}

/// The sizes README quotes (Static binaries) are within 5 % of what the build made.
#[test]
#[ignore = "needs the static builds, the packages and the image: make interop"]
fn readme_sizes_match_the_build() {
    let text = readme();
    let size = |path: PathBuf| read(&path).len() as u64;
    let release = PathBuf::from(env!("CARGO_BIN_EXE_handoff"));
    assert_about(
        "release",
        readme_kb(&text, "`make`: `target/release/handoff` (x86_64, glibc)"),
        size(release),
    );
    assert_about(
        "x86_64 static",
        readme_kb(&text, "`make static`: x86_64"),
        size(static_binary("x86_64")),
    );
    assert_about(
        "aarch64 static",
        readme_kb(&text, "`make static`: aarch64"),
        size(static_binary("aarch64")),
    );
    for arch in ["amd64", "arm64"] {
        let name = format!("handoff_{VERSION}_{arch}.deb");
        let label = format!("`make deb`: `{name}`");
        assert_about(&name, readme_kb(&text, &label), size(target_dir().join("deb").join(&name)));
    }
    let image = format!("handoff:{VERSION}");
    let out = run("podman", &["image", "inspect", "--format", "{{.Size}}", &image]);
    let bytes: u64 = stdout(&out).trim().parse().expect("image size");
    assert_about(&image, readme_kb(&text, &format!("`make image`: `{image}`")), bytes);
    // The toolchain the README names is the one that built these.
    let rustc = stdout(&run("rustc", &["--version"]));
    let rustc = rustc.split_whitespace().nth(1).expect("rustc --version");
    assert!(
        text.contains(&format!("tested with {rustc} (`rustc --version`)")),
        "README names another Rust than {rustc}"
    );
    // The README's own recipes name this version's files.
    assert!(
        text.contains(&format!("handoff_{VERSION}_arm64.deb")),
        "README's .deb recipe names another version"
    );
    assert!(
        text.contains(&format!("handoff:{VERSION}")),
        "README's image recipe names another version"
    );
}

/// The packages `make deb` made: the arm64 one too, for its architecture, its files and its
/// binary (the static build's bytes); lintian (see docs/testing.md for the two tags kept).
#[test]
#[ignore = "needs the packages and lintian: make interop"]
fn deb_packages_hold_the_build_and_pass_lintian() {
    let dir = TempDir::new("deb");
    let mut debs = Vec::new();
    for (arch, triple) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let deb = target_dir().join("deb").join(format!("handoff_{VERSION}_{arch}.deb"));
        let deb = deb.to_str().expect("UTF-8 path").to_string();
        let field = |name: &str| stdout(&run("dpkg-deb", &["-f", &deb, name])).trim().to_string();
        assert_eq!(field("Package"), "handoff");
        assert_eq!(field("Version"), VERSION);
        assert_eq!(field("Architecture"), arch, "{deb}");
        assert_eq!(field("Depends"), "", "a static binary needs no dependencies");

        let listing = stdout(&run("dpkg-deb", &["-c", &deb]));
        let files: Vec<String> = listing
            .lines()
            .filter(|l| l.starts_with('-'))
            .map(|l| {
                let mode = &l[..10];
                let path = l.rsplit(' ').next().unwrap_or("");
                format!("{mode} {}", path.trim_start_matches('.'))
            })
            .collect();
        let want = [
            "-rw-r--r-- /etc/default/handoff",
            "-rw-r--r-- /lib/systemd/system/handoff.service",
            "-rw-r--r-- /lib/systemd/system/handoff.socket",
            "-rwxr-xr-x /usr/bin/handoff",
            "-rw-r--r-- /usr/share/doc/handoff/README.md.gz",
            "-rw-r--r-- /usr/share/doc/handoff/changelog.gz",
            "-rw-r--r-- /usr/share/doc/handoff/copyright",
            "-rw-r--r-- /usr/share/lintian/overrides/handoff",
            "-rw-r--r-- /usr/share/man/man8/handoff.8.gz",
        ];
        assert_eq!(files, want, "{deb}:\n{listing}");
        assert!(
            listing.lines().all(|l| l.contains(" root/root ")),
            "not owned by root:\n{listing}"
        );

        let tree = Path::new(dir.str()).join(arch);
        run("dpkg-deb", &["-x", &deb, tree.to_str().expect("UTF-8 path")]);
        assert!(
            read(&tree.join("usr/bin/handoff")) == read(&static_binary(triple)),
            "{deb}'s binary is not the static {triple} build"
        );
        let service =
            fs::read_to_string(tree.join("lib/systemd/system/handoff.service")).expect("unit");
        assert!(service.lines().any(|l| l == "ExecStart=/usr/bin/handoff"), "{service}");
        assert!(service.lines().any(|l| l == "EnvironmentFile=-/etc/default/handoff"), "{service}");
        let conffiles = stdout(&run("dpkg-deb", &["-I", &deb, "conffiles"]));
        assert_eq!(conffiles, "/etc/default/handoff\n", "{deb}'s conffiles");
        debs.push(deb);
    }

    // The arm64 binary, out of its package, runs (emulated).
    let arm = Path::new(dir.str()).join("arm64/usr/bin/handoff");
    let out = run("qemu-aarch64-static", &[arm.to_str().expect("UTF-8 path"), "--version"]);
    assert_eq!(stdout(&out).trim(), format!("handoff {VERSION}"));

    let mut args = vec!["--pedantic", "-E", "-I", "--tag-display-limit", "0"];
    args.extend(debs.iter().map(String::as_str));
    let out = Command::new("lintian")
        .args(&args)
        .output()
        .expect("cannot run lintian: make interop-deps");
    let report = stdout(&out);
    let kept =
        ["binary-has-unneeded-section", "package-supports-alternative-init-but-no-init.d-script"];
    let tags: Vec<&str> = report.lines().filter(|l| l.len() > 2 && &l[1..3] == ": ").collect();
    for tag in &tags {
        assert!(
            tag.starts_with("I: ") && kept.iter().any(|k| tag.contains(&format!(": {k} "))),
            "lintian: {tag} (only the informational tags docs/testing.md explains are expected)\n{report}"
        );
    }
    assert!(
        out.status.success(),
        "lintian exited {}:\n{report}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("lintian: {} tag lines, all explained:\n{report}", tags.len());
}

/// The amd64 package under a booted systemd: install, a hand-off through the activated socket,
/// remove (configuration kept), purge (nothing left): `systemd/test-under-systemd.sh --deb`.
#[test]
#[ignore = "needs root, systemd-nspawn, debootstrap and the package: make interop"]
fn deb_installs_serves_and_purges_under_systemd() {
    let deb = target_dir().join("deb").join(format!("handoff_{VERSION}_amd64.deb"));
    assert!(deb.is_file(), "no {}: make deb", deb.display());
    let script = root().join("systemd/test-under-systemd.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--deb")
        .arg(&deb)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run bash");
    let text = stdout(&out);
    let shown: Vec<&str> = text.lines().filter(|l| !l.contains("GET health - 200")).collect();
    assert!(
        out.status.success(),
        "{} --deb failed:\n{}\n{}",
        script.display(),
        shown.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    for n in 1..=3 {
        assert!(text.contains(&format!("\nok {n} - ")), "no check {n} passed:\n{text}");
    }
    println!("{text}");
}

/// The release archives `make dist` made: exactly the binary, the units, README and LICENSE,
/// the binary the static build's bytes, SHA256SUMS right, and a second run the same bytes.
#[test]
#[ignore = "needs the archives: make interop"]
fn dist_archives_hold_the_build_and_their_checksums() {
    let dist = target_dir().join("dist");
    let dir = TempDir::new("dist");
    for arch in ["x86_64", "aarch64"] {
        let name = format!("handoff-{VERSION}-{arch}-linux-musl");
        let archive = dist.join(format!("{name}.tar.gz"));
        let archive = archive.to_str().expect("UTF-8 path");
        let listing = stdout(&run("tar", &["tzvf", archive]));
        let mut entries: Vec<String> = listing
            .lines()
            .map(|l| format!("{} {}", &l[..10], l.rsplit(' ').next().unwrap_or("")))
            .collect();
        entries.sort();
        let mut want = vec![
            format!("drwxr-xr-x {name}/"),
            format!("-rw-r--r-- {name}/LICENSE"),
            format!("-rw-r--r-- {name}/README.md"),
            format!("-rwxr-xr-x {name}/handoff"),
            format!("-rw-r--r-- {name}/handoff.service"),
            format!("-rw-r--r-- {name}/handoff.socket"),
        ];
        want.sort();
        assert_eq!(entries, want, "{archive}:\n{listing}");
        run("tar", &["xzf", archive, "-C", dir.str()]);
        let unpacked = Path::new(dir.str()).join(&name);
        assert!(
            read(&unpacked.join("handoff")) == read(&static_binary(arch)),
            "{archive}: not the static build"
        );
        for file in ["systemd/handoff.socket", "systemd/handoff.service", "README.md", "LICENSE"] {
            let base = Path::new(file).file_name().expect("file name");
            assert!(
                read(&unpacked.join(base)) == read(&root().join(file)),
                "{archive}: {file} differs"
            );
        }
    }
    let sums = fs::read_to_string(dist.join("SHA256SUMS")).expect("SHA256SUMS");
    assert_eq!(sums.lines().count(), 2, "{sums}");
    let out = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&dist)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum -c SHA256SUMS:\n{}", stdout(&out));

    // Reproducible: the same commit, the same bytes.
    let again = TempDir::new("dist-again");
    run("packaging/dist.sh", &[VERSION, again.str()]);
    assert_eq!(
        read(&dist.join("SHA256SUMS")),
        read(&Path::new(again.str()).join("SHA256SUMS")),
        "a second make dist gave other archives"
    );
}

/// podman, with what lets it run containers where its defaults cannot (docs/testing.md): runc,
/// which also handles a cgroup v1/v2 hybrid, and limits within the current hard ones.
fn podman(args: &[&str]) -> Output {
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard_nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(1024)
        .min(65536);
    let mut command = Command::new("podman");
    command.args(["--runtime", "runc"]);
    if args.first() == Some(&"run") {
        command.arg("run").args([
            "--ulimit".to_string(),
            format!("nofile={hard_nofile}:{hard_nofile}"),
            "--ulimit".to_string(),
            "nproc=4096:4096".to_string(),
        ]);
        command.args(&args[1..]);
    } else {
        command.args(args);
    }
    command.stdin(Stdio::null()).output().expect("cannot run podman: make interop-deps")
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed:\n{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// The test's images, container and volume, removed when dropped.
struct PodmanThings {
    images: Vec<String>,
    container: String,
    volume: String,
}

impl Drop for PodmanThings {
    fn drop(&mut self) {
        if thread::panicking() {
            let logs = podman(&["logs", &self.container]);
            eprintln!(
                "container logs:\n{}{}",
                stdout(&logs),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        let _ = podman(&["rm", "-f", "-t", "0", &self.container]);
        let _ = podman(&["volume", "rm", "-f", &self.volume]);
        for image in &self.images {
            let _ = podman(&["rmi", "-f", image]);
        }
    }
}

/// GET `path` on `addr`: the status and body, or None if the connection failed or closed
/// without a response (a published port accepts before the relay inside listens).
fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    stream.write_all(&get_request(path)).ok()?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Waits until the relay in the container answers `/health` 200 on `addr`.
fn wait_ready(addr: SocketAddr) {
    let started = Instant::now();
    loop {
        if try_get(addr, "/health").is_some_and(|(status, _)| status == 200) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the container never answered /health on {addr}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The image from `Containerfile`: amd64 and arm64 builds with the user, environment and no
/// healthcheck; the amd64 one run by podman read-only, not as root, a `/link` hand-off and an
/// `/inbox` message through the published port, the message kept on the volume across a
/// restart and across a new container.
#[test]
#[ignore = "needs podman and the static builds: make interop"]
fn image_serves_through_its_published_port_and_keeps_state() {
    let tag = format!("localhost/handoff-test-{}", std::process::id());
    let things = PodmanThings {
        images: vec![format!("{tag}:amd64"), format!("{tag}:arm64")],
        container: format!("handoff-test-{}", std::process::id()),
        volume: format!("handoff-test-{}", std::process::id()),
    };
    let context = root().to_str().expect("UTF-8 path");
    for (platform, triple, image) in [
        ("linux/amd64", "x86_64-unknown-linux-musl", &things.images[0]),
        ("linux/arm64", "aarch64-unknown-linux-musl", &things.images[1]),
    ] {
        podman_ok(&[
            "build",
            "--platform",
            platform,
            "--build-arg",
            &format!("TARGET={triple}"),
            "-t",
            image,
            "-f",
            "Containerfile",
            context,
        ]);
        let format = "{{.Architecture}}|{{.Config.User}}|{{.Config.Env}}|{{.Config.Entrypoint}}|{{.HealthCheck}}";
        let inspect = podman_ok(&["image", "inspect", "--format", format, image]);
        let fields: Vec<&str> = inspect.trim().split('|').collect();
        let arch = platform.trim_start_matches("linux/");
        assert_eq!(fields[..2], [arch, "65534:65534"], "{image}: {inspect}");
        assert!(
            fields[2].split([' ', '[', ']']).any(|v| v == "HOST=0.0.0.0"),
            "{image}: {inspect}"
        );
        assert_eq!(
            fields[3..],
            ["[/usr/bin/handoff]", "<nil>"],
            "{image} (entrypoint, healthcheck): {inspect}"
        );
    }

    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let run_container = || {
        podman_ok(&[
            "run",
            "-d",
            "--name",
            &things.container,
            "--read-only",
            "-p",
            &format!("127.0.0.1:{port}:8080"),
            "-v",
            &format!("{}:/var/lib/handoff", things.volume),
            "-e",
            "HANDOFF_STATE_FILE=/var/lib/handoff/state",
            &things.images[0],
        ]);
        wait_ready(addr);
    };
    run_container();

    let pid = podman_ok(&["inspect", "--format", "{{.State.Pid}}", &things.container]);
    let status = fs::read_to_string(format!("/proc/{}/status", pid.trim()))
        .expect("the relay's /proc status");
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    assert_eq!(uid.split_whitespace().nth(1), Some("65534"), "the relay runs as {uid}");

    // A /link hand-off through the published port.
    let receiver = thread::spawn(move || exchange(addr, &get_request("/link/c")));
    let started = Instant::now();
    while try_get(addr, "/health").and_then(|(_, body)| json_number(&body, "parked")) != Some(1) {
        assert!(started.elapsed() < WAIT_CAP, "the receiver never parked");
        thread::sleep(Duration::from_millis(20));
    }
    let sent = exchange(addr, &post_request("/link/c", b"hello", &[]));
    assert_eq!(sent.status, 200, "{sent}");
    let got = receiver.join().expect("receiver thread");
    assert_eq!((got.status, got.text().as_str()), (200, "hello"), "{got}");

    // An /inbox message on the volume survives a restart, then a new container.
    let stored = exchange(addr, &post_request("/inbox/kept", b"still here", &[]));
    assert_eq!(stored.status, 200, "{stored}");
    podman_ok(&["restart", "-t", "10", &things.container]);
    wait_ready(addr);
    let after = exchange(addr, &get_request("/inbox/kept"));
    assert_eq!(
        (after.status, after.text().as_str()),
        (200, "still here"),
        "after a restart: {after}"
    );
    podman_ok(&["rm", "-f", "-t", "10", &things.container]);
    run_container();
    let after = exchange(addr, &get_request("/inbox/kept"));
    assert_eq!(
        (after.status, after.text().as_str()),
        (200, "still here"),
        "in a new container: {after}"
    );
}

/// `make install BINARY=... PREFIX=... DESTDIR=...` installs that binary and the units, with
/// `ExecStart` at the binary's new place, as README's static-binary recipe says.
#[test]
fn make_install_installs_the_given_binary() {
    let dest = TempDir::new("install");
    let binary = handoff_binary();
    run(
        "make",
        &[
            "-s",
            "install",
            &format!("BINARY={binary}"),
            "PREFIX=/opt/handoff",
            &format!("DESTDIR={}", dest.str()),
        ],
    );
    let installed = Path::new(dest.str());
    assert!(
        read(&installed.join("opt/handoff/bin/handoff")) == read(Path::new(&binary)),
        "not BINARY"
    );
    let units = installed.join("etc/systemd/system");
    let service = fs::read_to_string(units.join("handoff.service")).expect("handoff.service");
    assert!(service.lines().any(|l| l == "ExecStart=/opt/handoff/bin/handoff"), "{service}");
    assert!(read(&units.join("handoff.socket")) == read(&root().join("systemd/handoff.socket")));
    run("make", &["-s", "uninstall", "PREFIX=/opt/handoff", &format!("DESTDIR={}", dest.str())]);
    assert!(
        !installed.join("opt/handoff/bin/handoff").exists()
            && !units.join("handoff.service").exists()
    );
}
