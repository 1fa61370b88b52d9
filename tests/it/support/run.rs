//! Running the `d1-backup` binary: as a CLI, or exactly as the Actions runner starts it
//! (every declared input as `INPUT_<NAME>`, unset ones empty, file-command files present).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set size of the process, in KiB.
    pub max_rss_kib: i64,
    /// CPU time (user + system) of the process, in seconds.
    pub cpu_seconds: f64,
    pub outputs_file: Option<String>,
    pub summary_file: Option<String>,
}

impl Run {
    /// The final JSON line on stdout.
    pub fn report(&self) -> serde_json::Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| {
                panic!(
                    "no JSON line on stdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            });
        serde_json::from_str(line).expect("final line is JSON")
    }

    /// Everything the process wrote anywhere.
    pub fn all_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.stdout,
            self.stderr,
            self.outputs_file.as_deref().unwrap_or(""),
            self.summary_file.as_deref().unwrap_or("")
        )
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_d1-backup"))
}

/// Run the binary with exactly `env` (cleared environment) and `args`.
pub fn run(args: &[&str], env: &BTreeMap<String, String>) -> Run {
    run_in(args, env, None)
}

pub fn run_in(args: &[&str], env: &BTreeMap<String, String>, dir: Option<&Path>) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    let mut child = cmd.spawn().expect("spawn d1-backup");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let pid = child.id();
    let mut peak = 0i64;
    // Reaped with wait4 (not `Child::wait`) to learn the CPU time of this very process.
    let (code, cpu_seconds) = loop {
        if let Some(hwm) = vm_hwm_kib(pid) {
            peak = peak.max(hwm);
        }
        let mut status = 0;
        // SAFETY: zeroed `rusage` is a valid value; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid as libc::pid_t {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -libc::WTERMSIG(status)
            };
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            break (code, secs(usage.ru_utime) + secs(usage.ru_stime));
        }
        assert!(r >= 0, "wait4 failed: {}", std::io::Error::last_os_error());
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    drop(child);
    let rss = peak;
    Run {
        code,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
        max_rss_kib: rss,
        cpu_seconds,
        outputs_file: env
            .get("GITHUB_OUTPUT")
            .and_then(|p| std::fs::read_to_string(p).ok()),
        summary_file: env
            .get("GITHUB_STEP_SUMMARY")
            .and_then(|p| std::fs::read_to_string(p).ok()),
    }
}

/// Peak resident set size (`VmHWM`) of a running process, in KiB. Sampled while the
/// process runs: `ru_maxrss` would include the forked test process's own memory.
pub fn vm_hwm_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The runner's environment for a Docker action: every input of `action.yml` as
/// `INPUT_<NAME>` (empty unless given), plus the file-command files.
pub struct ActionEnv {
    pub env: BTreeMap<String, String>,
    pub dir: tempfile::TempDir,
}

impl ActionEnv {
    pub fn new(inputs: &[(&str, &str)]) -> ActionEnv {
        let dir = tempfile::tempdir().unwrap();
        let mut env = BTreeMap::new();
        for spec in d1_backup::cli::inputs::INPUTS {
            let v = inputs
                .iter()
                .find(|(k, _)| *k == spec.name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| spec.default.to_string());
            env.insert(format!("INPUT_{}", spec.name.to_ascii_uppercase()), v);
        }
        for (k, _) in inputs {
            assert!(
                d1_backup::cli::inputs::spec(k).is_some(),
                "undeclared input {k}"
            );
        }
        for (var, file) in [
            ("GITHUB_OUTPUT", "set_output"),
            ("GITHUB_STEP_SUMMARY", "step_summary"),
            ("GITHUB_ENV", "set_env"),
            ("GITHUB_STATE", "save_state"),
        ] {
            let p = dir.path().join(file);
            std::fs::write(&p, "").unwrap();
            env.insert(var.to_string(), p.display().to_string());
        }
        env.insert("GITHUB_ACTIONS".into(), "true".into());
        env.insert("CI".into(), "true".into());
        env.insert("RUNNER_TEMP".into(), dir.path().display().to_string());
        env.insert("HOME".into(), dir.path().display().to_string());
        ActionEnv { env, dir }
    }

    pub fn run(&self) -> Run {
        run(&[], &self.env)
    }
}
