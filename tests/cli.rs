//! The command line as a user meets it on this machine: policy checking, `doctor`, and `run`
//! on the machine's own kernel (the build machines': the kill tier; tests/native and the VM
//! tests in tests/vm cover what each tier stops).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Held by the tests that pin (run) and by those that need nothing pinned (status, mode):
/// cargo runs tests in parallel threads.
static PINS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pins_lock() -> std::sync::MutexGuard<'static, ()> {
    PINS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn minerguard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_minerguard"))
}

/// Runs minerguard with `args`; asserts its exit status and that stderr contains `needle`.
fn assert_fails(args: &[&str], code: i32, needle: &str) {
    let out = minerguard().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

fn write_policy(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn check_accepts_the_shipped_policy() {
    let out = minerguard()
        .args(["check", concat!(env!("CARGO_MANIFEST_DIR"), "/policy.toml")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("valid") && stdout.contains("mode enforce"),
        "{stdout}"
    );
}

#[test]
fn check_warns_of_allow_entries_missing_on_this_node() {
    let (dir, path) = write_policy(
        "mode = \"enforce\"\nnames = []\n[behavior]\nallow_programs = [\"/bin/sh\", \"/no/such/wrmsr\"]\n",
    );
    let out = minerguard().arg("check").arg(&path).output().unwrap();
    drop(dir);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/no/such/wrmsr") && !stderr.contains("/bin/sh"),
        "{stderr}"
    );
}

/// `minerguard check` on a policy with `text`: its exit status, stderr and the file's path.
fn check(text: &str) -> (Option<i32>, String, String) {
    let (_dir, path) = write_policy(text);
    let out = minerguard().arg("check").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, path.display().to_string())
}

#[test]
fn check_names_file_line_and_column_of_each_problem() {
    let (code, stderr, p) =
        check("mode = \"enforce\"\nnames = [\"xmrig\",\n  \"xmrig\", \"\"]\ncolour = 1\n");
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{p}:4:1: unknown field `colour`, expected one of `mode`, `scope`, `names`, `memfd`, `identity`, `mmap`, `argv`, `sha256`, `drift`, `behavior`"
        )
    );

    let (code, stderr, p) = check("mode = \"enforce\"\nnames = [\"xmrig\",\n  \"xmrig\", \"\"]\n");
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!("{p}:3:3: duplicate name \"xmrig\" (first listed at 2:10)"),
            format!("{p}:3:12: empty name"),
        ]
    );
}

#[test]
fn check_reports_a_missing_file() {
    assert_fails(
        &["check", "/nonexistent/policy.toml"],
        1,
        "cannot read the policy",
    );
}

#[test]
fn run_rejects_an_invalid_policy_before_touching_the_kernel() {
    let (_dir, path) = write_policy("mode = \"enforcing\"\nnames = []\n");
    let out = minerguard()
        .arg("run")
        .arg("--policy")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:1:8: unknown variant `enforcing`",
            path.display()
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("BPF"),
        "the kernel was consulted: {stderr}"
    );
}

#[test]
fn run_rejects_a_bad_flag() {
    assert_fails(
        &["run", "--mode", "block"],
        2,
        "possible values: audit, enforce",
    );
    // The tiers are spelled on the command line as in status, events and metrics.
    assert_fails(
        &["run", "--tier", "fmod-ret"],
        2,
        "possible values: auto, lsm, fmod_ret, kill",
    );
}

// Nothing is pinned here unless a test pins it (and removes it again).
#[test]
fn mode_without_enforcement_says_so() {
    let _pins = pins_lock();
    assert_fails(
        &["mode", "audit"],
        1,
        "minerguard is not enforcing: nothing is pinned",
    );
}

#[test]
fn status_without_enforcement_exits_3() {
    let _pins = pins_lock();
    let out = minerguard().args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["enforcing"], false);
    // No agent runs here: nothing it could have failed to deliver.
    assert_eq!(v["events_undelivered"], serde_json::Value::Null);
    assert!(v.as_object().unwrap().contains_key("events_undelivered"));
    assert_eq!(v["webhook_undelivered"], serde_json::Value::Null);
    assert!(v.as_object().unwrap().contains_key("webhook_undelivered"));
    let out = minerguard().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("enforcement: inactive"));
}

