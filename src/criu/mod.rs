//! Driving CRIU (checkpoint/restore in userspace) as runc does: `criu swrk <fd>` started
//! as a child with one end of a SOCK_SEQPACKET socketpair, one request sent (dump,
//! pre-dump or restore, with its options), then CRIU's notifications answered (each a
//! "script" name such as `setup-namespaces` or `post-restore`, handed to the caller's
//! callback) until its final response. A failure is one line: CRIU's own message and the
//! last error lines of its log file.
//!
//! The messages are criu's rpc.proto, in [`rpc`].

pub mod rpc;

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, recvmsg, sendmsg,
    socketpair,
};
use prost::Message;

pub use rpc::{CgMode, ExtMountMap, InheritFd, Opts, ReqType};

/// CRIU's messages fit in this (runc reads 10 pages).
const MAX_MSG: usize = 10 * 4096;

/// A notification from CRIU: the script name, the pid it concerns (0 if none) and the fd
/// sent along (`orphan-pts-master` sends the terminal's master).
pub struct Notice {
    pub script: String,
    pub pid: i32,
    pub fd: Option<OwnedFd>,
}

/// One request to CRIU.
pub struct Request {
    pub kind: ReqType,
    pub opts: Opts,
    /// Where CRIU writes its log (`opts.log_file` in the work directory), quoted on failure.
    pub log: PathBuf,
    /// For a restore, the restored tree inherits corten's stdio through CRIU; otherwise
    /// CRIU's own output goes nowhere (it logs to `log`).
    pub inherit_stdio: bool,
    /// Fds CRIU must inherit (namespaces, the status fd): they stay open at their numbers.
    pub pass_fds: Vec<RawFd>,
}

/// The `criu` binary: $PATH's, as runc finds it.
pub fn binary() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("criu"))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            anyhow!(
                "criu not found in PATH: checkpoint and restore need CRIU (the Debian package criu)"
            )
        })
}

/// Runs `req` through `criu swrk`, calling `notify` for every notification (an error there
/// fails the request: CRIU is told, and the error is returned). `started` is called with
/// CRIU's pid and the options before the request is sent (restore puts CRIU in the
/// container's cgroup and names it in the options).
/// Returns CRIU's final response.
pub fn swrk(
    req: Request,
    started: &mut dyn FnMut(i32, &mut Opts) -> Result<()>,
    notify: &mut dyn FnMut(Notice) -> Result<()>,
) -> Result<rpc::Resp> {
    let what = kind_name(req.kind);
    let criu = binary()?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for criu swrk")?;
    for fd in req.pass_fds.iter().copied().chain([theirs.as_raw_fd()]) {
        set_inheritable(fd)?;
    }
    let mut cmd = Command::new(&criu);
    cmd.arg("swrk").arg(theirs.as_raw_fd().to_string());
    if !req.inherit_stdio {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {} swrk", criu.display()))?;
    drop(theirs);
    let result = converse(&ours, &req, child.id() as i32, started, notify);
    // CRIU exits once the socket is closed (or has already).
    drop(ours);
    let status = child.wait().context("wait for criu")?;
    let resp = result.map_err(|e| anyhow!("criu {what}: {e:#}{}", log_tail(&req.log)))?;
    if !resp.success {
        let mut msg = resp
            .cr_errmsg
            .as_deref()
            .unwrap_or_default()
            .trim()
            .to_string();
        // CRIU's message is usually its log's last error, which the tail shows anyway.
        if error_lines(&std::fs::read_to_string(&req.log).unwrap_or_default(), 3).contains(&msg) {
            bail!("criu {what} failed{}", log_tail(&req.log));
        }
        if msg.is_empty() {
            msg = match resp.cr_errno {
                Some(e) if e != 0 => Errno::from_raw(e).desc().to_string(),
                _ => "failed".to_string(),
            };
        }
        // CRIU's message is often its log's last error line: not said twice.
        let tail = log_tail(&req.log).replace(&format!("{msg}; "), "");
        bail!("criu {what} failed: {msg}{tail}");
    }
    // A restore's CRIU may exit non-zero after its success response; a pre-dump's waits
    // for the final dump and is ended by the closed socket (runc ignores both).
    if !status.success() && !matches!(req.kind, ReqType::Restore | ReqType::PreDump) {
        bail!(
            "criu {what}: criu exited with {status}{}",
            log_tail(&req.log)
        );
    }
    Ok(resp)
}

/// CRIU's version as runc compares it: major * 10000 + minor * 100 + sublevel (3.17.1 is
/// 31701), asked through its RPC (a VERSION request) as runc does.
pub fn version() -> Result<i32> {
    let req = Request {
        kind: ReqType::Version,
        opts: Opts::default(),
        log: PathBuf::new(),
        inherit_stdio: false,
        pass_fds: Vec::new(),
    };
    let resp = swrk(req, &mut |_, _| Ok(()), &mut |_| Ok(()))?;
    let v = resp
        .version
        .context("criu version: no version in criu's response")?;
    Ok(v.major_number * 10000 + v.minor_number * 100 + v.sublevel.unwrap_or(0))
}

/// Fails with runc's message unless CRIU is at least `min` (as [`version`] counts) for
/// `what` (a flag).
pub fn require_version(min: i32, what: &str) -> Result<()> {
    let have = version()?;
    if have < min {
        bail!(
            "{what} requires at least CRIU {}.{} (this is {}.{}.{})",
            min / 10000,
            min / 100 % 100,
            have / 10000,
            have / 100 % 100,
            have % 100
        );
    }
    Ok(())
}

fn converse(
    sock: &OwnedFd,
    req: &Request,
    criu_pid: i32,
    started: &mut dyn FnMut(i32, &mut Opts) -> Result<()>,
    notify: &mut dyn FnMut(Notice) -> Result<()>,
) -> Result<rpc::Resp> {
    let mut opts = req.opts.clone();
    started(criu_pid, &mut opts)?;
    // A version request carries no options (runc sends none).
    let opts = (req.kind != ReqType::Version).then_some(opts);
    send(
        sock,
        &rpc::Req {
            r#type: req.kind as i32,
            opts,
            ..Default::default()
        },
    )?;
    let mut failed = None;
    loop {
        let (resp, fd) = recv(sock)?;
        if resp.r#type != ReqType::Notify as i32 {
            if let Some(e) = failed {
                return Err(e);
            }
            if resp.r#type != req.kind as i32 && resp.success {
                bail!("unexpected response of type {} from criu", resp.r#type);
            }
            return Ok(resp);
        }
        let n = resp.notify.unwrap_or_default();
        let script = n.script.unwrap_or_default();
        let r = notify(Notice {
            script: script.clone(),
            pid: n.pid.unwrap_or(0),
            fd,
        })
        .with_context(|| format!("{script} (notified by criu)"));
        let ok = r.is_ok();
        if let Err(e) = r {
            failed.get_or_insert(e);
        }
        send(
            sock,
            &rpc::Req {
                r#type: ReqType::Notify as i32,
                notify_success: Some(ok),
                ..Default::default()
            },
        )?;
    }
}

