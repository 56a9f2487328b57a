//! The last step: find the program on the container's PATH, complete the environment, and
//! execve with nothing but the wanted fds open.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Resolves `arg0` like execvp would, with the container's own PATH. The messages are the
/// ones engines map to exit codes (podman: "executable file not found" → 127).
pub fn resolve(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        let p = Path::new(arg0);
        return match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => bail!("exec {arg0:?}: is a directory"),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                bail!("exec {arg0:?}: permission denied")
            }
            Ok(_) => Ok(p.to_path_buf()),
            Err(e) => bail!("exec {arg0:?}: {}", crate::sys::io_text(&e)),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(arg0);
        if let Ok(m) = std::fs::metadata(&candidate)
            && m.is_file()
            && m.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    bail!("exec {arg0:?}: executable file not found in $PATH")
}

/// The process's environment as runc makes it: a variable set twice keeps its last value
/// (in the last one's place), HOME comes from the container's /etc/passwd when the config
/// leaves it unset or empty, and LISTEN_FDS/LISTEN_PID are set when socket-activation fds
/// are passed through.
pub fn complete_env(env: &[String], uid: u32, listen_fds: u32) -> Vec<String> {
    let mut out = last_wins(env);
    if !out
        .iter()
        .any(|e| e.strip_prefix("HOME=").is_some_and(|v| !v.is_empty()))
    {
        out.retain(|e| !e.starts_with("HOME="));
        out.push(format!(
            "HOME={}",
            home_of(uid).unwrap_or_else(|| "/".into())
        ));
    }
    add_listen_fds(&mut out, listen_fds);
    out
}

/// The environment before the container's /etc/passwd is reachable (no HOME default yet):
/// runc's init sets its own environment to this first and adds HOME with the user, so
/// that is what its createContainer hooks inherit.
pub fn early_env(env: &[String], listen_fds: u32) -> Vec<String> {
    let mut out = last_wins(env);
    add_listen_fds(&mut out, listen_fds);
    out
}

/// `env` where a variable set twice keeps its last value, in the last one's place.
fn last_wins(env: &[String]) -> Vec<String> {
    let name = |e: &str| e.split('=').next().unwrap_or_default().to_string();
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<String> = env
        .iter()
        .rev()
        .filter(|e| seen.insert(name(e)))
        .cloned()
        .collect();
    out.reverse();
    out
}

/// LISTEN_FDS/LISTEN_PID for `listen_fds` socket-activation fds (replacing the config's).
fn add_listen_fds(env: &mut Vec<String>, listen_fds: u32) {
    if listen_fds > 0 {
        env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
        env.push(format!("LISTEN_FDS={listen_fds}"));
        env.push("LISTEN_PID=1".into());
    }
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    crate::passwd::by_uid(&passwd, uid).map(|u| u.home.to_string())
}

/// execve(2); returns only on failure.
pub fn exec(path: &Path, args: &[String], env: &[String]) -> Result<std::convert::Infallible> {
    let to_c = |s: &str| CString::new(s).map_err(|_| anyhow::anyhow!("{s:?} contains a NUL byte"));
    let cpath = CString::new(path.as_os_str().as_bytes())?;
    let cargs = args.iter().map(|a| to_c(a)).collect::<Result<Vec<_>>>()?;
    let cenv = env.iter().map(|e| to_c(e)).collect::<Result<Vec<_>>>()?;
    let err = nix::unistd::execve(&cpath, &cargs, &cenv).unwrap_err();
    bail!(
        "exec {:?}: {}",
        path,
        crate::sys::io_text(&std::io::Error::from(err))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_last_value_wins_and_empty_home_is_filled() {
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let out = complete_env(&env(&["ONE=two", "HOME=", "PATH=/bin", "ONE=three"]), 0, 0);
        assert_eq!(out[..2], env(&["PATH=/bin", "ONE=three"]));
        assert_eq!(out.len(), 3);
        assert!(out[2].starts_with("HOME=") && out[2].len() > 5, "{out:?}");
        let out = complete_env(&env(&["HOME=/override", "HOME="]), 0, 0);
        assert!(out.len() == 1 && out[0] != "HOME=", "{out:?}");
        let out = complete_env(&env(&["HOME=", "HOME=/set"]), 0, 0);
        assert_eq!(out, env(&["HOME=/set"]));
    }

    #[test]
    fn early_env_has_no_home_default() {
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let out = early_env(&env(&["ONE=two", "HOME=", "ONE=three"]), 0);
        assert_eq!(out, env(&["HOME=", "ONE=three"]));
        let out = early_env(&env(&["LISTEN_FDS=9", "A=1"]), 2);
        assert_eq!(out, env(&["A=1", "LISTEN_FDS=2", "LISTEN_PID=1"]));
    }

    #[test]
    fn resolves_on_path() {
        assert_eq!(
            resolve("sh", &["PATH=/nonexistent:/bin".into()]).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let e = resolve("no-such-prog", &["PATH=/bin".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("executable file not found in $PATH"), "{e}");
        let e = resolve("/no/such", &[]).unwrap_err().to_string();
        assert!(e.contains("no such file or directory"), "{e}");
    }

    #[test]
    fn env_gets_home_and_listen_fds() {
        let env = complete_env(&["A=1".into()], 4_000_000, 2);
        assert!(env.contains(&"HOME=/".to_string()));
        assert!(env.contains(&"LISTEN_FDS=2".to_string()));
        let env = complete_env(&["HOME=/x".into()], 0, 0);
        assert_eq!(env, vec!["HOME=/x".to_string()]);
    }
}
