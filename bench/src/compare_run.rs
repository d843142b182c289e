//! Process plumbing for `compare-nginx`: child processes that die with us, CPU pinning, wrk
//! runs, and the CPU accounting of a run from /proc (proc(5): `/proc/stat` per-CPU lines,
//! `/proc/<pid>/stat`, `/proc/<pid>/task/<tid>/status` `Cpus_allowed_list`) and getrusage(2)
//! for the children we waited for (wrk).

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::BenchError;
use crate::compare::Server;
use crate::nginx::{WrkResult, parse_wrk};
use crate::procstat::{clock_ticks_per_second, parse_stat_ticks};

fn fail(why: impl Into<String>) -> BenchError {
    BenchError::Compare(why.into())
}

/// A child process that is stopped (SIGTERM, then SIGKILL after 3 s) when dropped, and gets
/// SIGTERM from the kernel if we die first (PR_SET_PDEATHSIG), so no run leaves servers behind.
#[derive(Debug)]
pub struct Proc {
    name: String,
    log: std::path::PathBuf,
    child: Child,
}

impl Proc {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        cpus: Option<&[usize]>,
        log: &Path,
    ) -> Result<Proc, BenchError> {
        let log_file =
            std::fs::File::create(log).map_err(|e| fail(format!("{}: {e}", log.display())))?;
        let err_file = log_file
            .try_clone()
            .map_err(|e| fail(format!("{}: {e}", log.display())))?;
        let mut command = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu_list(cpus)).arg(program);
                c
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file);
        // SAFETY: the closure runs in the forked child before exec and calls only prctl, which
        // is async-signal-safe; it touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| fail(format!("starting {name} ({}): {e}", program.display())))?;
        Ok(Proc {
            name: name.to_string(),
            log: log.to_path_buf(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited, and the tail of its log if so.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log)
            )),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.name)),
        }
    }

    /// Waits for a successful exit within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<(), BenchError> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                if status.success() {
                    return Ok(());
                }
                return Err(fail(self.exited().unwrap_or_else(|| status.to_string())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(fail(format!(
            "{} still running after {limit:?}; log {}",
            self.name,
            self.log.display()
        )))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill has no memory preconditions; pid is our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `n` distinct free TCP ports on 127.0.0.1 (held together while picking, so no repeats).
pub fn free_ports(n: usize) -> Result<Vec<u16>, BenchError> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("picking free ports: {e}")))?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| fail(format!("picking free ports: {e}")))
        })
        .collect()
}

