//! A minimal, blocking, thread-free D-Bus client: just what the systemd cgroup driver needs
//! to call systemd's manager (method calls with a few argument types, their replies and
//! errors, and the JobRemoved signal).
//!
//! Why hand-written rather than a crate (the choice issue 14 asks for):
//! - corten's CLI is single-threaded and clones the container init fork-style; whatever
//!   talks to systemd must never leave a thread behind. `zbus`'s blocking API is a wrapper
//!   over its async core and runs an internal executor thread by default (turning it off
//!   means ticking the executor by hand), and it brings an async stack (async-io,
//!   event-listener, zvariant, ...) into a binary whose start-up cost is a goal.
//! - `dbus` binds libdbus: Debian ships no static libdbus-1.a, and the release binary is
//!   static (crt-static), so it would mean building libdbus from C sources (`vendored`).
//! - `rustbus` is pure Rust, blocking and thread-free, but is a general-purpose library
//!   (its own derive macros, generic marshalling) for a handful of calls.
//!
//! The protocol subset needed is small and stable: SASL EXTERNAL auth, little-endian
//! message marshalling of `s`, `o`, `b`, the integers (`y`, `n`, `q`, `i`, `u`, `x`, `t`),
//! `d`, `ay`, `au`, `as`, `a(ss)`, `a(st)`, `v` and `a(sv)`, and
//! reading the top-level `s`/`o`/`u` of replies and signals. That is this file (no new
//! dependency, a few KB of code, no thread, one socket that is closed when the client is
//! dropped and is close-on-exec meanwhile).
//!
//! It connects to systemd's private socket (/run/systemd/private, root only, no bus
//! daemon: systemd sends every signal to its direct clients) and falls back to the system
//! bus (Hello, then a match rule for the manager's signals, and Subscribe).
//!
//! A rootless container's unit is the user's systemd's (`Conn::user`): its private socket
//! $XDG_RUNTIME_DIR/systemd/private (as `systemctl --user` does), else the user's session
//! bus ($DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus: runc's order). Inside a user
//! namespace (rootless podman runs the runtime as its root) the bus sees the caller's
//! uid as mapped outside, which is what EXTERNAL authentication must name (runc's
//! DetectUID).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

const PRIVATE: &str = "/run/systemd/private";
const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

/// A value in a method call's body.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F64(f64),
    Bytes(Vec<u8>),
    U32s(Vec<u32>),
    Strs(Vec<String>),
    /// `a(ss)`: pairs of strings (DeviceAllow: path, permissions).
    StrPairs(Vec<(String, String)>),
    /// `a(st)`: strings with a number (IOReadBandwidthMax: device path, limit).
    StrU64s(Vec<(String, u64)>),
    /// `a(sv)`: named, typed properties.
    Props(Vec<(String, Value)>),
    /// `a(sa(sv))`: StartTransientUnit's auxiliary units (always empty here).
    AuxUnits,
}

impl Value {
    fn signature(&self) -> &'static str {
        match self {
            Value::Str(_) => "s",
            Value::Bool(_) => "b",
            Value::U8(_) => "y",
            Value::I16(_) => "n",
            Value::U16(_) => "q",
            Value::I32(_) => "i",
            Value::U32(_) => "u",
            Value::I64(_) => "x",
            Value::U64(_) => "t",
            Value::F64(_) => "d",
            Value::Bytes(_) => "ay",
            Value::U32s(_) => "au",
            Value::Strs(_) => "as",
            Value::StrPairs(_) => "a(ss)",
            Value::StrU64s(_) => "a(st)",
            Value::Props(_) => "a(sv)",
            Value::AuxUnits => "a(sa(sv))",
        }
    }
}

/// Marshals little-endian data; offsets (for alignment) are from the buffer's start,
/// which is 8-aligned in the message for both the header and the body.
#[derive(Default)]
struct Enc {
    b: Vec<u8>,
}

