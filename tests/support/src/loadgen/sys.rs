//! The few operating-system facts the generator needs: open-file limits,
//! CPU pinning, a process's resident memory, free loopback ports, clocks.

use std::net::{Ipv4Addr, TcpListener};
use std::time::{SystemTime, UNIX_EPOCH};

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit and
/// returns the new soft limit. Children spawned afterwards inherit it.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    // rlim_t is u64 here but u32 on some 32-bit Linux targets.
    #[allow(clippy::unnecessary_cast)]
    let soft = limit.rlim_cur as u64;
    Ok(soft)
}

/// Pins the calling thread (and, before exec, a child) to one CPU.
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET checks nothing, so bound it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets the calling thread's nice value (on Linux `PRIO_PROCESS` with 0
/// names the calling thread; threads created afterwards inherit it).
/// Async-signal-safe, so usable between fork and exec.
pub fn set_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority has no memory preconditions.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Moves this process into a session (and so, with the kernel's
/// autogroup scheduling, a CPU group) of its own and gives that group the
/// nice value: with autogroup, a thread's nice only counts within its
/// group, and every session's group gets an equal share, so on a machine
/// shared with other sessions only the group's nice matters. The servers
/// spawned afterwards inherit the session. Without autogroup this does
/// nothing beyond `setsid`.
pub fn own_cpu_group(nice: i32) -> std::io::Result<()> {
    // SAFETY: setsid has no memory preconditions; it fails harmlessly for
    // a process group leader.
    unsafe { libc::setsid() };
    match std::fs::write("/proc/self/autogroup", nice.to_string()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Resident and peak resident memory of a process, in KiB, from
/// `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Rss {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn rss(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()
    };
    Some(Rss { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:").unwrap_or(0) })
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Wall-clock nanoseconds since the Unix epoch: publisher and subscribers
/// run in one process on one machine, so send and receive stamps compare.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// `/proc/<pid>/stat`; `None` for this process reads `/proc/self/stat`.
pub fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    stat_cpu_secs(&path)
}

/// CPU time (user + system) one thread of this process has used so far, in
/// seconds, from `/proc/self/task/<tid>/stat`.
pub fn thread_cpu_secs(tid: i32) -> Option<f64> {
    stat_cpu_secs(&format!("/proc/self/task/{tid}/stat"))
}

fn stat_cpu_secs(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_sec > 0).then(|| ticks as f64 / per_sec as f64)
}

/// Busy CPU time of the whole machine so far, in seconds, from
/// `/proc/stat`: (everything but idle and iowait, of which irq + softirq).
pub fn machine_busy_secs() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    let irq: u64 = ticks.get(5..7)?.iter().sum();
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (per_sec > 0.0).then(|| (busy as f64 / per_sec, irq as f64 / per_sec))
}