#[test]
fn run_takes_its_settings_from_the_file_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_flag) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
    // Two invalid policies: the error names the one `run` chose.
    std::fs::write(&from_file, "mode = \"a\"\nnames = []\n").unwrap();
    std::fs::write(&from_flag, "mode = \"b\"\nnames = []\n").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("policy = {:?}\n", from_file.display().to_string()),
    )
    .unwrap();
    assert_fails(
        &["run", "--config", config.to_str().unwrap()],
        1,
        &format!("{}:1:8: unknown variant `a`", from_file.display()),
    );
    assert_fails(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--policy",
            from_flag.to_str().unwrap(),
        ],
        1,
        &format!("{}:1:8: unknown variant `b`", from_flag.display()),
    );
}

#[test]
fn run_rejects_a_bad_or_missing_settings_file_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    assert_fails(
        &["run", "--config", config.to_str().unwrap()],
        1,
        &format!("reading {}", config.display()),
    );
    std::fs::write(
        &config,
        "mode = \"audit\"\n\nwebhook = \"http://127.0.0.1:2801/\"\n",
    )
    .unwrap();
    assert_fails(
        &["run", "--config", config.to_str().unwrap()],
        1,
        &format!("{}:3:1: unknown field `webhook`", config.display()),
    );
    std::fs::write(&config, "cri_socket = \"containerd.sock\"\n").unwrap();
    assert_fails(
        &["check", "--config", config.to_str().unwrap()],
        1,
        &format!("{}:1:14: cri_socket", config.display()),
    );
}

#[test]
fn check_validates_the_settings_and_the_policy_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/policy.toml");
    std::fs::write(
        &config,
        format!(
            "policy = {policy:?}\nwebhook_url = \"https://sidekick.example:2801/\"\ncri_socket = \"/run/containerd/containerd.sock\"\n"
        ),
    )
    .unwrap();
    let out = minerguard()
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{}: valid", config.display()))
            && stdout.contains(&format!("{policy}: valid")),
        "{stdout}"
    );
}

#[test]
fn run_rejects_a_webhook_url_that_is_not_http() {
    assert_fails(
        &["run", "--webhook-url", "ftp://127.0.0.1/"],
        1,
        "the scheme must be http or https",
    );
    assert_fails(
        &["run", "--webhook-url", "127.0.0.1:2801"],
        1,
        "the scheme must be http or https",
    );
}

#[test]
fn metrics_refuse_non_loopback_addresses_without_the_opt_in() {
    // Refused before anything is loaded, naming the flag that allows it.
    for addr in ["0.0.0.0:9464", "[::]:9464", "192.0.2.1:9464"] {
        assert_fails(
            &["run", "--metrics-addr", addr],
            1,
            &format!("--metrics-addr {addr}: not a loopback address"),
        );
        assert_fails(
            &["run", "--metrics-addr", addr],
            1,
            "only with --metrics-allow-remote",
        );
    }
    // The opt-in alone means nothing: it only qualifies an address.
    assert_fails(
        &["run", "--metrics-allow-remote"],
        2,
        "--metrics-addr <ADDR>",
    );
}

/// Under journald (JOURNAL_STREAM names stderr's file), the final error carries sd-daemon's
/// `<3>` prefix, which journald turns into PRIORITY=3; elsewhere the line is plain.
#[test]
fn errors_carry_their_priority_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let args = ["run", "--metrics-addr", "0.0.0.0:9464"];
    let run = |journal: bool| {
        let path = dir.path().join(format!("stderr-{journal}"));
        let file = std::fs::File::create(&path).unwrap();
        let meta = file.metadata().unwrap();
        let mut cmd = minerguard();
        cmd.args(args).stderr(file).env_remove("JOURNAL_STREAM");
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        assert_eq!(cmd.status().unwrap().code(), Some(1));
        std::fs::read_to_string(&path).unwrap()
    };
    let journal = run(true);
    assert!(
        journal.starts_with("<3>minerguard: --metrics-addr 0.0.0.0:9464"),
        "{journal}"
    );
    let plain = run(false);
    assert!(plain.starts_with("minerguard: --metrics-addr"), "{plain}");
}

