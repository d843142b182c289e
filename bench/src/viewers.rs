//! `corecast-bench viewers`: plans the run, starts the workers, samples the server and the
//! box from /proc while they run, and merges what they measured into one [`Report`].

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::player::PlayerConfig;
use crate::procstat::{ProcessSample, clock_ticks_per_second, sample_box, sample_process};
use crate::stats::{Percentiles, ProcessUsage, Report, WorkerStats};
use crate::worker::{Progress, Worker, WorkerPlan};

/// Everything `viewers` is told on the command line.
#[derive(Debug, Clone)]
pub struct ViewersConfig {
    /// A media playlist (`…/index.m3u8`) or a stream (`http://host:port/live/demo`).
    pub url: String,
    /// Rendition directory under a stream URL (`source`, `audio`, `ts`).
    pub rendition: String,
    pub viewers: u64,
    pub duration: Duration,
    /// New connections per second; 0 = all at once.
    pub ramp_per_s: f64,
    /// Excluded from rates and CPU figures after the ramp-up (the players' initial catch-up).
    pub warmup: Duration,
    pub burst: bool,
    pub threads: usize,
    /// Source addresses 127.0.0.2, .3, … to spread connections over; `None` = automatic
    /// (loopback targets: one per 16,000 viewers; other targets: none).
    pub source_addresses: Option<u32>,
    pub server_pid: Option<u32>,
    pub sample_every: u64,
    pub player: PlayerConfig,
    /// Print a progress line to stderr this often (0: never).
    pub progress_every: Duration,
}

/// Where requests go: socket address, `Host` header, playlist path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddrV4,
    pub host: String,
    pub playlist_path: String,
}

