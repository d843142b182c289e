//! Unit tests of the config file: defaults, every key, and the errors a typo gets.

use super::*;

/// `text` read as a config file and turned into the engine's config.
fn engine_config(text: &str) -> Result<EngineConfig, ConfigError> {
    ConfigFile::parse(text, "c.toml").and_then(|c| c.into_engine_config("c.toml"))
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let config = engine_config("").expect("defaults are valid");
    assert_eq!(config.delivery.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(config.rtmp.listen, "0.0.0.0:1935".parse().unwrap());
    assert_eq!(config.api, "127.0.0.1:8081".parse().unwrap());
    assert_eq!(config.hub.packaging.target_duration, Duration::from_secs(2));
    assert_eq!(config.hub.packaging.window, 6);
    assert_eq!(config.hub.grace_period, Duration::from_secs(10));
    assert_eq!(config.rtmp.app, "live");
    let demo = config.demo.expect("demo on by default");
    assert_eq!(demo.keyframe_interval, Duration::from_secs(2));
    assert!(config.sources.is_empty());
}

#[test]
fn rtsp_sources_are_read_and_checked() {
    let text = r#"
        [[source]]
        name = "cam1"
        url = "rtsp://admin:secret@10.0.0.5:554/stream1"
        [[source]]
        name = "cam2"
        url = "rtsp://10.0.0.6/live"
        transport = "udp"
        timeout_seconds = 4
    "#;
    let c = engine_config(text).expect("valid");
    let [SourceConfig::Rtsp(cam1), SourceConfig::Rtsp(cam2)] = &c.sources[..] else {
        panic!("{:?}", c.sources);
    };
    assert_eq!(cam1.url.as_str(), "rtsp://10.0.0.5:554/stream1");
    assert_eq!(cam1.credentials, Some(("admin".into(), "secret".into())));
    assert_eq!(cam1.transport, engine::rtsp::RtspTransport::Tcp);
    assert_eq!(cam1.timeout, Duration::from_secs(10));
    assert_eq!(cam2.transport, engine::rtsp::RtspTransport::Udp);
    assert_eq!(cam2.timeout, Duration::from_secs(4));
    for (body, expected) in [
        ("url = \"rtsp://h/x\"\ntransport = \"http\"", "tcp or udp"),
        (
            "url = \"udp://0.0.0.0:1\"\ntransport = \"tcp\"",
            "option of rtsp",
        ),
        ("url = \"rtsp:///x\"", "host"),
    ] {
        let err = engine_config(&format!("[[source]]\nname = \"a\"\n{body}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{body}: {err}");
    }
}

#[test]
fn sources_are_read_and_checked() {
    let text = r#"
        [[source]]
        name = "feed1"
        url = "udp://239.1.1.1:5000?interface=lo"
        [[source]]
        name = "feed2"
        url = "udp://0.0.0.0:5001"
        timeout_seconds = 2.5
    "#;
    let c = engine_config(text).expect("valid");
    let [SourceConfig::Udp(feed1), SourceConfig::Udp(feed2)] = &c.sources[..] else {
        panic!("{:?}", c.sources);
    };
    assert_eq!(feed1.name, "feed1");
    assert_eq!(feed1.bind, "239.1.1.1:5000".parse().unwrap());
    assert_eq!(
        feed1.multicast_interface,
        Some(engine::udp::MulticastInterface::Name("lo".into()))
    );
    assert_eq!(feed1.timeout, Duration::from_secs(10));
    assert_eq!(feed2.multicast_interface, None);
    assert_eq!(feed2.timeout, Duration::from_millis(2500));

    let cases = [
        ("name = \"a b\"\nurl = \"udp://0.0.0.0:1\"", "stream name"),
        ("name = \"a\"\nurl = \"srtx://h:1\"", "unsupported scheme"),
        ("name = \"a\"\nurl = \"udp://h:1\"", "IPV4:PORT"),
        (
            "name = \"a\"\nurl = \"udp://0.0.0.0:1\"\ntimeout_seconds = 0",
            "timeout_seconds",
        ),
    ];
    for (body, expected) in cases {
        let err = engine_config(&format!("[[source]]\n{body}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(expected) && err.contains("source[0]"),
            "{body}: {err}"
        );
    }
    let twice = "[[source]]\nname = \"a\"\nurl = \"udp://0.0.0.0:1\"\n[[source]]\nname = \"a\"\nurl = \"udp://0.0.0.0:2\"";
    let err = engine_config(twice).unwrap_err().to_string();
    assert!(
        err.contains("source[1]") && err.contains("same name"),
        "{err}"
    );
    let err = ConfigFile::parse(
        "[[source]]\nname = \"a\"\nurl = \"udp://0.0.0.0:1\"\nttl = 1",
        "c",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ttl"), "{err}");
}

#[test]
fn every_section_is_read() {
    let text = r#"
        http = "127.0.0.1:9080"
        rtmp = "127.0.0.1:9935"
        api = "127.0.0.1:9081"
        [demo]
        enabled = true
        width = 640
        height = 360
        fps = 25
        video_kbps = 300
        audio_kbps = 64
        [packaging]
        segment_seconds = 4
        window = 5
        grace_period_seconds = 3
        ended_retention_seconds = 60
        [delivery]
        workers = 3
        max_connections_per_worker = 20000
        idle_timeout_seconds = 30
        header_timeout_seconds = 5
        send_timeout_seconds = 7
        lagging_after_seconds = 9
        [ingest]
        rtmp_app = "app"
        read_timeout_seconds = 10
    "#;
    let c = engine_config(text).expect("valid");
    assert_eq!(c.delivery.listen.port(), 9080);
    assert_eq!(c.rtmp.listen.port(), 9935);
    assert_eq!(c.api.port(), 9081);
    assert_eq!(c.delivery_workers, Some(3));
    assert_eq!(c.delivery.max_connections_per_worker, 20000);
    assert_eq!(c.delivery.idle_timeout, Duration::from_secs(30));
    assert_eq!(c.delivery.send_timeout, Duration::from_secs(7));
    assert_eq!(c.delivery.lagging_after, Some(Duration::from_secs(9)));
    assert_eq!(c.hub.packaging.window, 5);
    assert_eq!(c.hub.grace_period, Duration::from_secs(3));
    assert_eq!(c.rtmp.app, "app");
    let demo = c.demo.expect("on");
    assert_eq!((demo.width, demo.height, demo.fps), (640, 360, 25));
    assert_eq!(demo.keyframe_interval, Duration::from_secs(4));
}

#[test]
fn transcode_section_is_read_and_checked() {
    let defaults = engine_config("").expect("valid");
    assert!(!defaults.hub.transcode.enabled, "off by default");
    let names: Vec<&str> = defaults
        .hub
        .transcode
        .rungs
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["1080p", "720p", "480p", "360p"]);
    assert_eq!(defaults.hub.transcode.rungs[1].vbv_buffer_kbits, 5600);

    let text = r#"
        [transcode]
        enabled = true
        passthrough_streams = ["cam-*"]
        encoder_threads = 2
        workers = 3
        [[transcode.rungs]]
        name = "240p"
        height = 240
        bitrate_kbps = 400
        maxrate_kbps = 500
        preset = "ultrafast"
        [[transcode.rungs]]
        name = "180p"
        height = 180
        bitrate_kbps = 200
        maxrate_kbps = 250
        vbv_buffer_kbits = 300
        profile = "main"
        encoder = "nvenc"
        nvenc_preset = "p2"
        fallback = "fail"
    "#;
    let t = engine_config(text).expect("valid").hub.transcode;
    assert!(t.enabled && t.transcodes("event") && !t.transcodes("cam-1"));
    assert_eq!(t.encoder_threads, 2);
    assert_eq!(t.workers, 3);
    assert_eq!(t.rungs.len(), 2);
    assert_eq!(t.rungs[0].preset, engine::ladder::X264Preset::Ultrafast);
    assert_eq!(t.rungs[0].vbv_buffer_kbits, 1000);
    assert_eq!(t.rungs[1].preset, engine::ladder::X264Preset::Veryfast);
    assert_eq!(t.rungs[1].profile, engine::ladder::X264Profile::Main);
    assert_eq!(t.rungs[1].vbv_buffer_kbits, 300);
    assert_eq!(
        (
            t.rungs[0].encoder,
            t.rungs[0].nvenc_preset,
            t.rungs[0].fallback
        ),
        (RungEncoder::X264, NvencPreset::P4, GpuFallback::Cpu),
        "defaults"
    );
    assert_eq!(
        (
            t.rungs[1].encoder,
            t.rungs[1].nvenc_preset,
            t.rungs[1].fallback
        ),
        (
            RungEncoder::Nvenc {
                codec: RungCodec::H264
            },
            NvencPreset::P2,
            GpuFallback::Fail
        )
    );

    let rung = |body: &str| {
        format!(
            "[transcode]\n[[transcode.rungs]]\nname = \"r\"\nheight = 240\nbitrate_kbps = 400\nmaxrate_kbps = 500\n{body}"
        )
    };
    let cases = [
        (rung("preset = \"turbo\""), "preset"),
        (rung("profile = \"high10\""), "profile"),
        (
            rung("encoder = \"qsv\""),
            "encoder = \"qsv\": use x264 or nvenc",
        ),
        (
            rung("codec = \"vp9\""),
            "codec = \"vp9\": use h264, hevc or av1",
        ),
        (
            rung("codec = \"hevc\"\nencoder = \"x264\""),
            "encoder = \"x264\" encodes h264, not codec = \"hevc\"",
        ),
        (
            "[transcode]\ndecoder = \"gpu\"".to_owned(),
            "transcode.decoder = \"gpu\": use auto, cpu or nvdec",
        ),
        (
            rung("codec = \"av1\"\nencoder = \"x264\""),
            "encoder = \"x264\" encodes h264, not codec = \"av1\"",
        ),
        (
            rung("encoder = \"rav1e\"\nav1_preset = 11"),
            "av1_preset = 11",
        ),
        (rung("av1_preset = 5"), "only for AV1 rungs"),
        (rung("nvenc_preset = \"slow\""), "nvenc_preset"),
        (rung("fallback = \"gpu\""), "fallback = \"gpu\""),
        (rung("").replace("height = 240", "height = 241"), "height"),
        (
            rung("").replace("maxrate_kbps = 500", "maxrate_kbps = 300"),
            "maxrate",
        ),
        (rung("").replace("\"r\"", "\"source\""), "folder"),
        (
            "[transcode]\nenabled = true\nrungs = []".to_owned(),
            "no rungs",
        ),
        ("[transcode]\nqueue_frames = 1".to_owned(), "queue_frames"),
    ];
    for (text, expected) in cases {
        let err = engine_config(&text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
    let av1 = |body: &str| {
        let text = rung(body);
        engine_config(&text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .hub
            .transcode
            .rungs[0]
            .encoder
    };
    assert_eq!(av1("codec = \"av1\""), transcode::DEFAULT_AV1_ENCODER);
    assert_eq!(av1("codec = \"hevc\""), RungEncoder::X265);
    assert_eq!(av1("encoder = \"x265\""), RungEncoder::X265);
    assert_eq!(
        av1("codec = \"hevc\"\nencoder = \"nvenc\""),
        RungEncoder::Nvenc {
            codec: RungCodec::Hevc
        }
    );
    assert_eq!(
        av1("codec = \"av1\"\nencoder = \"nvenc\""),
        RungEncoder::Nvenc {
            codec: RungCodec::Av1
        }
    );
    assert_eq!(defaults.hub.transcode.decoder, DecoderChoice::Auto);
    let nvdec = engine_config("[transcode]\ndecoder = \"nvdec\"").expect("valid");
    assert_eq!(nvdec.hub.transcode.decoder, DecoderChoice::Nvdec);
    assert_eq!(defaults.hub.transcode.gpu, 0);
    let second_gpu = engine_config("[transcode]\ngpu = 1").expect("valid");
    assert_eq!(second_gpu.hub.transcode.gpu, 1);
    assert_eq!(
        second_gpu
            .hub
            .transcode
            .ladder_config(std::time::Duration::from_secs(2))
            .gpu,
        1
    );
    let err = engine_config("[transcode]\ngpu = 64")
        .unwrap_err()
        .to_string();
    assert!(err.contains("transcode.gpu = 64"), "{err}");
    assert_eq!(
        av1("codec = \"av1\"\nencoder = \"rav1e\"\nav1_preset = 8"),
        RungEncoder::Rav1e { speed: 8 }
    );
    assert_eq!(
        av1("encoder = \"svt-av1\""),
        RungEncoder::SvtAv1 { preset: 12 }
    );
    let twice = format!("{}\n{}", rung(""), rung("").replace("[transcode]\n", ""));
    let err = engine_config(&twice).unwrap_err().to_string();
    assert!(err.contains("same name"), "{err}");
}

#[test]
fn mistakes_are_reported_with_the_key() {
    let err = ConfigFile::parse("htp = \"1.2.3.4:5\"", "c.toml").unwrap_err();
    assert!(err.to_string().contains("c.toml"), "{err}");
    assert!(err.to_string().contains("htp"), "{err}");
    let err = engine_config("[packaging]\nwindow = 1").unwrap_err();
    assert!(err.to_string().contains("packaging.window"), "{err}");
    let err = engine_config("[demo]\nwidth = 641").unwrap_err();
    assert!(err.to_string().contains("641x"), "{err}");
    assert!(
        engine_config("[demo]\nenabled = false")
            .expect("valid")
            .demo
            .is_none()
    );
}

mod srt_tests {
    use super::*;

    #[test]
    fn srt_defaults_streams_and_pulls() {
        let config = engine_config("").unwrap();
        assert_eq!(config.srt.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(config.srt.latency, Duration::from_millis(120));
        assert_eq!(config.srt.app, "live");
        assert!(config.srt.streams.is_empty());

        let config = engine_config(
            r#"
            srt = "127.0.0.1:9100"
            [ingest]
            srt_latency_ms = 200
            [[srt_stream]]
            name = "cam"
            passphrase = "0123456789abc"
            port = 9101
            [[srt_stream]]
            name = "studio"
            latency_ms = 400
            key_length = 32
            [[source]]
            name = "relay"
            url = "srt://10.0.0.9:9000?streamid=read:live/x&passphrase=abcdefghijk"
            "#,
        )
        .unwrap();
        assert_eq!(config.srt.listen, "127.0.0.1:9100".parse().unwrap());
        let cam = config.srt.stream("cam").unwrap();
        assert_eq!(cam.passphrase.as_deref(), Some("0123456789abc"));
        assert_eq!(cam.latency, Duration::from_millis(200));
        assert_eq!(cam.port, Some(9101));
        let studio = config.srt.stream("studio").unwrap();
        assert_eq!(studio.latency, Duration::from_millis(400));
        assert_eq!(studio.key_length, Some(32));
        let [SourceConfig::Srt(relay)] = &config.sources[..] else {
            panic!("{:?}", config.sources);
        };
        assert_eq!(relay.stream_id.as_deref(), Some("read:live/x"));

        for (text, expected) in [
            (
                "[[srt_stream]]\nname = \"a\"\npassphrase = \"short\"",
                "10 to 79",
            ),
            (
                "[[srt_stream]]\nname = \"a\"\nkey_length = 20",
                "16, 24 or 32",
            ),
            ("[ingest]\nsrt_latency_ms = 5", "ingest.srt_latency_ms"),
            (
                "[[source]]\nname = \"r\"\nurl = \"srt://h:1?passphrase=tiny\"",
                "passphrase=***",
            ),
        ] {
            let err = engine_config(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