/// On a kernel that cannot run BPF-LSM programs (this machine's), `run` must fail clearly
/// rather than pretend to protect the node. Where the kernel can, the agent must get ready.
/// On this machine's kernel the agent reaches `ready` on the strongest tier the kernel
/// proves (the build machines: kill), says which, and `disable` removes it; where no tier
/// works, it says why. (The native suite, tests/native, tests what the tier stops.)
#[test]
fn run_on_this_kernel_picks_a_tier_or_says_what_is_missing() {
    let _pins = pins_lock();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut child = minerguard()
        .args(["run", "--log-format", "json", "--policy"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/policy.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("minerguard ready") {
            break true;
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if ready {
        let status = minerguard().args(["status", "--json"]).output().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        let stopped = child.wait().unwrap();
        // Stopping leaves enforcement pinned: the test leaves the machine as it found it.
        let disabled = minerguard().arg("disable").output().unwrap();
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert!(stopped.success(), "{stderr}");
        assert!(disabled.status.success(), "{disabled:?}");
        let ready_line = stderr
            .lines()
            .find(|l| l.contains("minerguard ready"))
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        let tier = json["tier"].as_str().unwrap_or_default().to_string();
        assert!(
            ["lsm", "fmod_ret", "kill"].contains(&tier.as_str()),
            "status --json: {json}"
        );
        assert!(
            ready_line.contains(&format!("\"tier\":\"{tier}\"")),
            "the ready line names another tier than status ({tier}): {ready_line}"
        );
    } else {
        let _ = child.kill();
        let status = child.wait().unwrap();
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(1), "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("minerguard: "), "{stderr}");
        assert!(
            last.contains("no enforcement tier works") && last.contains("lsm:"),
            "no actionable message: {last}"
        );
    }
}

/// `doctor` tries every tier here and picks the first that works, as `run` does; where that
/// is not the lsm tier, its advice says how to get it.
#[test]
fn doctor_reports_the_tiers_of_this_kernel() {
    let out = minerguard().args(["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tiers = report["tiers"].as_array().unwrap();
    let names: Vec<&str> = tiers.iter().map(|t| t["tier"].as_str().unwrap()).collect();
    assert_eq!(names, ["lsm", "fmod_ret", "kill"]);
    let first = tiers.iter().find(|t| t["works"] == true);
    assert_eq!(
        report["tier"],
        first.map_or(serde_json::Value::Null, |t| t["tier"].clone())
    );
    for t in tiers.iter().filter(|t| t["works"] == false) {
        assert!(t["reason"].as_str().is_some_and(|r| !r.is_empty()), "{t}");
    }
    assert_eq!(out.status.success(), first.is_some(), "{report}");
    if report["tier"] != "lsm" {
        let advice = report["advice"].to_string();
        assert!(advice.contains("for the lsm tier"), "{advice}");
    }
}

/// Writes a policy of `n` entries "/" (never a name), one a line; checks it, which must fail
/// within 5 s. Returns the path and stderr.
fn check_bad_entries(n: usize) -> (String, String) {
    let mut text = String::from("mode = \"enforce\"\nnames = [\n");
    for _ in 0..n {
        text.push_str("  \"/\",\n");
    }
    text.push_str("]\n");
    let (_dir, path) = write_policy(&text);
    let started = Instant::now();
    let out = minerguard().arg("check").arg(&path).output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(5), "check took {took:?}");
    (path.display().to_string(), stderr)
}

/// Locating each problem used to rescan the text: 100,000 bad entries took 37 s and a million
/// never finished. Every problem is counted, 20 are listed, quickly.
#[test]
fn check_lists_20_of_200_000_bad_entries_quickly() {
    let (p, stderr) = check_bad_entries(200_000);
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 21, "{stderr}");
    assert_eq!(
        lines[0],
        format!("{p}:3:3: name \"/\" contains '/': names are file names, not paths")
    );
    assert_eq!(lines[20], format!("{p}: and 199980 more problems"));
}

/// A million bad entries: refused within seconds, in one line, without parsing them all (the
/// memory it would take could get the agent killed at a reload).
#[test]
fn check_rejects_a_million_bad_entries_quickly_and_briefly() {
    let (p, stderr) = check_bad_entries(1_000_000);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("{p}:1:1: the policy holds about 1000001 strings")),
        "{stderr}"
    );
}

#[test]
fn check_rejects_names_with_whitespace() {
    let (_dir, path) = write_policy("mode = \"enforce\"\nnames = [\"xmrig\", \"minerd\\n\"]\n");
    let out = minerguard().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!(
            "{}:2:19: name \"minerd\\n\" contains whitespace (U+000A): names cannot contain whitespace or control characters",
            path.display()
        )
    );
}

