//! Counting hardware instructions of a process tree with `perf_event_open`.
//!
//! The counter counts user-space instructions only (`exclude_kernel`, `exclude_hv`): that
//! is what an unprivileged user may count at `perf_event_paranoid = 2`, and it is the less
//! noisy measure of the work a program does. It is opened on the child while the child is
//! held before `execve`, disabled, with `enable_on_exec` and `inherit`, so it starts at the
//! exec of `sh` and follows every descendant forked afterwards; the counts of exited
//! descendants are folded into it by the kernel.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_COUNT_HW_INSTRUCTIONS: u64 = 1;
const PERF_FORMAT_TOTAL_TIME_ENABLED: u64 = 1;
const PERF_FORMAT_TOTAL_TIME_RUNNING: u64 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

const FLAG_DISABLED: u64 = 1 << 0;
const FLAG_INHERIT: u64 = 1 << 1;
const FLAG_EXCLUDE_KERNEL: u64 = 1 << 5;
const FLAG_EXCLUDE_HV: u64 = 1 << 6;
const FLAG_ENABLE_ON_EXEC: u64 = 1 << 12;

/// `struct perf_event_attr` (PERF_ATTR_SIZE_VER8, 136 bytes); the bit fields are `flags`.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved_2: u16,
    aux_sample_size: u32,
    reserved_3: u32,
    sig_data: u64,
    config3: u64,
}

fn open(pid: libc::pid_t, flags: u64) -> Result<OwnedFd, io::Error> {
    let attr = PerfEventAttr {
        type_: PERF_TYPE_HARDWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_HW_INSTRUCTIONS,
        read_format: PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING,
        flags: flags | FLAG_DISABLED | FLAG_EXCLUDE_KERNEL | FLAG_EXCLUDE_HV,
        ..Default::default()
    };
    // SAFETY: attr is a valid, fully initialised perf_event_attr that outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            pid,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

fn paranoid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Turn a perf_event_open failure into a reason a person can act on.
fn explain(err: &io::Error) -> String {
    let errno = err.raw_os_error().unwrap_or(0);
    let name = format!("{:?}", nix::errno::Errno::from_raw(errno));
    match errno {
        libc::EACCES | libc::EPERM => format!(
            "perf_event_open: {name} (kernel.perf_event_paranoid={}; lower it, or the \
             container/seccomp policy forbids perf events)",
            paranoid()
        ),
        libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV | libc::EINVAL => format!(
            "perf_event_open: {name} (no hardware instruction counter: the CPU exposes no \
             PMU here, e.g. inside a VM)"
        ),
        libc::ENOSYS => format!("perf_event_open: {name} (kernel built without perf events)"),
        _ => format!("perf_event_open: {name} ({err})"),
    }
}

/// Can this machine count hardware instructions of a child tree? Err says why not.
pub fn instructions_supported() -> Result<(), String> {
    static CACHE: OnceLock<Result<(), String>> = OnceLock::new();
    CACHE
        .get_or_init(|| match open(0, 0) {
            Ok(_fd) => Ok(()),
            Err(e) => Err(explain(&e)),
        })
        .clone()
}

/// An instruction counter attached to a (not yet exec'd) child.
pub(crate) struct Counter {
    fd: OwnedFd,
}

impl Counter {
    /// Attach to `pid`; counting starts when it execs and follows its descendants.
    pub fn attach(pid: u32) -> Result<Counter, String> {
        open(pid as libc::pid_t, FLAG_INHERIT | FLAG_ENABLE_ON_EXEC)
            .map(|fd| Counter { fd })
            .map_err(|e| explain(&e))
    }

    /// The count so far (scaled if the counter was multiplexed).
    pub fn read(&self) -> io::Result<u64> {
        let mut buf = [0u64; 3];
        // SAFETY: reading at most 24 bytes into a 24-byte buffer from an fd we own.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                std::mem::size_of_val(&buf),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if (n as usize) < std::mem::size_of_val(&buf) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "short read from perf counter",
            ));
        }
        let [value, enabled, running] = buf;
        if running > 0 && running < enabled {
            Ok((value as u128 * enabled as u128 / running as u128) as u64)
        } else {
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn attr_has_ver8_size() {
        assert_eq!(std::mem::size_of::<super::PerfEventAttr>(), 136);
    }
}