impl Enc {
    fn pad(&mut self, to: usize) {
        while !self.b.len().is_multiple_of(to) {
            self.b.push(0);
        }
    }
    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.b.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.b.extend_from_slice(s.as_bytes());
        self.b.push(0);
    }
    fn sig(&mut self, s: &str) {
        self.b.push(s.len() as u8);
        self.b.extend_from_slice(s.as_bytes());
        self.b.push(0);
    }
    /// An array of elements aligned to `align`, written by `f`.
    fn array(&mut self, align: usize, f: impl FnOnce(&mut Enc)) {
        self.u32(0);
        let len_at = self.b.len() - 4;
        self.pad(align);
        let start = self.b.len();
        f(self);
        let len = (self.b.len() - start) as u32;
        self.b[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }
    /// A fixed-size number: aligned to its size, little-endian.
    fn fixed<const N: usize>(&mut self, le: [u8; N]) {
        self.pad(N);
        self.b.extend_from_slice(&le);
    }
    fn value(&mut self, v: &Value) {
        match v {
            Value::Str(s) => self.str(s),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::U8(y) => self.b.push(*y),
            Value::I16(n) => self.fixed(n.to_le_bytes()),
            Value::U16(q) => self.fixed(q.to_le_bytes()),
            Value::I32(i) => self.fixed(i.to_le_bytes()),
            Value::U32(u) => self.u32(*u),
            Value::I64(x) => self.fixed(x.to_le_bytes()),
            Value::U64(t) => self.fixed(t.to_le_bytes()),
            Value::F64(d) => self.fixed(d.to_le_bytes()),
            Value::Bytes(bytes) => self.array(1, |e| e.b.extend_from_slice(bytes)),
            Value::U32s(us) => self.array(4, |e| us.iter().for_each(|u| e.u32(*u))),
            Value::Strs(ss) => self.array(4, |e| ss.iter().for_each(|s| e.str(s))),
            Value::StrPairs(pairs) => self.array(8, |e| {
                for (a, b) in pairs {
                    e.pad(8);
                    e.str(a);
                    e.str(b);
                }
            }),
            Value::StrU64s(pairs) => self.array(8, |e| {
                for (a, t) in pairs {
                    e.pad(8);
                    e.str(a);
                    e.fixed(t.to_le_bytes());
                }
            }),
            Value::Props(props) => self.array(8, |e| {
                for (name, v) in props {
                    e.pad(8);
                    e.str(name);
                    e.sig(v.signature());
                    e.value(v);
                }
            }),
            Value::AuxUnits => self.array(8, |_| {}),
        }
    }
}

/// A message received: its type, the header fields used here and the top-level strings
/// and integers of its body (enough for `o`, `s` and `uoss` bodies).
#[derive(Debug, Default)]
pub struct Msg {
    pub kind: u8,
    pub reply_serial: Option<u32>,
    pub member: String,
    pub error_name: String,
    pub body: Vec<String>,
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

/// Reads the fields of a received message (either byte order).
struct Dec<'a> {
    b: &'a [u8],
    at: usize,
    big: bool,
}

impl Dec<'_> {
    fn align(&mut self, to: usize) {
        self.at = self.at.next_multiple_of(to);
    }
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .context("D-Bus message truncated")?;
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        self.align(4);
        let big = self.big;
        let a: [u8; 4] = self.take(4)?.try_into()?;
        Ok(if big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }
    fn str(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.take(1)?;
        Ok(s)
    }
    fn sig(&mut self) -> Result<String> {
        let n = self.take(1)?[0] as usize;
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.take(1)?;
        Ok(s)
    }
}

/// Parses one complete message.
fn parse(b: &[u8]) -> Result<Msg> {
    let mut d = Dec {
        b,
        at: 12,
        big: b[0] == b'B',
    };
    let mut m = Msg {
        kind: b[1],
        ..Msg::default()
    };
    let fields_len = d.u32()? as usize;
    let end = d.at + fields_len;
    let mut signature = String::new();
    while d.at < end {
        d.align(8);
        let code = d.take(1)?[0];
        let sig = d.sig()?;
        match (code, sig.as_str()) {
            (5, "u") => m.reply_serial = Some(d.u32()?),
            (3, "s") => m.member = d.str()?,
            (4, "s") => m.error_name = d.str()?,
            (8, "g") => signature = d.sig()?,
            (_, "s" | "o") => {
                d.str()?;
            }
            (_, "g") => {
                d.sig()?;
            }
            (_, "u") => {
                d.u32()?;
            }
            (_, other) => bail!("D-Bus header field {code} of unexpected type {other}"),
        }
    }
    d.align(8);
    for t in signature.chars() {
        // A variant (a property's value) counts as what it holds.
        let t = if t == 'v' {
            match d.sig()?.as_str() {
                "s" => 's',
                "o" => 'o',
                "u" => 'u',
                _ => break,
            }
        } else {
            t
        };
        match t {
            's' | 'o' => m.body.push(d.str()?),
            'u' => m.body.push(d.u32()?.to_string()),
            // What follows is not needed here.
            _ => break,
        }
    }
    Ok(m)
}

