//! Terminals (process.terminal): a pty from the container's own devpts for the process, and
//! the console socket that hands its master to whoever drives it.
//!
//! runc's rules decide where the master goes ([`plan`]): to `--console-socket` when corten
//! detaches (create, run -d, exec -d), or to corten itself when it stays attached (run,
//! exec), which then relays it to its own stdio (`crate::relay`). The process side is the
//! same either way: the parent connects the socket (in the host's mount namespace) before it
//! clones, and the child, inside the container, allocates the pty ([`setup`]) and sends the
//! master with SCM_RIGHTS.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
    recvmsg, sendmsg, socketpair,
};
use nix::sys::stat::{Mode, SFlag, makedev};
use nix::sys::statfs::{DEVPTS_SUPER_MAGIC, fstatfs};
use oci_spec::runtime::Process;

use crate::safepath;

/// Sent along with the master: runc sends its name, and engines (containerd's go-runc,
/// conmon) expect a non-empty message carrying the fd.
const MASTER_NAME: &[u8] = b"/dev/ptmx";
/// The pty multiplexer and the slaves' major (<linux/major.h>).
const PTMX_DEV: (u64, u64) = (5, 2);
const PTY_SLAVE_MAJOR: u64 = 136;

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);
nix::ioctl_write_int_bad!(tiocsctty, libc::TIOCSCTTY);
nix::ioctl_write_int_bad!(tiocgptpeer, libc::TIOCGPTPEER);

/// The console socket of a process about to be started.
pub struct Plan {
    /// The child's end: it sends the master there.
    pub child: Target,
    /// corten's own end, when corten relays the terminal itself.
    pub relay: Option<OwnedFd>,
}

/// Where a process sends the master of its terminal.
pub struct Target {
    pub sock: OwnedFd,
    /// corten relays the terminal on its own stdio (attached `run`, `exec -t`).
    pub relayed: bool,
}

/// Where the master of a process's terminal goes, by runc's rules: `detach` is true for
/// `create`, `run -d` and `exec -d`. None when the process has no terminal.
pub fn plan(terminal: bool, socket: Option<&Path>, detach: bool) -> Result<Option<Plan>> {
    check(terminal, socket.is_some(), detach)?;
    if !terminal {
        return Ok(None);
    }
    Ok(Some(match socket {
        Some(path) => {
            let stream = UnixStream::connect(path)
                .with_context(|| format!("connect to --console-socket {}", path.display()))?;
            Plan {
                child: Target {
                    sock: stream.into(),
                    relayed: false,
                },
                relay: None,
            }
        }
        None => {
            let (ours, theirs) = socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .context("socketpair for the terminal")?;
            Plan {
                child: Target {
                    sock: theirs,
                    relayed: true,
                },
                relay: Some(ours),
            }
        }
    }))
}

pub fn check(terminal: bool, socket: bool, detach: bool) -> Result<()> {
    if terminal && detach && !socket {
        bail!(
            "process.terminal needs --console-socket when corten does not stay attached \
             (create, run -d, exec -d): there is nowhere to send the terminal"
        );
    }
    if socket && !terminal {
        bail!(
            "--console-socket given, but the process has no terminal (process.terminal, exec -t)"
        );
    }
    if socket && !detach {
        bail!(
            "--console-socket needs a detached run or exec (-d); attached, corten relays the \
             terminal itself"
        );
    }
    Ok(())
}

/// Receives the master the child sent over `socket`.
pub fn recv_master(socket: &OwnedFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = loop {
        match recvmsg::<UnixAddr>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            r => break r.context("receive the terminal's master")?,
        }
    };
    let mut master = None;
    for cmsg in msg.cmsgs().context("receive the terminal's master")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: SCM_RIGHTS just installed these fds in our table; nothing owns them.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                master.get_or_insert(fd);
            }
        }
    }
    master.context("the container closed the console socket without sending its terminal")
}

