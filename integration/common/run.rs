//! Running the runtime under test: where it is (`runtime`, `CORTEN_TEST_RUNTIME`), one
//! invocation with a timeout and its captured outcome (`rt`, `Out`), the assertions on
//! that outcome (`assert_err`, `assert_no_panic`), and the special ways of running it (with
//! an fd 3, or a test of this binary in a process of its own).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::temp::{nanos, next_n, temp_base};
use super::*;

/// The runtime binary under test.
pub fn runtime() -> PathBuf {
    match std::env::var_os("CORTEN_TEST_RUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_corten")),
    }
}

/// True when the suite is being validated against runc (the reference
/// implementation) rather than corten; used only to accept runc's wording of
/// error messages.
pub fn is_runc() -> bool {
    runtime()
        .file_name()
        .map(|n| n.to_string_lossy().contains("runc"))
        .unwrap_or(false)
}

/// The outcome of one runtime invocation.
#[derive(Debug, Clone)]
pub struct Out {
    pub cmd: String,
    /// Exit code; `None` if the runtime itself was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Assert exit status 0 and no panic output; returns self for chaining.
    pub fn ok(&self) -> &Out {
        assert!(self.success(), "command failed unexpectedly:\n{self}");
        assert_no_panic(self);
        self
    }

    /// Assert a non-zero exit status.
    pub fn fails(&self) -> &Out {
        assert!(
            !self.success() && self.code.is_some(),
            "command should have failed with a non-zero exit status:\n{self}"
        );
        assert_no_panic(self);
        self
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  $ {}\n  exit code: {:?}\n  --- stdout ---\n{}\n  --- stderr ---\n{}",
            self.cmd, self.code, self.stdout, self.stderr
        )
    }
}

/// The runtime must never print a Rust panic or a backtrace.
pub fn assert_no_panic(out: &Out) {
    for text in [&out.stdout, &out.stderr] {
        let lower = text.to_lowercase();
        assert!(
            !lower.contains("panicked") && !lower.contains("backtrace"),
            "runtime output contains panic/backtrace text:\n{out}"
        );
    }
}

/// Assert that `out` is a clean failure.
///
/// With corten: non-zero exit, stderr is exactly one line starting with
/// `corten: ` and containing every string of `corten` (case-insensitively:
/// e.g. strerror texts). With runc (validation
/// of the suite): stderr contains at least one of `runc` (case-insensitive).
/// In both cases: no panic/backtrace text.
pub fn assert_err(out: &Out, corten: &[&str], runc: &[&str]) {
    out.fails();
    if is_runc() {
        let lower = out.stderr.to_lowercase();
        assert!(
            runc.iter().any(|s| lower.contains(&s.to_lowercase())),
            "stderr should contain one of {runc:?}:\n{out}"
        );
    } else {
        let trimmed = out.stderr.trim();
        assert_eq!(
            trimmed.lines().count(),
            1,
            "error output should be exactly one line:\n{out}"
        );
        assert!(
            trimmed.starts_with("corten: "),
            "error output should start with 'corten: ':\n{out}"
        );
        let lower = trimmed.to_lowercase();
        for s in corten {
            assert!(
                lower.contains(&s.to_lowercase()),
                "stderr should contain {s:?}:\n{out}"
            );
        }
    }
}

