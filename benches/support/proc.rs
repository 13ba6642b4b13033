//! CPU time, context switches and resident memory from `/proc` (Linux only).
//!
//! CPU time is the scheduler's own account (`schedstat`: nanoseconds on a CPU, user and
//! system together), far finer than `utime + stime` in clock ticks.

use std::fs;

/// The thread id of the calling thread.
pub fn current_tid() -> u32 {
    let link = fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("tid")
}

/// Nanoseconds thread `tid` of process `pid` has run (user + system).
pub fn task_cpu_ns(pid: u32, tid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// The thread ids of process `pid`.
pub fn tasks(pid: u32) -> Vec<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The thread ids of process `pid` whose name starts with `prefix` (libzmq's are `ZMQbg/...`).
pub fn tasks_named(pid: u32, prefix: &str) -> Vec<u32> {
    tasks(pid)
        .into_iter()
        .filter(|tid| {
            fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .collect()
}

/// Nanoseconds all live threads of `pid` have run: the whole process, libzmq's threads included.
pub fn process_cpu_ns(pid: u32) -> u64 {
    tasks(pid)
        .into_iter()
        .map(|tid| task_cpu_ns(pid, tid))
        .sum()
}

/// Nanoseconds the threads `tids` of `pid` have run.
pub fn threads_cpu_ns(pid: u32, tids: &[u32]) -> u64 {
    tids.iter().map(|&tid| task_cpu_ns(pid, tid)).sum()
}

/// Voluntary context switches of all threads of `pid`: how often they went to sleep, so
/// roughly how often they woke up.
pub fn voluntary_switches(pid: u32) -> u64 {
    tasks(pid)
        .into_iter()
        .filter_map(|tid| {
            let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Resident memory of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The machine: CPU model, cores, kernel.
pub fn machine() -> String {
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{model}, {cores} cores, Linux {kernel}")
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}