/// No message came before the deadline.
#[derive(Debug)]
pub struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out waiting for systemd")
    }
}

impl std::error::Error for TimedOut {}

/// An error reply to a call: its D-Bus error name (e.g.
/// `org.freedesktop.systemd1.NoSuchUnit`), which callers match, and its message.
#[derive(Debug)]
pub struct ErrorReply {
    pub name: String,
    pub message: String,
}

impl ErrorReply {
    /// Is `e` (or what it wraps with context) the error reply `name`?
    pub fn is(e: &anyhow::Error, name: &str) -> bool {
        e.downcast_ref::<ErrorReply>()
            .is_some_and(|r| r.name == name)
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for ErrorReply {}

/// A connection to systemd's manager.
pub struct Conn {
    sock: UnixStream,
    serial: u32,
    /// Signals received while waiting for a reply.
    pub pending: Vec<Msg>,
}

impl Conn {
    /// Connects and authenticates: systemd's private socket, else the system bus (then
    /// subscribed to the manager's signals).
    pub fn system() -> Result<Conn> {
        let uid = host_uid();
        if let Ok(sock) = UnixStream::connect(PRIVATE) {
            return Conn::auth(sock, uid);
        }
        let sock = UnixStream::connect(SYSTEM_BUS)
            .with_context(|| format!("connect to {PRIVATE} or the system bus {SYSTEM_BUS}"))?;
        Conn::bus(sock, uid)
    }

    /// Connects to the calling user's systemd: its private socket, else the user's
    /// session bus (see the module's documentation).
    pub fn user() -> Result<Conn> {
        let uid = host_uid();
        let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| format!("/run/user/{uid}").into());
        let private = runtime_dir.join("systemd/private");
        if let Ok(sock) = UnixStream::connect(&private) {
            return Conn::auth(sock, uid);
        }
        let bus = match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
            Ok(a) if !a.is_empty() => unix_path(&a)?,
            _ => runtime_dir.join("bus"),
        };
        let sock = UnixStream::connect(&bus).with_context(|| {
            format!(
                "connect to the user's systemd at {} or its session bus {} (is there a systemd user session? see loginctl enable-linger)",
                private.display(),
                bus.display()
            )
        })?;
        Conn::bus(sock, uid)
    }

