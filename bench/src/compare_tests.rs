//! Unit tests of compare-nginx's reports and parsing.

use super::*;
use crate::compare_run::NetCounters;

fn record(case: Case, server: Server, rps: f64, p99: f64, foreign: f64) -> RunRecord {
    RunRecord {
        case,
        server,
        round: 1,
        requests_per_s: rps,
        p99_ms: p99,
        p50_ms: p99 / 2.0,
        gbps: 1.0,
        errors: 0,
        wrk: None,
        viewers: None,
        cpu: CpuUsage {
            foreign_cores: foreign,
            ..CpuUsage::default()
        },
        requests_per_busy_server_core: rps,
        requests_per_server_process_core: rps,
        packets_per_request: 4.0,
        quiet_wait_s: 0.0,
        noisy: foreign > 0.1,
    }
}

#[test]
fn medians_and_ratios() {
    assert_eq!(median(&mut []), 0.0);
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    let runs = vec![
        record(Case::Seg1m, Server::Corecast, 3000.0, 90.0, 0.0),
        record(Case::Seg1m, Server::Nginx, 2000.0, 180.0, 0.0),
        record(Case::Seg1m, Server::Corecast, 4000.0, 80.0, 0.5),
        record(Case::Seg1m, Server::Nginx, 2200.0, 170.0, 0.0),
        record(Case::Seg1m, Server::Corecast, 3500.0, 100.0, 0.0),
        record(Case::Seg1m, Server::Nginx, 1800.0, 200.0, 0.0),
        record(Case::Playlist, Server::Corecast, 100.0, 1.0, 0.0),
        record(Case::Playlist, Server::Nginx, 200.0, 2.0, 0.0),
    ];
    let cases = summarize_cases(&runs, &BTreeMap::new());
    assert_eq!(cases.len(), 2);
    let seg = &cases[0];
    assert_eq!(seg.case, Case::Seg1m);
    assert_eq!(seg.corecast.runs, 3);
    assert_eq!(seg.corecast.clean_runs, 2);
    assert_eq!(seg.corecast.requests_per_s, 3500.0);
    assert_eq!(seg.corecast.clean_requests_per_s, Some(3250.0));
    assert_eq!(seg.nginx.requests_per_s, 2000.0);
    assert!((seg.requests_per_s_ratio - 1.75).abs() < 1e-12);
    assert!((seg.p99_ratio - 90.0 / 180.0).abs() < 1e-12);
    assert!(seg.floor.is_none() && seg.floor_over_nginx.is_none());
    let playlist = &cases[1];
    assert_eq!(playlist.requests_per_s_ratio, 0.5);
    assert!(ratio(1.0, 0.0).is_nan());
}

#[test]
fn the_copy_floor_gives_the_ceiling_and_corecast_s_share_of_it() {
    let runs = vec![
        record(Case::Seg100k, Server::Corecast, 90.0, 3.0, 0.0),
        record(Case::Seg100k, Server::Nginx, 60.0, 5.0, 0.0),
        record(Case::Seg100k, Server::Floor, 96.0, 2.9, 0.0),
    ];
    let cases = summarize_cases(&runs, &BTreeMap::new());
    let seg = &cases[0];
    assert_eq!(seg.floor.as_ref().map(|f| f.requests_per_s), Some(96.0));
    assert_eq!(seg.floor_over_nginx, Some(1.6));
    assert_eq!(seg.corecast_over_floor, Some(90.0 / 96.0));
    // The floor's runs stay out of corecast's and nginx's medians.
    assert_eq!((seg.corecast.runs, seg.nginx.runs), (1, 1));
    assert_eq!(seg.requests_per_s_ratio, 1.5);
}

#[test]
fn the_floor_answers_with_corecast_s_keep_alive_head() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\nETag: \"7\"\r\n\r\n";
    assert_eq!(
        keep_alive_head(head),
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: \"7\"\r\n\r\n"
    );
    let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(keep_alive_head(plain), plain);
}

#[test]
fn nearest_segment() {
    let segs = vec![
        ("/a".to_string(), vec![0u8; 950_000]),
        ("/b".to_string(), vec![0u8; 1_010_000]),
        ("/c".to_string(), vec![0u8; 400_000]),
    ];
    assert_eq!(nearest(&segs, 1_000_000).map(|s| s.0.as_str()), Some("/b"));
    assert_eq!(nearest(&segs, 100_000).map(|s| s.0.as_str()), Some("/c"));
    assert!(nearest(&[], 1).is_none());
}

#[test]
fn packets_per_request_over_the_run() {
    let cpu = CpuUsage {
        seconds: 2.0,
        net: NetCounters {
            ip_out_packets: 820,
            ..NetCounters::default()
        },
        ..CpuUsage::default()
    };
    assert!((packets_per_request(&cpu, 100.0) - 4.1).abs() < 1e-12);
    assert!(packets_per_request(&cpu, 0.0).is_nan());
    // report.json keeps the counters at the top of `cpu`, where docs/capacity.md says they are.
    let json = serde_json::to_value(&cpu).expect("plain data");
    assert_eq!(json["ip_out_packets"], 820);
    assert_eq!(json["retrans_segs"], 0);
}