/// Splits `http://host[:port]/path` and picks the playlist path.
pub fn parse_target(url: &str, rendition: &str) -> Result<Target, BenchError> {
    let bad = |why| BenchError::Url {
        url: url.to_owned(),
        why,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|_| bad("host does not resolve"))?
        .find_map(|a| match a {
            SocketAddr::V4(v4) => Some(v4),
            SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| bad("no IPv4 address for the host"))?;
    let playlist_path = if path.ends_with(".m3u8") {
        path.to_owned()
    } else {
        format!("{}/{rendition}/index.m3u8", path.trim_end_matches('/'))
    };
    Ok(Target {
        addr,
        host: authority.to_owned(),
        playlist_path,
    })
}

fn usage(
    pid: u32,
    first: Option<ProcessSample>,
    last: Option<ProcessSample>,
    rss_max_kb: u64,
) -> ProcessUsage {
    let cpu_cores = match (first, last) {
        (Some(a), Some(b)) => {
            let seconds = b.at.saturating_duration_since(a.at).as_secs_f64();
            if seconds > 0.0 {
                b.ticks.saturating_sub(a.ticks) as f64 / clock_ticks_per_second() / seconds
            } else {
                0.0
            }
        }
        _ => 0.0,
    };
    ProcessUsage {
        pid,
        cpu_cores,
        rss_max_mb: rss_max_kb as f64 / 1024.0,
        rss_end_mb: last.map_or(0.0, |s| s.rss_kb as f64 / 1024.0),
    }
}

/// Runs the viewers and returns the report. Bounded by `config.duration`.
pub fn run(config: &ViewersConfig) -> Result<Report, BenchError> {
    let target = parse_target(&config.url, &config.rendition)?;
    let threads = config.threads.max(1);
    let per_worker = config.viewers.div_ceil(threads as u64);
    let limit = uring::fd_limit();
    // One fd is used for a moment per new socket before it moves into the table.
    if per_worker + 16 > limit {
        return Err(BenchError::Plan(format!(
            "{per_worker} viewers per thread exceed the {limit} direct descriptors one ring may \
             hold (RLIMIT_NOFILE): use --threads {} or more",
            config.viewers.div_ceil(limit.saturating_sub(16).max(1))
        )));
    }
    let loopback = target.addr.ip().is_loopback();
    let sources: Vec<Ipv4Addr> = match config.source_addresses {
        Some(0) => Vec::new(),
        Some(n) => (0..n)
            .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + i))
            .collect(),
        None if loopback => {
            let n = config.viewers.div_ceil(16_000).max(1) as u32;
            (0..n)
                .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + i))
                .collect()
        }
        None => Vec::new(),
    };
    let start = Instant::now() + Duration::from_millis(50);
    let ramp = if config.ramp_per_s > 0.0 {
        Duration::from_secs_f64(config.viewers as f64 / config.ramp_per_s)
    } else {
        Duration::ZERO
    };
    let burst_margin = if config.burst {
        Duration::from_millis(500)
    } else {
        Duration::ZERO
    };
    let end = start + config.duration;
    let mut steady_at = start + ramp + burst_margin + config.warmup;
    if steady_at + Duration::from_secs(1) > end {
        steady_at = start + ramp + burst_margin;
    }
    if steady_at >= end {
        return Err(BenchError::Plan(format!(
            "--duration {:?} ends before the ramp-up ({ramp:?}) does: lengthen it or raise --ramp",
            config.duration
        )));
    }
    let progress = Arc::new(Progress::default());
    let mut handles = Vec::new();
    let mut assigned = 0u64;
    for index in 0..threads {
        let viewers = (config.viewers / threads as u64
            + u64::from((index as u64) < config.viewers % threads as u64))
            as u32;
        assigned += u64::from(viewers);
        let plan = WorkerPlan {
            index,
            threads,
            viewers,
            total_viewers: config.viewers,
            target: target.addr,
            host: target.host.clone(),
            playlist_path: target.playlist_path.clone(),
            start,
            ramp_per_s: config.ramp_per_s,
            burst: config.burst,
            burst_at: start + ramp + burst_margin,
            steady_at,
            end,
            sources: sources.clone(),
            sample_every: config.sample_every,
            reconnect_delay: Duration::from_secs(1),
            player: config.player,
            progress: progress.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("bench-{index}"))
            .spawn(move || Worker::new(plan)?.run())
            .map_err(|e| BenchError::Plan(format!("spawning a worker thread: {e}")))?;
        handles.push(handle);
    }
    debug_assert_eq!(assigned, config.viewers);

    // Sample while the workers run.
    let self_pid = std::process::id();
    let mut server_first = None;
    let mut server_last = None;
    let mut server_rss_max = 0;
    let mut self_first = None;
    let mut self_last = None;
    let mut self_rss_max = 0;
    let mut box_first = None;
    let mut box_last = None;
    let mut next_progress = start + config.progress_every;
    let mut last_requests = 0u64;
    let mut last_bytes = 0u64;
    let mut last_progress_at = start;
    loop {
        let now = Instant::now();
        if now >= steady_at && box_first.is_none() {
            box_first = sample_box().map(|b| (now, b));
            self_first = sample_process(self_pid);
            server_first = config.server_pid.and_then(sample_process);
        }
        if let Some(s) = config.server_pid.and_then(sample_process) {
            server_rss_max = server_rss_max.max(s.rss_kb);
            if box_first.is_some() {
                server_last = Some(s);
            }
        }
        if let Some(s) = sample_process(self_pid) {
            self_rss_max = self_rss_max.max(s.rss_kb);
            if box_first.is_some() {
                self_last = Some(s);
            }
        }
        if box_first.is_some() {
            box_last = sample_box().map(|b| (now, b));
        }
        if !config.progress_every.is_zero() && now >= next_progress {
            let requests = progress.requests.load(Ordering::Relaxed);
            let bytes = progress.bytes.load(Ordering::Relaxed);
            let seconds = now
                .saturating_duration_since(last_progress_at)
                .as_secs_f64()
                .max(1e-3);
            eprintln!(
                "[{:>5.1} s] connected {:>6}  {:>8.0} req/s  {:>7.3} Gbps  errors {}",
                now.saturating_duration_since(start).as_secs_f64(),
                progress.connected.load(Ordering::Relaxed),
                (requests - last_requests) as f64 / seconds,
                (bytes - last_bytes) as f64 * 8.0 / seconds / 1e9,
                progress.errors.load(Ordering::Relaxed)
            );
            last_requests = requests;
            last_bytes = bytes;
            last_progress_at = now;
            next_progress = now + config.progress_every;
        }
        if now >= end {
            break;
        }
        let wake = [end, now + Duration::from_secs(1)]
            .into_iter()
            .chain((box_first.is_none()).then_some(steady_at))
            .min()
            .unwrap_or(end);
        std::thread::sleep(wake.saturating_duration_since(now));
    }

    let mut total = WorkerStats::default();
    for (index, handle) in handles.into_iter().enumerate() {
        let stats = handle
            .join()
            .map_err(|_| BenchError::WorkerPanicked(index))??;
        total.merge(&stats);
    }
    let steady_s = box_last.zip(box_first).map_or(0.0, |(b, a)| {
        b.0.saturating_duration_since(a.0).as_secs_f64()
    });
    let box_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (box_busy_cores, box_irq_cores) = match (box_first, box_last) {
        (Some((_, a)), Some((_, b))) if b.total > a.total => {
            let scale = box_cores as f64 / (b.total - a.total) as f64;
            (
                (b.busy - a.busy) as f64 * scale,
                (b.irq - a.irq) as f64 * scale,
            )
        }
        _ => (0.0, 0.0),
    };
    let server = config
        .server_pid
        .map(|pid| usage(pid, server_first, server_last, server_rss_max));
    let generator = usage(self_pid, self_first, self_last, self_rss_max);
    let other_cores = (box_busy_cores
        - box_irq_cores
        - generator.cpu_cores
        - server.as_ref().map_or(0.0, |s| s.cpu_cores))
    .max(0.0);
    let rate = |n: u64| {
        if steady_s > 0.0 {
            n as f64 / steady_s
        } else {
            0.0
        }
    };
    let errors_total = total.errors.values().sum();
    let requests = total.requests.iter().sum();
    Ok(Report {
        url: format!("http://{}{}", target.host, target.playlist_path),
        viewers_asked: config.viewers,
        threads,
        burst: config.burst,
        duration_s: config.duration.as_secs_f64(),
        steady_s,
        connections_held_at_end: total.connected_at_end,
        connections_min_steady: if total.connected_min_steady == u64::MAX {
            0
        } else {
            total.connected_min_steady
        },
        connects: total.connects,
        requests,
        requests_per_s: rate(total.steady_requests),
        gbps: rate(total.steady_bytes) * 8.0 / 1e9,
        kinds: Report::kinds_from(&total),
        startup: Percentiles::of(&total.startup),
        ramp_ttfb: Percentiles::of(&total.ramp_ttfb),
        generator_timer_lateness: Percentiles::of(&total.timer_lateness),
        stalls: total.stalls,
        stall_time_s: total.stall_time.as_secs_f64(),
        viewers_stalled: total.viewers_stalled,
        segments: total.segments,
        sampled_bodies: total.sampled_bodies,
        errors: total.errors.clone(),
        errors_total,
        requests_in_flight_at_end: total.requests_in_flight_at_end,
        stuck_at_end: total.stuck_at_end.clone(),
        head_buffer_exhausted: total.head_buffer_exhausted,
        server_cpu_per_1000_viewers: server
            .as_ref()
            .map(|s| s.cpu_cores / (config.viewers.max(1) as f64 / 1000.0)),
        server,
        generator,
        box_busy_cores,
        box_irq_cores,
        other_cores,
        box_cores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_url_gets_the_rendition_playlist() {
        let t = parse_target("http://127.0.0.1:8080/live/demo", "source").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.playlist_path, "/live/demo/source/index.m3u8");
        let t = parse_target("http://127.0.0.1:9/live/demo/ts/index.m3u8", "source").unwrap();
        assert_eq!(t.playlist_path, "/live/demo/ts/index.m3u8");
        let t = parse_target("http://127.0.0.1/live/x/", "audio").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.playlist_path, "/live/x/audio/index.m3u8");
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(matches!(
            parse_target("https://127.0.0.1/x.m3u8", "source"),
            Err(BenchError::Url { .. })
        ));
        assert!(parse_target("http:///x.m3u8", "source").is_err());
    }
}