/// Run the runtime with `args`, stdin from /dev/null and stdout/stderr
/// captured through files (not pipes: a detached container inherits them and
/// would keep a pipe open forever). Panics if it runs longer than
/// RUNTIME_TIMEOUT (after killing it).
pub fn rt(args: &[&str]) -> Out {
    match try_rt(args, RUNTIME_TIMEOUT) {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

/// `rt` run from the working directory `cwd` (for relative paths in the arguments).
pub fn rt_in(cwd: &Path, args: &[&str]) -> Out {
    match try_rt_in(Some(cwd), args, RUNTIME_TIMEOUT) {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

/// Like `rt` but never panics (for use in Drop).
pub fn try_rt(args: &[&str], timeout: Duration) -> Result<Out, String> {
    try_rt_in(None, args, timeout)
}

fn try_rt_in(cwd: Option<&Path>, args: &[&str], timeout: Duration) -> Result<Out, String> {
    let bin = runtime();
    let cmd = format!("{} {}", bin.display(), shell_join(args));
    let base = temp_base().join(format!(
        "corten-it-out-{}-{}-{}",
        std::process::id(),
        next_n(),
        nanos()
    ));
    let out_path = base.with_extension("stdout");
    let err_path = base.with_extension("stderr");
    let result = (|| {
        let out_file = fs::File::create(&out_path).map_err(|e| format!("{cmd}: {e}"))?;
        let err_file = fs::File::create(&err_path).map_err(|e| format!("{cmd}: {e}"))?;
        let mut command = Command::new(&bin);
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_file))
            .stderr(Stdio::from(err_file))
            .spawn()
            .map_err(|e| format!("cannot execute runtime {}: {e}", bin.display()))?;
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(format!("{cmd}: wait: {e}")),
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = fs::read_to_string(&out_path).unwrap_or_default();
                let stderr = fs::read_to_string(&err_path).unwrap_or_default();
                return Err(format!(
                    "runtime timed out after {timeout:?} and was killed:\n  $ {cmd}\n  --- stdout ---\n{stdout}\n  --- stderr ---\n{stderr}"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(Out {
            cmd: cmd.clone(),
            code: status.code(),
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        })
    })();
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    result
}

fn shell_join(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run the runtime (`--root ROOT ARGS...`) with `file` (or a directory) open on fd 3, through
/// `/bin/sh` so that, with `listen`, LISTEN_FDS=1 and LISTEN_PID=<the
/// runtime's own pid> can be set as a socket-activation manager would.
pub fn rt_with_fd3(c: &Container, args: &[&str], file: &Path, listen: bool) -> Out {
    let io = TempDir::new("fd3-io");
    let root = c.root().to_string_lossy().into_owned();
    let script = if listen {
        "f=$1; shift; export LISTEN_FDS=1 LISTEN_PID=$$; exec \"$@\" 3<\"$f\""
    } else {
        "f=$1; shift; exec \"$@\" 3<\"$f\""
    };
    let mut child = Command::new("/bin/sh")
        .args(["-c", script, "sh"])
        .arg(file)
        .arg(runtime())
        .args(["--root", &root])
        .args(args)
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(fs::File::create(io.join("out")).unwrap())
        .stderr(fs::File::create(io.join("err")).unwrap())
        .spawn()
        .expect("spawn /bin/sh");
    let exited = poll_until(RUNTIME_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let out = Out {
        cmd: format!("(fd 3 < {}) runtime --root {root} {args:?}", file.display()),
        code: status.code(),
        stdout: fs::read_to_string(io.join("out")).unwrap_or_default(),
        stderr: fs::read_to_string(io.join("err")).unwrap_or_default(),
    };
    assert!(exited, "runtime timed out and was killed:\n{out}");
    out
}

/// Runs this test binary's ignored test `name` in a process of its own and asserts it
/// passed. With `setup`, the child runs in a private mount namespace (`unshare -m`) after
/// the shell commands in `setup`. For tests that change process-wide state (subreaper,
/// mounts) that the parallel tests of the harness must not see.
pub fn assert_child_test_passes(name: &str, setup: Option<&str>) {
    let exe = std::env::current_exe().unwrap();
    let args = [
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ];
    let out = match setup {
        None => std::process::Command::new(&exe).args(args).output(),
        Some(setup) => std::process::Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                &format!("set -e; {setup}; exec \"$@\""),
                "sh",
            ])
            .arg(&exe)
            .args(args)
            .output(),
    }
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child test {name} failed:\n{text}"
    );
}
