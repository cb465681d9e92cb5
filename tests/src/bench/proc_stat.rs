//! CPU time of processes and of this process's named threads, from `/proc`, so a bench can say
//! which party used the cores during a measurement (Linux only, like the memory readings), and
//! a [`MemorySampler`] that follows a process's resident memory through an interval.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::Context;

use super::broker::read_memory;

/// User plus system CPU time of process `pid` so far (all its threads, including exited ones).
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("no utime/stime in {path}"))?;
    Ok(ticks_to_duration(ticks))
}

/// CPU time so far of the live threads of this process named `name` (e.g. a tokio runtime's
/// `thread_name`; Linux keeps the first 15 bytes).
pub fn threads_cpu(name: &str) -> anyhow::Result<Duration> {
    let wanted = &name[..name.len().min(15)];
    let mut ticks = 0;
    let tasks = fs::read_dir("/proc/self/task").context("listing /proc/self/task")?;
    for task in tasks.flatten() {
        let path = task.path();
        // A thread may exit between listing and reading: skip it.
        let Ok(comm) = fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if comm.trim_end() != wanted {
            continue;
        }
        if let Some(t) = fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|stat| parse_cpu_ticks(&stat))
        {
            ticks += t;
        }
    }
    Ok(ticks_to_duration(ticks))
}

/// CPU time the whole machine spent busy so far, summed over all CPUs (the `cpu` line of
/// `/proc/stat`: user, nice, system, irq, softirq and steal; guest time is part of user).
pub fn machine_busy() -> anyhow::Result<Duration> {
    let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let ticks = parse_busy_ticks(&stat).context("no `cpu` line in /proc/stat")?;
    Ok(ticks_to_duration(ticks))
}

/// The first process whose command line has `arg` as one of its arguments.
pub fn find_pid_with_arg(arg: &str) -> Option<u32> {
    let entries = fs::read_dir("/proc").ok()?;
    entries.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
        cmdline
            .split(|b| *b == 0)
            .any(|a| a == arg.as_bytes())
            .then_some(pid)
    })
}

/// The largest values of a process's memory seen by a [`MemorySampler`], in KiB; each field
/// has its own maximum (they need not come from the same sample).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryPeak {
    pub rss_kb: u64,
    pub anon_kb: u64,
    pub file_kb: u64,
    pub samples: u64,
}

/// Reads `/proc/<pid>/status` on a thread of its own every `interval` until finished (or
/// dropped), so the peaks do not depend on how often the measuring loop gets round to it.
pub struct MemorySampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<MemoryPeak>>,
}

impl MemorySampler {
    /// Starts sampling now (the first sample is taken at once).
    pub fn start(pid: u32, interval: Duration) -> MemorySampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut peak = MemoryPeak::default();
            loop {
                // A process that exited has no status to read: the peaks so far stand.
                if let Ok(memory) = read_memory(pid) {
                    peak.rss_kb = peak.rss_kb.max(memory.rss_kb);
                    peak.anon_kb = peak.anon_kb.max(memory.anon_kb);
                    peak.file_kb = peak.file_kb.max(memory.file_kb);
                    peak.samples += 1;
                }
                if stopped.load(Ordering::Acquire) {
                    return peak;
                }
                thread::sleep(interval);
            }
        });
        MemorySampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Takes a last sample and returns the peaks.
    pub fn finish(mut self) -> anyhow::Result<MemoryPeak> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .context("the memory sampler already finished")?
            .join()
            .map_err(|_| anyhow::anyhow!("the memory sampler thread panicked"))
    }
}

impl Drop for MemorySampler {
    /// Stops the thread when a measurement is abandoned (it exits after its next sample).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// is in parentheses and may itself contain spaces and `)`, so fields are counted from the last
/// `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Busy ticks of the aggregate `cpu` line: fields 1, 2, 3, 6, 7, 8 (idle and iowait skipped).
fn parse_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| fields.get(i).copied())
        .sum()
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf(3) only reads its integer argument.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_sec = u64::try_from(per_sec)
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(100);
    Duration::from_secs_f64(ticks as f64 / per_sec as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_stat_line_with_a_tricky_name_when_parsing_should_add_utime_and_stime() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    3 0 12345 1000000 200 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn given_proc_stat_when_parsing_busy_should_skip_idle_and_iowait() {
        let stat = "cpu  100 5 50 9000 40 3 2 1 0 0\ncpu0 50 2 25 4500 20 1 1 0 0 0\n";
        assert_eq!(parse_busy_ticks(stat), Some(100 + 5 + 50 + 3 + 2 + 1));
    }

    #[test]
    fn given_this_process_when_sampling_memory_should_see_it_resident() {
        let sampler = MemorySampler::start(std::process::id(), Duration::from_millis(1));
        thread::sleep(Duration::from_millis(5));
        let peak = sampler.finish().expect("sampler finishes");
        assert!(peak.samples >= 2, "{peak:?}");
        assert!(peak.rss_kb > 0 && peak.rss_kb >= peak.anon_kb, "{peak:?}");
    }

    #[test]
    fn given_this_process_when_reading_cpu_should_succeed() {
        let pid = std::process::id();
        assert!(process_cpu(pid).is_ok());
        assert!(find_pid_with_arg("no-such-argument-anywhere-8f3a").is_none());
    }
}