/// Waits until `addr` answers HTTP (any status), failing early if `proc` exits.
pub fn wait_for_http(addr: SocketAddr, proc: &Proc, limit: Duration) -> Result<(), BenchError> {
    // `exited` needs &mut: try_wait on a shared Child is not offered, so poll via /proc.
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if crate::nginx::http_get(addr, "/").is_ok() {
            return Ok(());
        }
        let state = std::fs::read_to_string(format!("/proc/{}/stat", proc.pid()))
            .ok()
            .and_then(|s| {
                s.rfind(')')
                    .and_then(|i| s[i + 1..].split_whitespace().next().map(String::from))
            });
        if state.as_deref().is_none_or(|s| s == "Z") {
            return Err(fail(format!(
                "{} exited before serving http://{addr}; log {}:\n{}",
                proc.name,
                proc.log.display(),
                log_tail(&proc.log)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(fail(format!(
        "{} did not answer on http://{addr} within {limit:?}",
        proc.name
    )))
}

/// Parses a `Cpus_allowed_list` value ("0", "0-1", "0,2-3").
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The CPU each of the `n` threads named `<prefix><index>` of `pid` is pinned to, in index
/// order. Fails when a thread is missing after 10 s or is not pinned to one CPU.
pub fn thread_cpus(pid: u32, prefix: &str, n: usize) -> Result<Vec<usize>, BenchError> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let mut found = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let dir = task.path();
                let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                let Some(index) = comm
                    .trim()
                    .strip_prefix(prefix)
                    .and_then(|i| i.parse::<usize>().ok())
                else {
                    continue;
                };
                let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
                let cpus = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .and_then(parse_cpu_list)
                    .unwrap_or_default();
                found.push((index, cpus));
            }
        }
        if found.len() >= n {
            found.sort();
            return found
                .into_iter()
                .take(n)
                .map(|(index, cpus)| match cpus.as_slice() {
                    [cpu] => Ok(*cpu),
                    _ => Err(fail(format!(
                        "thread {prefix}{index} of pid {pid} is not pinned to one CPU: {cpus:?}"
                    ))),
                })
                .collect();
        }
        if Instant::now() > until {
            return Err(fail(format!(
                "pid {pid}: found {} of {n} threads named {prefix}N",
                found.len()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The worker processes of an nginx master (its children), waiting up to 10 s for `n`.
pub fn nginx_worker_pids(master: u32, n: usize) -> Result<Vec<u32>, BenchError> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let mut workers: Vec<u32> = std::fs::read_dir("/proc")
            .map_err(|e| fail(format!("/proc: {e}")))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| parent_of(pid) == Some(master))
            .collect();
        if workers.len() >= n {
            workers.sort_unstable();
            return Ok(workers);
        }
        if Instant::now() > until {
            return Err(fail(format!(
                "nginx master {master}: {} of {n} workers",
                workers.len()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pins the calling thread (and so every thread and process it starts later) to `cpus`.
pub fn pin_self(cpus: &[usize]) -> Result<(), BenchError> {
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET writes one bit of `set`, which we own; the bit index is checked
        // against the set's size inside the macro's Rust port.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size we pass; pid 0 means this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(fail(format!(
            "sched_setaffinity({cpus:?}): {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// One wrk run; its report text is returned whole (for the log) with the parse.
pub fn run_wrk(
    wrk: &Path,
    cpus: &[usize],
    threads: usize,
    connections: u32,
    seconds: f64,
    url: &str,
) -> Result<(Option<WrkResult>, String), BenchError> {
    let mut command = if cpus.is_empty() {
        Command::new(wrk)
    } else {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu_list(cpus)).arg(wrk);
        c
    };
    // wrk takes whole seconds for -d; it stops by itself, and --timeout bounds each request.
    let seconds = seconds.round().max(1.0) as u64;
    let output = command
        .args([
            format!("-t{threads}"),
            format!("-c{connections}"),
            format!("-d{seconds}s"),
            "--latency".into(),
            "--timeout".into(),
            "10s".into(),
            url.into(),
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("running {}: {e}", wrk.display())))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((parse_wrk(&text), text))
}

/// Busy and total ticks of each CPU and of all together, from `/proc/stat`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuTicks {
    /// (busy, irq + softirq, total) for the "cpu" line.
    pub all: (u64, u64, u64),
    /// busy ticks per CPU (irq and softirq included), indexed by CPU number.
    pub busy: Vec<u64>,
}

pub fn parse_cpu_ticks(stat: &str) -> Option<CpuTicks> {
    let mut ticks = CpuTicks::default();
    for line in stat.lines().take_while(|l| l.starts_with("cpu")) {
        let mut words = line.split_whitespace();
        let name = words.next()?;
        let values: Vec<u64> = words
            .take(8)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        let total: u64 = values.iter().sum();
        let busy = total - values.get(3)? - values.get(4)?;
        if name == "cpu" {
            ticks.all = (busy, values.get(5)? + values.get(6)?, total);
        } else {
            let cpu: usize = name.strip_prefix("cpu")?.parse().ok()?;
            if ticks.busy.len() <= cpu {
                ticks.busy.resize(cpu + 1, 0);
            }
            ticks.busy[cpu] = busy;
        }
    }
    Some(ticks)
}

fn read_cpu_ticks() -> CpuTicks {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_cpu_ticks(&s))
        .unwrap_or_default()
}

fn process_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat_ticks(&s))
        .unwrap_or(0)
}

/// CPU seconds of children we have waited for (wrk).
fn children_cpu_s() -> f64 {
    // SAFETY: rusage is plain data; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(usage.ru_utime) + s(usage.ru_stime)
}

/// Network counters a run records, from /proc/net/snmp, /proc/net/netstat and
/// /proc/net/softnet_stat: the loopback TCP trouble that tails on this VM come with
/// (research/uring.md), and how many IP packets the box sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetCounters {
    pub retrans_segs: u64,
    pub tcp_loss_probes: u64,
    pub softnet_drops: u64,
    /// `Ip: OutRequests`: every IP packet sent, one per skb before segmentation. On loopback
    /// that is both sides' packets (requests, response data, ACKs).
    pub ip_out_packets: u64,
}

impl NetCounters {
    /// How much each counter moved since `earlier` (counters only grow; a reset reads as 0).
    pub fn since(self, earlier: NetCounters) -> NetCounters {
        NetCounters {
            retrans_segs: self.retrans_segs.saturating_sub(earlier.retrans_segs),
            tcp_loss_probes: self.tcp_loss_probes.saturating_sub(earlier.tcp_loss_probes),
            softnet_drops: self.softnet_drops.saturating_sub(earlier.softnet_drops),
            ip_out_packets: self.ip_out_packets.saturating_sub(earlier.ip_out_packets),
        }
    }
}

/// One counter from /proc/net/snmp or /proc/net/netstat text, where each group is a line of
/// names after `prefix` and then a line of values after the same prefix; 0 if absent.
pub fn snmp_field(text: &str, prefix: &str, name: &str) -> u64 {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    while let (Some(head), Some(values)) = (lines.next(), lines.next()) {
        if let Some(i) = head.split_whitespace().position(|h| h == name) {
            return values
                .split_whitespace()
                .nth(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

/// The box's [`NetCounters`] now.
pub fn net_counters() -> NetCounters {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let snmp = read("/proc/net/snmp");
    let softnet_drops = read("/proc/net/softnet_stat")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| u64::from_str_radix(v, 16).ok())
        .sum();
    NetCounters {
        retrans_segs: snmp_field(&snmp, "Tcp:", "RetransSegs"),
        tcp_loss_probes: snmp_field(&read("/proc/net/netstat"), "TcpExt:", "TCPLossProbes"),
        softnet_drops,
        ip_out_packets: snmp_field(&snmp, "Ip:", "OutRequests"),
    }
}

/// Waits (up to `limit`) until the whole box is below 0.1 busy cores; returns the time spent.
pub fn wait_quiet(limit: Duration) -> Duration {
    let began = Instant::now();
    let hz = clock_ticks_per_second();
    loop {
        let a = read_cpu_ticks();
        std::thread::sleep(Duration::from_millis(300));
        let b = read_cpu_ticks();
        let busy = (b.all.0.saturating_sub(a.all.0)) as f64 / hz / 0.3;
        if busy < 0.1 || began.elapsed() >= limit {
            return began.elapsed();
        }
    }
}

/// Where a run's CPU went, in cores (1.0 = one CPU busy for the whole run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUsage {
    pub seconds: f64,
    pub box_busy_cores: f64,
    /// irq + softirq: loopback TCP work of both sides, charged to no process.
    pub irq_cores: f64,
    /// The server under load (corecast's process, or nginx's master and workers).
    pub server_cores: f64,
    /// The other server, idle during this run.
    pub idle_server_cores: f64,
    /// wrk plus this process (the viewer simulator runs in it).
    pub client_cores: f64,
    /// Busy time no process of ours used: other load on a shared box.
    pub foreign_cores: f64,
    /// Busy time of the servers' CPUs (irq and softirq included), in cores.
    pub server_cpus_busy_cores: f64,
    /// Busy fraction of every CPU.
    pub per_cpu_busy: Vec<f64>,
    /// How much the network counters moved during the run (flattened into the JSON).
    #[serde(flatten)]
    pub net: NetCounters,
}

/// What one /proc reading at a run's start or end holds.
#[derive(Debug)]
struct Sample {
    at: Instant,
    box_ticks: CpuTicks,
    corecast_ticks: u64,
    nginx_ticks: u64,
    /// This process (the in-process load).
    own_ticks: u64,
    /// CPU-seconds of reaped children (wrk).
    children_cpu_s: f64,
    net: NetCounters,
    floor_ticks: u64,
}

/// Samples /proc at the start and end of a run.
#[derive(Debug)]
pub struct CpuMeter {
    corecast: u32,
    nginx_master: u32,
    nginx_workers: Vec<u32>,
    server_cpus: Vec<usize>,
    /// The copy floor's process while one runs.
    floor: Option<u32>,
    start: Option<Sample>,
}

impl CpuMeter {
    pub fn new(
        corecast: u32,
        nginx_master: u32,
        nginx_workers: Vec<u32>,
        server_cpus: Vec<usize>,
    ) -> CpuMeter {
        CpuMeter {
            corecast,
            nginx_master,
            nginx_workers,
            server_cpus,
            floor: None,
            start: None,
        }
    }

    /// The copy floor's pid for the next run (`None`: no floor runs).
    pub fn set_floor(&mut self, pid: Option<u32>) {
        self.floor = pid;
    }

    pub fn corecast_pid(&self) -> u32 {
        self.corecast
    }

    pub fn nginx_worker_pid(&self) -> u32 {
        self.nginx_workers
            .first()
            .copied()
            .unwrap_or(self.nginx_master)
    }

    fn nginx_ticks(&self) -> u64 {
        process_ticks(self.nginx_master)
            + self
                .nginx_workers
                .iter()
                .map(|&p| process_ticks(p))
                .sum::<u64>()
    }

    fn sample(&self) -> Sample {
        Sample {
            at: Instant::now(),
            box_ticks: read_cpu_ticks(),
            corecast_ticks: process_ticks(self.corecast),
            nginx_ticks: self.nginx_ticks(),
            own_ticks: process_ticks(std::process::id()),
            children_cpu_s: children_cpu_s(),
            net: net_counters(),
            floor_ticks: self.floor.map_or(0, process_ticks),
        }
    }

    pub fn start(&mut self) {
        self.start = Some(self.sample());
    }

    pub fn stop(&mut self, server: Server) -> CpuUsage {
        let end = self.sample();
        let Some(start) = self.start.take() else {
            return CpuUsage::default();
        };
        let seconds = end.at.duration_since(start.at).as_secs_f64().max(1e-3);
        let hz = clock_ticks_per_second();
        let cores = |ticks: u64| ticks as f64 / hz / seconds;
        let box_busy = cores(end.box_ticks.all.0.saturating_sub(start.box_ticks.all.0));
        let irq = cores(end.box_ticks.all.1.saturating_sub(start.box_ticks.all.1));
        let corecast = cores(end.corecast_ticks.saturating_sub(start.corecast_ticks));
        let nginx = cores(end.nginx_ticks.saturating_sub(start.nginx_ticks));
        let client = cores(end.own_ticks.saturating_sub(start.own_ticks))
            + (end.children_cpu_s - start.children_cpu_s).max(0.0) / seconds;
        let per_cpu_busy: Vec<f64> = end
            .box_ticks
            .busy
            .iter()
            .enumerate()
            .map(|(cpu, &b)| {
                cores(b.saturating_sub(start.box_ticks.busy.get(cpu).copied().unwrap_or(0)))
            })
            .collect();
        let server_cpus_busy_cores = self
            .server_cpus
            .iter()
            .filter_map(|&c| per_cpu_busy.get(c))
            .sum();
        let floor = cores(end.floor_ticks.saturating_sub(start.floor_ticks));
        let (server_cores, idle_server_cores) = match server {
            Server::Corecast => (corecast, nginx + floor),
            Server::Nginx => (nginx, corecast + floor),
            Server::Floor => (floor, corecast + nginx),
        };
        CpuUsage {
            seconds,
            box_busy_cores: box_busy,
            irq_cores: irq,
            server_cores,
            idle_server_cores,
            client_cores: client,
            foreign_cores: (box_busy - irq - corecast - nginx - floor - client).max(0.0),
            server_cpus_busy_cores,
            per_cpu_busy,
            net: end.net.since(start.net),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_counters_read() {
        // Counters only grow, and any running box has sent IP packets, so a 0 here means
        // OutRequests was not found.
        let a = net_counters();
        let b = net_counters();
        assert!(b.retrans_segs >= a.retrans_segs && b.ip_out_packets >= a.ip_out_packets);
        assert!(b.ip_out_packets > 0);
    }

    #[test]
    fn snmp_fields() {
        let text = "Ip: Forwarding DefaultTTL InReceives OutRequests\n\
                    Ip: 1 64 100 4123\n\
                    Icmp: InMsgs OutRequests\n\
                    Icmp: 5 6\n\
                    Tcp: RtoAlgorithm RetransSegs\n\
                    Tcp: 1 17\n";
        assert_eq!(snmp_field(text, "Ip:", "OutRequests"), 4123);
        assert_eq!(snmp_field(text, "Icmp:", "OutRequests"), 6);
        assert_eq!(snmp_field(text, "Tcp:", "RetransSegs"), 17);
        assert_eq!(snmp_field(text, "Tcp:", "Missing"), 0);
        assert_eq!(snmp_field("Tcp: RetransSegs\n", "Tcp:", "RetransSegs"), 0);
        let later = NetCounters {
            retrans_segs: 3,
            ip_out_packets: 10,
            ..NetCounters::default()
        };
        let earlier = NetCounters {
            retrans_segs: 1,
            ip_out_packets: 12,
            ..NetCounters::default()
        };
        assert_eq!(later.since(earlier).retrans_segs, 2);
        assert_eq!(later.since(earlier).ip_out_packets, 0);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-3"), Some(vec![0, 2, 3]));
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(cpu_list(&[0, 2]), "0,2");
    }

    #[test]
    fn per_cpu_ticks() {
        let stat = "cpu  100 5 50 800 20 3 7 0 0 0\n\
                    cpu0 60 2 30 300 10 2 6 0 0 0\n\
                    cpu1 40 3 20 500 10 1 1 0 0 0\n\
                    intr 1 2 3\n";
        let t = parse_cpu_ticks(stat).expect("parses");
        assert_eq!(t.all, (165, 10, 985));
        assert_eq!(t.busy, vec![100, 65]);
        assert_eq!(parse_cpu_ticks("cpu0 1 2\n"), None);
    }

    #[test]
    fn children_die_with_the_guard() {
        let log = std::env::temp_dir().join(format!("cc-nginx-proc-{}.log", std::process::id()));
        let proc = Proc::spawn("sleep", Path::new("sleep"), &["30".into()], None, &log)
            .expect("spawns sleep");
        let pid = proc.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(proc);
        // Reaped by the guard: the pid is gone (or reused by an unrelated process, not ours).
        assert_ne!(parent_of(pid), Some(std::process::id()));
        let mut done = Proc::spawn("true", Path::new("true"), &[], None, &log).expect("spawns");
        done.wait_exit(Duration::from_secs(5)).expect("exits 0");
        let _ = std::fs::remove_file(&log);
    }
}