    /// On a bus (not systemd's own socket): Hello, and the manager's signals subscribed.
    fn bus(sock: UnixStream, uid: u32) -> Result<Conn> {
        let mut c = Conn::auth(sock, uid)?;
        c.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            &[],
        )?;
        c.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            &[Value::Str(
                "type='signal',sender='org.freedesktop.systemd1',interface='org.freedesktop.systemd1.Manager'".into(),
            )],
        )?;
        c.manager("Subscribe", &[])?;
        Ok(c)
    }

    /// SASL EXTERNAL as `uid` (the one the server sees on the socket).
    fn auth(mut sock: UnixStream, uid: u32) -> Result<Conn> {
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        let uid: String = uid
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        // BEGIN goes with AUTH (as sd-bus's own client does), so the first message is
        // never in the server's read that ends the handshake: systemd's sd-bus (252) would
        // leave it buffered, unanswered, until more data arrives.
        sock.write_all(format!("\0AUTH EXTERNAL {uid}\r\nBEGIN\r\n").as_bytes())
            .context("D-Bus auth")?;
        let mut line = Vec::new();
        let mut byte = [0u8];
        while !line.ends_with(b"\r\n") {
            sock.read_exact(&mut byte).context("D-Bus auth reply")?;
            line.push(byte[0]);
        }
        if !line.starts_with(b"OK ") {
            bail!(
                "D-Bus authentication refused: {}",
                String::from_utf8_lossy(&line).trim()
            );
        }
        Ok(Conn {
            sock,
            serial: 0,
            pending: Vec::new(),
        })
    }

    /// Calls a method of org.freedesktop.systemd1.Manager.
    pub fn manager(&mut self, member: &str, args: &[Value]) -> Result<Msg> {
        let serial = self.send_manager(member, args)?;
        self.reply(serial)
    }

    /// A string property of the manager (e.g. ControlGroup), through
    /// org.freedesktop.DBus.Properties.Get.
    pub fn manager_property(&mut self, name: &str) -> Result<String> {
        let reply = self.call(
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.DBus.Properties",
            "Get",
            &[
                Value::Str("org.freedesktop.systemd1.Manager".into()),
                Value::Str(name.into()),
            ],
        )?;
        reply
            .body
            .into_iter()
            .next()
            .with_context(|| format!("systemd's manager property {name}: not a string"))
    }

    /// Calls a method and returns its reply; a D-Bus error is an error "Name: message".
    pub fn call(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[Value],
    ) -> Result<Msg> {
        let serial = self.send(dest, path, iface, member, args)?;
        self.reply(serial)
    }

    /// Sends a method call of org.freedesktop.systemd1.Manager without waiting: calls
    /// pipelined on one connection cost one round trip. Returns its serial for [`reply`].
    ///
    /// [`reply`]: Conn::reply
    pub fn send_manager(&mut self, member: &str, args: &[Value]) -> Result<u32> {
        self.send(
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            member,
            args,
        )
    }

    /// Sends a method call; returns its serial.
    fn send(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[Value],
    ) -> Result<u32> {
        self.serial += 1;
        let serial = self.serial;
        let mut body = Enc::default();
        let sig: String = args.iter().map(Value::signature).collect();
        args.iter().for_each(|a| body.value(a));
        let mut h = Enc::default();
        h.b.extend_from_slice(&[b'l', METHOD_CALL, 0, 1]);
        h.u32(body.b.len() as u32);
        h.u32(serial);
        h.array(8, |e| {
            let mut field = |code: u8, sig: &str, f: &dyn Fn(&mut Enc)| {
                e.pad(8);
                e.b.push(code);
                e.sig(sig);
                f(e);
            };
            field(1, "o", &|e| e.str(path));
            field(2, "s", &|e| e.str(iface));
            field(3, "s", &|e| e.str(member));
            field(6, "s", &|e| e.str(dest));
            if !sig.is_empty() {
                field(8, "g", &|e| e.sig(&sig));
            }
        });
        h.pad(8);
        h.b.extend_from_slice(&body.b);
        self.sock
            .write_all(&h.b)
            .with_context(|| format!("D-Bus call {member}"))?;
        Ok(serial)
    }

    /// The reply to the call `serial`; a D-Bus error is an error "Name: message". Replies
    /// to other calls are dropped, signals kept for [`Conn::wait_signal`].
    pub fn reply(&mut self, serial: u32) -> Result<Msg> {
        loop {
            let m = self.recv(Instant::now() + Duration::from_secs(30))?;
            match m.kind {
                METHOD_RETURN if m.reply_serial == Some(serial) => return Ok(m),
                ERROR if m.reply_serial == Some(serial) => {
                    return Err(ErrorReply {
                        name: m.error_name,
                        message: m.body.first().cloned().unwrap_or_default(),
                    }
                    .into());
                }
                SIGNAL => self.pending.push(m),
                _ => {}
            }
        }
    }

    /// Waits for a signal `member` whose body satisfies `want` (also among those received
    /// earlier), until `deadline`.
    pub fn wait_signal(
        &mut self,
        member: &str,
        deadline: Instant,
        want: impl Fn(&[String]) -> bool,
    ) -> Result<Msg> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|m| m.member == member && want(&m.body))
        {
            return Ok(self.pending.remove(i));
        }
        loop {
            let m = self.recv(deadline)?;
            if m.kind == SIGNAL && m.member == member && want(&m.body) {
                return Ok(m);
            }
        }
    }

    /// Reads one message, failing with `TimedOut` at `deadline` if none has begun to
    /// arrive: a timeout never cuts a message in two, so short deadlines are safe.
    fn recv(&mut self, deadline: Instant) -> Result<Msg> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TimedOut.into());
            }
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            match poll(
                &mut fds,
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => {}
                Ok(_) => break,
                Err(e) => return Err(e).context("poll systemd's D-Bus connection"),
            }
        }
        // A message that has begun arrives whole at once.
        self.sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut fixed = [0u8; 16];
        self.sock
            .read_exact(&mut fixed)
            .context("read from systemd's D-Bus connection")?;
        let num = |a: &[u8]| {
            let a: [u8; 4] = a.try_into().unwrap_or_default();
            if fixed[0] == b'B' {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let body_len = num(&fixed[4..8]) as usize;
        let fields_len = num(&fixed[12..16]) as usize;
        let total = (16 + fields_len).next_multiple_of(8) + body_len;
        if total > 1 << 26 {
            bail!("D-Bus message of {total} bytes refused");
        }
        let mut b = fixed.to_vec();
        b.resize(total, 0);
        self.sock
            .read_exact(&mut b[16..])
            .context("read from systemd's D-Bus connection")?;
        parse(&b)
    }
}