/// In the container, before the process takes on its identity: allocates a pty from the
/// container's devpts, sizes it (process.consoleSize), gives the slave to the process's
/// user, sends the master over `socket`, and makes the slave our stdio and controlling
/// terminal (we must be a session leader). With `mount_console` (the container's init),
/// the slave is bind-mounted over /dev/console too.
pub fn setup(target: Target, process: &Process, mount_console: bool) -> Result<()> {
    let Target {
        sock: socket,
        relayed,
    } = target;
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("open /")?;
    let master = open_ptmx(root.as_fd())?;
    let slave = open_slave(&master)?;
    if let Some(size) = process
        .console_size()
        .filter(|b| b.height() > 0 && b.width() > 0)
    {
        let (Ok(rows), Ok(cols)) = (u16::try_from(size.height()), u16::try_from(size.width()))
        else {
            bail!(
                "process.consoleSize {}x{} is too large",
                size.width(),
                size.height()
            );
        };
        set_size(master.as_fd(), rows, cols).context("set the terminal's size")?;
    }
    give_to_user(&slave, process.user().uid())?;
    if relayed {
        clear_onlcr(&slave)?;
    }
    if mount_console {
        bind_console(root.as_fd(), &slave)?;
    }
    send_master(&socket, &master)?;
    drop(master);
    drop(socket);
    // Rust's runtime keeps 0-2 open, so the slave's fd is above them and closes after.
    nix::unistd::dup2_stdin(&slave).context("make the terminal stdin")?;
    nix::unistd::dup2_stdout(&slave).context("make the terminal stdout")?;
    nix::unistd::dup2_stderr(&slave).context("make the terminal stderr")?;
    drop(slave);
    // SAFETY: TIOCSCTTY on fd 0 with an integer argument (0: don't steal it from others).
    unsafe { tiocsctty(0, 0) }.context("make the terminal our controlling terminal")?;
    Ok(())
}

/// Output newlines stay "\n" (runc clears ONLCR on the terminals it relays): a terminal on
/// our side translates them itself, and piped output is what the process wrote.
fn clear_onlcr(slave: &OwnedFd) -> Result<()> {
    use nix::sys::termios::{OutputFlags, SetArg, tcgetattr, tcsetattr};
    let mut t = tcgetattr(slave).context("read the terminal's settings")?;
    t.output_flags.remove(OutputFlags::ONLCR);
    tcsetattr(slave, SetArg::TCSANOW, &t).context("clear ONLCR on the terminal")
}

/// Opens /dev/pts/ptmx of the container's devpts. /dev/ptmx is not used: the container may
/// have the host's (a /dev bind), whose ptys live in the host's devpts. The lookup stays in
/// the root, /dev/pts must be a devpts mount and only its own "ptmx" is opened (never a
/// symlink), and the result must be the multiplexer itself.
fn open_ptmx(root: BorrowedFd) -> Result<OwnedFd> {
    let pts = safepath::open_in_root(
        root,
        Path::new("/dev/pts"),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
    )
    .context("open /dev/pts: a terminal needs a devpts mount there")?;
    if fstatfs(&pts).context("statfs /dev/pts")?.filesystem_type() != DEVPTS_SUPER_MAGIC {
        bail!("/dev/pts is not a devpts mount: a terminal needs one");
    }
    let ptmx = nix::fcntl::openat(
        &pts,
        "ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("open /dev/pts/ptmx")?;
    // A mount over it (only a privileged process in the container could make one).
    let st = nix::sys::stat::fstat(&ptmx).context("fstat /dev/pts/ptmx")?;
    let on_devpts = fstatfs(&ptmx)
        .context("statfs /dev/pts/ptmx")?
        .filesystem_type()
        == DEVPTS_SUPER_MAGIC;
    if !on_devpts
        || st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFCHR.bits()
        || st.st_rdev != makedev(PTMX_DEV.0, PTMX_DEV.1)
    {
        bail!("/dev/pts/ptmx is not the pty multiplexer of a devpts");
    }
    Ok(ptmx)
}

/// Unlocks the new pty and opens its slave through the master (TIOCGPTPEER: no path, so
/// nothing in the container can swap what /dev/pts/N names).
fn open_slave(master: &OwnedFd) -> Result<OwnedFd> {
    let flags = (OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).bits();
    let pty = master.try_clone().context("dup the pty master")?;
    // SAFETY: open_ptmx checked this is /dev/pts/ptmx, so the fd is a pty master.
    let pty = unsafe { nix::pty::PtyMaster::from_owned_fd(pty) };
    nix::pty::unlockpt(&pty).context("unlock the pty")?;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd, which we own from here.
    let fd = unsafe { tiocgptpeer(master.as_raw_fd(), flags) }.context("open the pty's slave")?;
    // SAFETY: as above, the ioctl returned a fresh fd.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = nix::sys::stat::fstat(&slave).context("fstat the pty's slave")?;
    if nix::sys::stat::major(st.st_rdev) != PTY_SLAVE_MAJOR {
        bail!("the pty's slave is not a pty device");
    }
    Ok(slave)
}

/// The process's user owns its terminal (devpts gave it to us, root), so it can use it:
/// runc's rule. The group stays what devpts chose (its gid= option, usually tty). A uid or
/// owner that is not mapped in our user namespace leaves it as it is, as with runc.
fn give_to_user(slave: &OwnedFd, uid: u32) -> Result<()> {
    let st = nix::sys::stat::fstat(slave).context("fstat the pty's slave")?;
    if st.st_uid == uid {
        return Ok(());
    }
    match nix::unistd::fchown(slave, Some(nix::unistd::Uid::from_raw(uid)), None) {
        Ok(()) | Err(Errno::EINVAL | Errno::EPERM) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("chown the terminal to uid {uid}")),
    }
}

