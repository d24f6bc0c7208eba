//! Which limit, if any, ended a command that died "naturally" (not stopped by the wait
//! loop): the kernel's signals and exit codes do not say it themselves (SIGKILL at
//! RLIMIT_CPU's hard limit, an allocation failure at the RLIMIT_DATA backstop), so the
//! evidence is weighed here, apart from the mechanics of running the command.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::{CommandSpec, Exit};

/// Does the end of the captured stderr report an allocation failure?
fn stderr_reports_oom(path: &Path) -> bool {
    const TAIL: u64 = 16 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let len = f.metadata().map_or(0, |m| m.len());
    if f.seek(SeekFrom::Start(len.saturating_sub(TAIL))).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    if f.take(TAIL).read_to_end(&mut buf).is_err() {
        return false;
    }
    let text = String::from_utf8_lossy(&buf).to_lowercase();
    [
        "memoryerror",
        "cannot allocate memory",
        "out of memory",
        "outofmemory",
        "bad_alloc",
        "memory allocation of",
        "failed to allocate",
        "allocation failed",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// Map a natural death to a limit where one caused it.
pub(super) fn classify(
    base: Exit,
    spec: &CommandSpec,
    cpu_ms: u64,
    oom_killed: bool,
    data_backstop: bool,
) -> Exit {
    if oom_killed {
        return Exit::MemoryLimit;
    }
    if let Some(limit) = spec.limits.cpu_time {
        // SIGXCPU only comes from RLIMIT_CPU. SIGKILL comes at its hard limit (one second
        // later), but also from elsewhere: require the CPU time to be near the limit. rusage
        // is tick-sampled and reads low on a loaded VM (30% under seen), hence 70%.
        let near = cpu_ms * 10 >= limit.as_millis() as u64 * 7;
        let (xcpu, kill) = (libc::SIGXCPU, libc::SIGKILL);
        match base {
            Exit::Signal { signal } if signal == xcpu => return Exit::CpuLimit,
            Exit::Signal { signal } if signal == kill && near => return Exit::CpuLimit,
            // A shell reports a child killed by signal N as exit 128 + N.
            Exit::Code { code } if code == 128 + xcpu => return Exit::CpuLimit,
            Exit::Code { code } if code == 128 + kill && near => return Exit::CpuLimit,
            _ => {}
        }
    }
    if data_backstop {
        let abnormal = match base {
            Exit::Code { code } => code != 0,
            Exit::Signal { signal } => {
                [libc::SIGSEGV, libc::SIGABRT, libc::SIGBUS, libc::SIGKILL].contains(&signal)
            }
            _ => false,
        };
        if abnormal && stderr_reports_oom(&spec.stderr) {
            return Exit::MemoryLimit;
        }
    }
    base
}
