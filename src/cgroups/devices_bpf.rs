//! Device rules on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program built from the rules
//! and attached to the container's cgroup (v2 has no devices.allow/deny files).
//!
//! v1 semantics are kept: the last matching rule decides. The program tests the rules from
//! last to first and returns at the first match; no match denies.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high one
    off: i16,
    imm: i32,
}

const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// bpf_cgroup_dev_ctx: access_type (type | access << 16), major, minor.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// The program for `rules` (in config order).
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    // r2 = device type, r3 = requested access, r4 = major, r5 = minor.
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let block = rule_block(rule);
        let catch_all = !block.iter().any(|i| i.code == JNE_K);
        p.extend(block);
        if catch_all {
            // It always returns: anything after it would be unreachable, which the
            // verifier rejects.
            return p;
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Tests of one rule, each jumping past the block on mismatch, then return allow/deny.
fn rule_block(rule: &LinuxDeviceCgroup) -> Vec<Insn> {
    let mut checks: Vec<Insn> = Vec::new();
    match rule.typ() {
        Some(LinuxDeviceType::B) => checks.push(insn(JNE_K, 2, 0, 0, DEV_BLOCK)),
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => {
            checks.push(insn(JNE_K, 2, 0, 0, DEV_CHAR))
        }
        // "p" (fifo) never reaches the device hook; "a" or none matches every type.
        _ => {}
    }
    let access = access_bits(rule.access().as_deref());
    if access != ACC_MKNOD | ACC_READ | ACC_WRITE {
        // Match only if every requested bit is allowed by the rule: (req & ~access) == 0.
        checks.push(insn(0xbf, 6, 3, 0, 0)); // r6 = r3 (BPF_ALU64 | BPF_MOV | BPF_X)
        checks.push(insn(AND_K, 6, 0, 0, !access & 7));
        checks.push(insn(JNE_K, 6, 0, 0, 0));
    }
    if let Some(major) = rule.major().filter(|&m| m >= 0) {
        checks.push(insn(JNE_K, 4, 0, 0, major as i32));
    }
    if let Some(minor) = rule.minor().filter(|&m| m >= 0) {
        checks.push(insn(JNE_K, 5, 0, 0, minor as i32));
    }
    let mut block = checks;
    block.push(insn(MOV_K, 0, 0, 0, i32::from(rule.allow())));
    block.push(insn(EXIT, 0, 0, 0, 0));
    // Every conditional jump goes to the instruction after the block.
    let len = block.len();
    for (i, ins) in block.iter_mut().enumerate() {
        if ins.code == JNE_K {
            ins.off = (len - i - 1) as i16;
        }
    }
    block
}

fn access_bits(access: Option<&str>) -> i32 {
    let a = access.filter(|a| !a.is_empty()).unwrap_or("rwm");
    let mut bits = 0;
    for c in a.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        };
    }
    bits
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The leading fields of union bpf_attr for BPF_PROG_LOAD; the rest stays zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    pad: [u64; 12],
}

#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    pad: [u64; 4],
}

/// BPF_PROG_LOAD; `log` (if any) receives the verifier's report.
fn load(prog: &[Insn], log: Option<&mut [u8]>) -> std::io::Result<i32> {
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: c"Apache".as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        ..Default::default()
    };
    // insns, license and the log buffer outlive the call, with the sizes given.
    bpf(BPF_PROG_LOAD, &attr).map(|fd| fd as i32)
}

/// bpf(2) with `attr`, a zero-padded prefix of union bpf_attr (the kernel checks that the
/// bytes past the fields it knows are zero).
fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr points to a live value of the size passed; the pointers inside it are
    // the caller's to keep alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`.
pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = program(rules);
    // Without a log first: a log that overflows makes the load itself fail (ENOSPC).
    let fd = match load(&prog, None) {
        Ok(fd) => fd,
        Err(err) => {
            let mut log = vec![0u8; 1 << 20];
            let _ = load(&prog, Some(&mut log));
            let text = String::from_utf8_lossy(&log)
                .trim_end_matches('\0')
                .trim()
                .to_string();
            let last = text.lines().last().unwrap_or_default().to_string();
            return Err(err).with_context(|| format!("load the cgroup v2 device program ({last})"));
        }
    };
    // SAFETY: the kernel returned a new fd that nothing else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cg = std::fs::File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    let attach = ProgAttach {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &attach)
        .with_context(|| format!("attach the device program to {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(allow);
        d.set_typ(typ);
        d.set_major(major);
        d.set_minor(minor);
        d.set_access(Some(access.into()));
        d
    }

    /// A tiny interpreter for the instructions we emit, to check the logic without a kernel.
    fn run(p: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let ctx = [(typ | (access << 16)) as u32, major as u32, minor as u32];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = i64::from(ctx[i.off as usize / 4]),
                AND_K => r[dst] &= i64::from(i.imm),
                RSH_K => r[dst] >>= i.imm,
                MOV_K => r[dst] = i64::from(i.imm),
                0xbf => r[dst] = r[src],
                JNE_K => {
                    if r[dst] != i64::from(i.imm) {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                c => panic!("unknown op {c:#x}"),
            }
        }
    }

    #[test]
    fn last_matching_rule_wins_and_default_is_deny() {
        use LinuxDeviceType::C;
        let rules = [
            rule(false, None, None, None, "rwm"),
            rule(true, Some(C), None, None, "m"),
            rule(true, Some(C), Some(1), Some(3), "rwm"),
            rule(true, Some(C), Some(136), None, "rw"),
            rule(false, Some(C), Some(136), Some(7), "rwm"),
        ];
        let p = program(&rules);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1, "null readable");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 1), 0, "mem denied");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_MKNOD, 1, 1),
            1,
            "mknod of any char device"
        );
        assert_eq!(
            run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0),
            0,
            "block mknod not allowed"
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 136, 2), 1, "pts writable");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_MKNOD, 136, 2),
            1,
            "pts rule lacks m, c *:* m allows it"
        );
        assert_eq!(
            run(&p, DEV_BLOCK, ACC_READ, 8, 0),
            0,
            "falls through to deny all"
        );
        assert_eq!(p.last().map(|i| i.code), Some(EXIT));
        assert_eq!(
            p.iter().filter(|i| i.code == EXIT).count(),
            rules.len(),
            "no unreachable default"
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 136, 7), 0, "later deny wins");
        assert_eq!(
            run(&program(&[]), DEV_CHAR, ACC_READ, 1, 3),
            0,
            "no rules: deny"
        );
    }
}