/// Bind-mounts the slave over /dev/console, so programs writing to the console reach the
/// terminal. /dev/console comes from the image when /dev is not a tmpfs: whatever is there
/// that is not a plain file or a device (a symlink, maybe to a host path) is replaced by an
/// empty file, never followed; the mount then acts on the exact file opened.
fn bind_console(root: BorrowedFd, slave: &OwnedFd) -> Result<()> {
    let dev = safepath::mkdir_all_in_root(root, Path::new("/dev"), 0o755)
        .context("open /dev for /dev/console")?;
    let open = || {
        nix::fcntl::openat(
            &dev,
            "console",
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let target = match open() {
        Ok(fd) if is_file_or_device(&fd)? => fd,
        found => {
            if found.is_ok() {
                nix::unistd::unlinkat(&dev, "console", nix::unistd::UnlinkatFlags::NoRemoveDir)
                    .context("replace /dev/console (not a file or device)")?;
            }
            let created = nix::fcntl::openat(
                &dev,
                "console",
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_RDONLY
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o666),
            )
            .context("create /dev/console")?;
            drop(created);
            let fd = open().context("open /dev/console")?;
            if !is_file_or_device(&fd)? {
                bail!("/dev/console changed while it was being created");
            }
            fd
        }
    };
    // By fds alone (the container's /proc may not be there to name them).
    let tree =
        crate::sys::open_tree_clone(slave.as_fd(), false).context("clone the terminal's mount")?;
    crate::sys::move_mount_onto(tree.as_fd(), target.as_fd())
        .context("bind the terminal to /dev/console")
}

fn is_file_or_device(fd: &OwnedFd) -> Result<bool> {
    let st = nix::sys::stat::fstat(fd).context("fstat /dev/console")?;
    let kind = st.st_mode & SFlag::S_IFMT.bits();
    Ok(kind == SFlag::S_IFREG.bits() || kind == SFlag::S_IFCHR.bits())
}

pub fn send_master(socket: &OwnedFd, master: &OwnedFd) -> Result<()> {
    let fds = [master.as_raw_fd()];
    loop {
        match sendmsg::<UnixAddr>(
            socket.as_raw_fd(),
            &[IoSlice::new(MASTER_NAME)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            r => {
                return r
                    .map(drop)
                    .context("send the terminal to the console socket");
            }
        }
    }
}

/// The window size of `fd` (a terminal).
pub fn winsize(fd: BorrowedFd) -> nix::Result<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`, which lives across the call.
    unsafe { tiocgwinsz(fd.as_raw_fd(), &mut ws) }?;
    Ok(ws)
}

/// Sets the window size of the terminal `fd` (the kernel signals its foreground group).
pub fn set_winsize(fd: BorrowedFd, ws: &libc::winsize) -> nix::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    unsafe { tiocswinsz(fd.as_raw_fd(), ws) }.map(drop)
}

fn set_size(fd: BorrowedFd, rows: u16, cols: u16) -> nix::Result<()> {
    set_winsize(
        fd,
        &libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_rules() {
        // create / run -d / exec -d
        assert!(check(true, true, true).is_ok());
        assert!(check(false, false, true).is_ok());
        assert!(check(true, false, true).is_err());
        assert!(check(false, true, true).is_err());
        // run / exec, attached
        assert!(check(true, false, false).is_ok());
        assert!(check(false, false, false).is_ok());
        assert!(check(true, true, false).is_err());
        assert!(check(false, true, false).is_err());
    }

    #[test]
    fn master_round_trip() {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let file: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        send_master(&theirs, &file).unwrap();
        let got = recv_master(&ours).unwrap();
        let a = nix::sys::stat::fstat(&file).unwrap();
        let b = nix::sys::stat::fstat(&got).unwrap();
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
        drop(theirs);
        let err = recv_master(&ours).unwrap_err();
        assert!(format!("{err:#}").contains("without sending"), "{err:#}");
    }
}