/// `status` as a user who may not read the pins (the pin directory is root's, mode 0700) must
/// say so, with exit status 4, not report "inactive" (3). The test points `status`'s access
/// check at a directory nobody may search (MINERGUARD_TEST_STATUS_PROBE_DIR, for tests only)
/// and runs it as nobody with setpriv; it needs root to switch users and is skipped otherwise.
#[test]
fn status_without_permission_says_so_with_exit_4() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() || which("setpriv").is_none() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("minerguard");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    // The binary must be reachable by nobody: tempdir is 0700, the build tree is not.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for json in [false, true] {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_minerguard"))
            .arg("status")
            .env("MINERGUARD_TEST_STATUS_PROBE_DIR", &locked);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{stderr}");
        assert!(stderr.contains("permission denied"), "{stderr}");
        assert!(stderr.contains("as root"), "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

#[test]
fn import_falco_turns_falcos_miner_lists_into_a_dropin_that_check_merges() {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/falco/falco-miner-rules-excerpt.yaml"
    );
    let out = minerguard().args(["import-falco", rules]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let dropin = String::from_utf8(out.stdout).unwrap();
    let parsed: toml::Table = toml::from_str(&dropin).unwrap();
    let names = parsed["names"].as_array().unwrap();
    // Falco's miner_binaries: 21 names.
    assert_eq!(names.len(), 21, "{dropin}");
    assert!(names.iter().any(|n| n.as_str() == Some("t-rex")));
    let argv = parsed["argv"].as_table().unwrap();
    // miner_domains (63) with the https and http lists, which it contains.
    assert_eq!(argv["domains"].as_array().unwrap().len(), 63, "{dropin}");
    assert_eq!(argv["schemes"].as_array().unwrap().len(), 4, "{dropin}");
    assert!(dropin.contains("Not imported: miner_ports"), "{dropin}");

    // Saved beside the shipped policy, `check` merges it.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/policy.toml"), &policy).unwrap();
    std::fs::create_dir(dir.path().join("policy.d")).unwrap();
    std::fs::write(dir.path().join("policy.d/falco.toml"), &dropin).unwrap();
    let out = minerguard().arg("check").arg(&policy).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("policy.d/falco.toml"), "{stdout}");
}

#[test]
fn import_falco_reads_tutorial_lists_and_says_when_there_is_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tutorial = dir.path().join("custom.yaml");
    std::fs::write(
        &tutorial,
        "- list: crypto_miners\n  items: [xmrig, minergate, \"bad name\", ccminer]\n\
         - rule: Crypto miner launched\n  condition: spawned_process and proc.name in (crypto_miners)\n  output: miner\n  priority: CRITICAL\n",
    )
    .unwrap();
    let out = minerguard()
        .arg("import-falco")
        .arg(&tutorial)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("\"minergate\""), "{stdout}");
    assert!(stdout.contains("# left out: \"bad name\""), "{stdout}");

    let stable = dir.path().join("falco_rules.yaml");
    std::fs::write(
        &stable,
        "- macro: spawned_process\n  condition: (evt.type in (execve, execveat))\n",
    )
    .unwrap();
    assert_fails(
        &["import-falco", stable.to_str().unwrap()],
        1,
        "no miner lists found",
    );
}