/// The caller's effective uid as seen outside its user namespace (through
/// /proc/self/uid_map; the same uid outside any): the uid a bus sees on our socket.
pub fn host_uid() -> u32 {
    let euid = nix::unistd::geteuid().as_raw();
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    map_uid(&crate::idrange::parse_id_map(&map), euid)
}

fn map_uid(map: &[crate::idrange::IdRange], uid: u32) -> u32 {
    map.iter()
        .find(|r| uid >= r.inside && uid - r.inside < r.size)
        .map(|r| r.outside + (uid - r.inside))
        .unwrap_or(uid)
}

/// The socket path of a D-Bus address: the first `unix:path=` entry (`%xx` escapes
/// decoded).
fn unix_path(addr: &str) -> Result<std::path::PathBuf> {
    for entry in addr.split(';') {
        let Some(params) = entry.strip_prefix("unix:") else {
            continue;
        };
        for kv in params.split(',') {
            if let Some(v) = kv.strip_prefix("path=") {
                let mut out = Vec::new();
                let b = v.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    let hex = b
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match (b[i], hex) {
                        (b'%', Some(c)) => {
                            out.push(c);
                            i += 3;
                        }
                        (c, _) => {
                            out.push(c);
                            i += 1;
                        }
                    }
                }
                use std::os::unix::ffi::OsStringExt;
                return Ok(std::ffi::OsString::from_vec(out).into());
            }
        }
    }
    bail!("DBUS_SESSION_BUS_ADDRESS {addr:?}: no unix:path= address (the only kind supported)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marshals_properties() {
        let mut e = Enc::default();
        e.value(&Value::Props(vec![
            ("A".into(), Value::Bool(true)),
            ("PIDs".into(), Value::U32s(vec![7])),
            ("M".into(), Value::U64(1)),
        ]));
        let b = e.b;
        // array length, pad to 8, then ("A", "b", true)
        assert_eq!(&b[8..12], &1u32.to_le_bytes());
        assert_eq!(&b[12..14], b"A\0");
        assert_eq!(&b[14..17], b"\x01b\0");
        assert_eq!(&b[20..24], &1u32.to_le_bytes());
        assert_eq!(&b[0..4], &((b.len() - 8) as u32).to_le_bytes());
    }

    #[test]
    fn marshals_numbers_and_pairs() {
        let mut e = Enc::default();
        e.b.push(1); // misaligned on purpose
        e.value(&Value::I16(-2));
        e.value(&Value::I64(-3));
        e.value(&Value::F64(1.5));
        e.value(&Value::U8(9));
        e.value(&Value::I32(7));
        let mut want = vec![1, 0];
        want.extend_from_slice(&(-2i16).to_le_bytes());
        want.extend_from_slice(&[0; 4]);
        want.extend_from_slice(&(-3i64).to_le_bytes());
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[9, 0, 0, 0]);
        want.extend_from_slice(&7i32.to_le_bytes());
        assert_eq!(e.b, want);

        // a(st): length, pad to 8, then ("/d", 5) with the t aligned to 8.
        let mut e = Enc::default();
        e.value(&Value::StrU64s(vec![("/d".into(), 5)]));
        let mut want = Vec::new();
        want.extend_from_slice(&16u32.to_le_bytes());
        want.extend_from_slice(&[0; 4]);
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(b"/d\0\0");
        want.extend_from_slice(&5u64.to_le_bytes());
        assert_eq!(e.b, want);

        // a(ss) of two: the second struct starts 8-aligned.
        let mut e = Enc::default();
        e.value(&Value::StrPairs(vec![
            ("a".into(), "rw".into()),
            ("b".into(), "m".into()),
        ]));
        let mut want = Vec::new();
        want.extend_from_slice(&30u32.to_le_bytes());
        want.extend_from_slice(&[0; 4]);
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(b"a\0\0\0");
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(b"rw\0\0");
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(b"b\0\0\0");
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(b"m\0");
        assert_eq!(e.b, want);
        assert_eq!(Value::StrPairs(vec![]).signature(), "a(ss)");
        assert_eq!(Value::StrU64s(vec![]).signature(), "a(st)");
    }

    #[test]
    fn parses_a_signal() {
        let mut h = Enc::default();
        h.b.extend_from_slice(&[b'l', SIGNAL, 0, 1]);
        let mut body = Enc::default();
        body.u32(5);
        body.str("/j/5");
        body.str("x.scope");
        body.str("done");
        h.u32(body.b.len() as u32);
        h.u32(9);
        h.array(8, |e| {
            e.pad(8);
            e.b.push(3);
            e.sig("s");
            e.str("JobRemoved");
            e.pad(8);
            e.b.push(8);
            e.sig("g");
            e.sig("uoss");
        });
        h.pad(8);
        h.b.extend_from_slice(&body.b);
        let m = parse(&h.b).unwrap();
        assert_eq!(m.kind, SIGNAL);
        assert_eq!(m.member, "JobRemoved");
        assert_eq!(m.body, ["5", "/j/5", "x.scope", "done"]);
    }

    #[test]
    fn uids_map_outside() {
        let m = crate::idrange::parse_id_map(
            "         0       1000          1\n         1     100000      65536\n",
        );
        assert_eq!(map_uid(&m, 0), 1000);
        assert_eq!(map_uid(&m, 2), 100001);
        let identity = crate::idrange::parse_id_map("0 0 4294967295\n");
        assert_eq!(map_uid(&identity, 1234), 1234);
        assert_eq!(map_uid(&[], 7), 7);
    }

    #[test]
    fn session_bus_addresses() {
        assert_eq!(
            unix_path("unix:path=/run/user/1000/bus").unwrap(),
            std::path::PathBuf::from("/run/user/1000/bus")
        );
        assert_eq!(
            unix_path("tcp:host=x;unix:guid=1,path=/a%20b").unwrap(),
            std::path::PathBuf::from("/a b")
        );
        assert!(unix_path("unix:abstract=/tmp/x").is_err());
    }

    #[test]
    fn parses_a_variant_reply() {
        let mut h = Enc::default();
        h.b.extend_from_slice(&[b'l', METHOD_RETURN, 0, 1]);
        let mut body = Enc::default();
        body.sig("s");
        body.str("/user.slice/user-1000.slice/user@1000.service");
        h.u32(body.b.len() as u32);
        h.u32(3);
        h.array(8, |e| {
            e.pad(8);
            e.b.push(5);
            e.sig("u");
            e.u32(2);
            e.pad(8);
            e.b.push(8);
            e.sig("g");
            e.sig("v");
        });
        h.pad(8);
        h.b.extend_from_slice(&body.b);
        let m = parse(&h.b).unwrap();
        assert_eq!(m.reply_serial, Some(2));
        assert_eq!(m.body, ["/user.slice/user-1000.slice/user@1000.service"]);
    }
}