fn send(sock: &OwnedFd, req: &rpc::Req) -> Result<()> {
    let bytes = req.encode_to_vec();
    loop {
        match sendmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[],
            MsgFlags::empty(),
            None,
        ) {
            Err(Errno::EINTR) => continue,
            r => {
                r.context("send a request to criu")?;
                return Ok(());
            }
        }
    }
}

fn recv(sock: &OwnedFd) -> Result<(rpc::Resp, Option<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (len, fd) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = loop {
            match recvmsg::<UnixAddr>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(Errno::EINTR) => continue,
                r => break r.context("read criu's response")?,
            }
        };
        let mut fd = None;
        for cmsg in msg.cmsgs().context("read criu's response")? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: SCM_RIGHTS just installed this fd in our table; nothing owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        (msg.bytes, fd)
    };
    if len == 0 {
        bail!("criu closed the connection without a response");
    }
    let resp = rpc::Resp::decode(&buf[..len]).context("decode criu's response")?;
    Ok((resp, fd))
}

fn set_inheritable(fd: RawFd) -> Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    // SAFETY: the caller's fds stay open for the whole of swrk(); the borrow ends here.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(bfd, FcntlArg::F_SETFD(FdFlag::empty()))
        .with_context(|| format!("clear FD_CLOEXEC on fd {fd} for criu"))?;
    Ok(())
}

fn kind_name(kind: ReqType) -> &'static str {
    match kind {
        ReqType::Dump => "dump",
        ReqType::PreDump => "pre-dump",
        ReqType::Restore => "restore",
        ReqType::Check => "check",
        ReqType::FeatureCheck => "feature check",
        ReqType::Version => "version",
        _ => "request",
    }
}

/// The last error lines of CRIU's log, as ": (log PATH) LINE; LINE", or the log's path.
pub fn log_tail(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let errors = error_lines(&text, 3);
    if errors.is_empty() {
        format!(" (log: {})", log.display())
    } else {
        format!(" (log: {}): {}", log.display(), errors.join("; "))
    }
}

/// The last `n` lines of a CRIU log that report an error, without their timestamps.
fn error_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.contains("Error (") || l.trim_start().starts_with("Error"))
        .map(|l| {
            let l = l.trim();
            // "(00.012345) Error (criu/mount.c:1234): ..." -> "Error (criu/...): ..."; a
            // restored task's lines also carry its pid: "(00.012345)      1: Error ...".
            let rest = match l.strip_prefix('(').and_then(|r| r.split_once(") ")) {
                Some((_, rest)) => rest.trim_start(),
                None => l,
            };
            match rest.split_once(": ") {
                Some((pid, tail)) if pid.bytes().all(|b| b.is_ascii_digit()) && !pid.is_empty() => {
                    tail.to_string()
                }
                _ => rest.to_string(),
            }
        })
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_the_last_ones_without_timestamps() {
        let log = "(00.000001) Version: 3.17\n\
                   (00.010000) Error (criu/mount.c:1): mnt: first\n\
                   (00.020000) Warn  (criu/x.c:2): not this\n\
                   (00.020001) \ttype ext4 options errors=remount-ro\n\
                   (00.030000) Error (criu/cr-dump.c:3): Dumping FAILED.\n\
                   (00.040000)      1: Error (criu/pagemap.c:557): Can't read\n";
        assert_eq!(
            error_lines(log, 3),
            [
                "Error (criu/mount.c:1): mnt: first",
                "Error (criu/cr-dump.c:3): Dumping FAILED.",
                "Error (criu/pagemap.c:557): Can't read"
            ]
        );
        assert_eq!(
            error_lines(log, 1),
            ["Error (criu/pagemap.c:557): Can't read"]
        );
    }
}
