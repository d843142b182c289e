//! Checks that need an NVIDIA GPU, run on one by hand (`CORECAST_REQUIRE_GPU=1` makes a
//! missing GPU a failure instead of a skip; docs/transcode.md, "Checked on a GPU", has the
//! command and the last results). Elsewhere each test checks that it was skipped for a reason
//! the operator can act on.
//!
//! The input is made here, with no ffmpeg command line (the GPU machines have none): a moving
//! synthetic picture encoded by x264 with B-frames and by x265.

use std::time::Duration;

use corecast_transcode::{DecoderChoice, Ladder, LadderConfig, RungEncoder, RungId};
use libav::{
    CudaFrames, CudaScaler, DecodeDevice, DecodedPicture, I420Picture, VideoDecoder,
    VideoDecoderSettings, X265Encoder, X265Settings, box_scale_reference,
};
use media::encode::RawVideoFrame;
use media::{AccessUnit, TrackConfig};

mod gpu_common;
use gpu_common::{FRAMES, HEIGHT, WIDTH, encode, gpu_here, h264_source, one_rung_ladder, picture};

fn hevc_source() -> (TrackConfig, Vec<AccessUnit>) {
    let encoder = X265Encoder::new(X265Settings {
        width: WIDTH,
        height: HEIGHT,
        fps_num: 30,
        fps_den: 1,
        bitrate_kbps: 1500,
        vbv_max_kbps: 0,
        vbv_buffer_kbits: 0,
        preset: "ultrafast",
        threads: 2,
        keyint_max: Some(24),
    })
    .expect("x265");
    let config = TrackConfig::Hevc(encoder.hevc_config().clone());
    (config, encode(encoder))
}

/// A picture's pts and its tightly packed I420 planes.
type Picture = (i64, [Vec<u8>; 3]);

/// Tightly packed planes of `frame`.
fn packed(frame: &RawVideoFrame<'_>) -> [Vec<u8>; 3] {
    std::array::from_fn(|plane| {
        let (w, h) = frame.plane_size(plane);
        (0..h)
            .flat_map(|row| frame.planes[plane][row * frame.strides[plane]..][..w].to_vec())
            .collect()
    })
}

/// Every picture of `units` decoded on `device`, and the decoder's GPU picture count.
fn decode(config: &TrackConfig, units: &[AccessUnit], device: DecodeDevice) -> (Vec<Picture>, u64) {
    let mut decoder =
        VideoDecoder::with_device(config, VideoDecoderSettings { threads: 1 }, device)
            .expect("decoder");
    let mut pictures = Vec::new();
    let mut take = |decoder: &mut VideoDecoder| {
        while let Some(frame) = decoder.poll_frame().expect("poll_frame") {
            let planes = std::array::from_fn(|plane| {
                let (w, h) = frame.plane_size(plane);
                (0..h)
                    .flat_map(|row| frame.planes[plane][row * frame.strides[plane]..][..w].to_vec())
                    .collect()
            });
            pictures.push((frame.pts, planes));
        }
    };
    for unit in units {
        decoder.submit(unit).expect("submit");
        take(&mut decoder);
    }
    decoder.flush().expect("flush");
    take(&mut decoder);
    (pictures, decoder.stats().gpu_frames)
}

fn nvdec_matches_the_cpu(config: TrackConfig, units: Vec<AccessUnit>) {
    let (cpu, cpu_gpu_frames) = decode(&config, &units, DecodeDevice::Cpu);
    assert_eq!(cpu.len(), FRAMES);
    assert_eq!(cpu_gpu_frames, 0);
    let (gpu, gpu_frames) = decode(&config, &units, DecodeDevice::Nvdec { gpu: 0 });
    assert_eq!(gpu_frames, FRAMES as u64, "every picture decoded by NVDEC");
    assert_eq!(gpu.len(), cpu.len());
    for (index, ((cpu_pts, cpu_planes), (gpu_pts, gpu_planes))) in cpu.iter().zip(&gpu).enumerate()
    {
        assert_eq!(cpu_pts, gpu_pts, "picture {index} pts");
        for plane in 0..3 {
            assert!(
                cpu_planes[plane] == gpu_planes[plane],
                "picture {index} plane {plane}: NVDEC differs from libavcodec's software decoder"
            );
        }
    }
}

#[test]
fn nvdec_decodes_h264_with_b_frames_to_the_same_pictures_as_the_cpu() {
    if gpu_here() {
        let (config, units) = h264_source();
        nvdec_matches_the_cpu(config, units);
    }
}

#[test]
fn nvdec_decodes_hevc_to_the_same_pictures_as_the_cpu() {
    if gpu_here() {
        let (config, units) = hevc_source();
        nvdec_matches_the_cpu(config, units);
    }
}

#[test]
fn the_gpu_scaler_computes_the_cpu_reference_exactly() {
    if !gpu_here() {
        return;
    }
    let (config, units) = h264_source();
    // NVDEC's pictures equal the CPU decoder's (the tests above), so the reference is computed
    // from the CPU decoder's planes.
    let (cpu, _) = decode(&config, &units, DecodeDevice::Cpu);
    let targets = [(640, 360), (426, 240), (320, 180), (256, 144)];
    let mut scalers: Vec<CudaScaler> = targets
        .iter()
        .map(|&target| CudaScaler::new(0, (WIDTH, HEIGHT), target).expect("GPU scaler"))
        .collect();
    let mut outputs: Vec<I420Picture> = targets
        .iter()
        .map(|&(w, h)| I420Picture::new(w, h).expect("picture"))
        .collect();
    let mut decoder = VideoDecoder::with_device(
        &config,
        VideoDecoderSettings { threads: 1 },
        DecodeDevice::Nvdec { gpu: 0 },
    )
    .expect("NVDEC");
    let mut scaled = 0;
    let mut check = |decoder: &mut VideoDecoder| {
        while let Some(picture) = decoder.poll_picture().expect("poll_picture") {
            let DecodedPicture::Gpu(gpu) = picture else {
                panic!("NVDEC gave a picture in system memory");
            };
            let (pts, source) = &cpu[scaled];
            assert_eq!(gpu.pts, *pts);
            for ((scaler, output), &(w, h)) in scalers.iter_mut().zip(&mut outputs).zip(&targets) {
                scaler.scale_into(&gpu, output).expect("scale on the GPU");
                assert_eq!(output.pts(), *pts);
                let got = packed(&output.as_raw());
                let (sw, sh) = (WIDTH as usize, HEIGHT as usize);
                let (tw, th) = (w as usize, h as usize);
                let mut expected = [
                    vec![0; tw * th],
                    vec![0; tw / 2 * th / 2],
                    vec![0; tw / 2 * th / 2],
                ];
                box_scale_reference(&source[0], (sw, sh, sw), 1, &mut expected[0], (tw, th, tw));
                for plane in 1..3 {
                    box_scale_reference(
                        &source[plane],
                        (sw / 2, sh / 2, sw / 2),
                        1,
                        &mut expected[plane],
                        (tw / 2, th / 2, tw / 2),
                    );
                }
                for plane in 0..3 {
                    assert!(
                        got[plane] == expected[plane],
                        "picture {scaled} at {w}x{h}, plane {plane}: the GPU differs from the reference"
                    );
                }
            }
            scaled += 1;
        }
    };
    for unit in &units {
        decoder.submit(unit).expect("submit");
        check(&mut decoder);
    }
    decoder.flush().expect("flush");
    check(&mut decoder);
    assert_eq!(scaled, FRAMES);
}

#[test]
fn a_ladder_of_x264_rungs_decodes_and_scales_on_the_gpu_with_the_same_idrs_as_on_the_cpu() {
    if !gpu_here() {
        return;
    }
    let (config, units) = h264_source();
    let ladder_config = |decoder| {
        let mut rungs = Vec::new();
        for (name, height) in [("360p", 360), ("180p", 180)] {
            let mut rung = LadderConfig::default().rungs[3].clone();
            rung.name = name.into();
            rung.height = height;
            rung.preset = x264::X264Preset::Ultrafast;
            rung.encoder = RungEncoder::X264;
            rungs.push(rung);
        }
        LadderConfig {
            rungs,
            decoder,
            segment_target: Duration::from_millis(800),
            ..LadderConfig::default()
        }
    };
    let mut keyframes = Vec::new();
    for decoder in [DecoderChoice::Auto, DecoderChoice::Cpu] {
        let mut ladder = Ladder::new(ladder_config(decoder), &config).expect("ladder");
        assert_eq!(ladder.scales_on_gpu(), decoder == DecoderChoice::Auto);
        assert_eq!(ladder.gpu_scale_fallback_reason(), None);
        let mut out: Vec<Vec<AccessUnit>> = vec![Vec::new(), Vec::new()];
        let mut now = Duration::ZERO;
        for unit in &units {
            now += Duration::from_millis(33);
            ladder.handle_unit(unit).expect("handle_unit");
            while ladder.encode_step(now).expect("encode_step") {}
            while let Some((RungId(rung), unit)) = ladder.poll_output() {
                out[rung].push(unit);
            }
        }
        ladder.finish().expect("finish");
        while ladder.encode_step(now).expect("encode_step") {}
        while let Some((RungId(rung), unit)) = ladder.poll_output() {
            out[rung].push(unit);
        }
        assert_eq!(ladder.stats().decoded_frames, FRAMES as u64);
        for rung in &out {
            assert_eq!(rung.len(), FRAMES, "{decoder:?}: every picture encoded");
        }
        let idrs: Vec<Vec<i64>> = out
            .iter()
            .map(|rung| rung.iter().filter(|u| u.keyframe).map(|u| u.pts).collect())
            .collect();
        assert_eq!(
            idrs[0], idrs[1],
            "{decoder:?}: both rungs have IDRs at the same pts"
        );
        assert!(
            idrs[0].len() > 1,
            "{decoder:?}: segment boundaries forced IDRs"
        );
        keyframes.push(idrs[0].clone());
    }
    assert_eq!(
        keyframes[0], keyframes[1],
        "NVDEC + GPU scaling keeps the CPU ladder's IDRs"
    );
}

#[test]
fn a_ladder_on_a_gpu_that_is_not_there_is_refused_with_the_reason() {
    if !gpu_here() {
        return;
    }
    let (config, _) = h264_source();
    let ladder = LadderConfig {
        decoder: DecoderChoice::Nvdec,
        gpu: 63,
        ..LadderConfig::default()
    };
    let error = Ladder::new(ladder, &config).unwrap_err().to_string();
    assert!(error.contains("CUDA device 63 did not open"), "{error}");
}

/// HEVC Main 10 (what many cameras send) from libx265 through libavcodec, made here because the
/// GPU machines have no ffmpeg command line: the same moving picture, 10-bit 4:2:0.
fn hevc_main10_source() -> (TrackConfig, Vec<AccessUnit>) {
    use ffmpeg_next::format::Pixel;
    use ffmpeg_next::{Dictionary, codec, encoder, frame};
    let found = encoder::find_by_name("libx265").expect("libx265 in FFmpeg");
    let mut context = codec::context::Context::new_with_codec(found)
        .encoder()
        .video()
        .expect("encoder context");
    context.set_width(WIDTH);
    context.set_height(HEIGHT);
    context.set_format(Pixel::YUV420P10LE);
    context.set_time_base((1, 90_000));
    context.set_frame_rate(Some((30, 1)));
    context.set_bit_rate(1_500_000);
    context.set_flags(codec::Flags::GLOBAL_HEADER);
    let mut options = Dictionary::new();
    options.set("preset", "ultrafast");
    options.set("x265-params", "log-level=error:keyint=24:bframes=0:pools=2");
    let mut encoder = context
        .open_as_with(found, options)
        .expect("libx265 Main 10");
    // SAFETY: the context is open; avcodec_open2 set `extradata` (VPS, SPS, PPS in Annex B).
    let extradata = unsafe {
        let raw = &*encoder.as_ptr();
        std::slice::from_raw_parts(raw.extradata, raw.extradata_size as usize).to_vec()
    };
    let config = media::HevcConfig::from_annex_b(&extradata).expect("hvcC");
    let mut units = Vec::new();
    let mut packet = ffmpeg_next::Packet::empty();
    let mut take = |encoder: &mut ffmpeg_next::encoder::Video, units: &mut Vec<AccessUnit>| {
        while encoder.receive_packet(&mut packet).is_ok() {
            let mut payload = Vec::new();
            media::annex_b::append_length_prefixed(
                packet.data().unwrap_or_default(),
                &mut payload,
                |nal| !matches!(media::hevc::nal_unit_type(nal), Some(32..=34)),
            );
            let pts = packet.pts().unwrap_or(0);
            units.push(AccessUnit {
                codec: media::Codec::H265,
                pts,
                dts: packet.dts().unwrap_or(pts),
                keyframe: packet.is_key(),
                payload: payload.into(),
            });
        }
    };
    let mut picture10 = frame::Video::new(Pixel::YUV420P10LE, WIDTH, HEIGHT);
    for index in 0..FRAMES {
        let planes = picture(index);
        for (plane, samples) in planes.iter().enumerate() {
            let (w, h) = if plane == 0 {
                (WIDTH as usize, HEIGHT as usize)
            } else {
                (WIDTH as usize / 2, HEIGHT as usize / 2)
            };
            let stride = picture10.stride(plane);
            let data = picture10.data_mut(plane);
            for row in 0..h {
                for column in 0..w {
                    let value = u16::from(samples[row * w + column]) << 2;
                    let at = row * stride + column * 2;
                    data[at..at + 2].copy_from_slice(&value.to_le_bytes());
                }
            }
        }
        picture10.set_pts(Some(index as i64 * 3000));
        encoder.send_frame(&picture10).expect("send_frame");
        take(&mut encoder, &mut units);
    }
    encoder.send_eof().expect("send_eof");
    take(&mut encoder, &mut units);
    (TrackConfig::Hevc(config), units)
}

#[test]
fn nvdec_leaves_hevc_main_10_to_the_software_decoder_which_converts_it() {
    if !gpu_here() {
        return;
    }
    let (config, units) = hevc_main10_source();
    assert_eq!(units.len(), FRAMES);
    let (cpu, _) = decode(&config, &units, DecodeDevice::Cpu);
    let mut decoder = VideoDecoder::with_device(
        &config,
        VideoDecoderSettings { threads: 1 },
        DecodeDevice::Nvdec { gpu: 0 },
    )
    .expect("decoder");
    let mut pictures = Vec::new();
    for unit in &units {
        decoder.submit(unit).expect("submit");
        while let Some(picture) = decoder.poll_picture().expect("poll_picture") {
            let DecodedPicture::System(frame) = picture else {
                panic!("a Main 10 picture came out as a GPU surface");
            };
            pictures.push((frame.pts, packed(&frame)));
        }
    }
    decoder.flush().expect("flush");
    while let Some(picture) = decoder.poll_picture().expect("poll_picture") {
        let DecodedPicture::System(frame) = picture else {
            panic!("a Main 10 picture came out as a GPU surface");
        };
        pictures.push((frame.pts, packed(&frame)));
    }
    let stats = decoder.stats();
    assert_eq!(
        (stats.gpu_frames, stats.converted_frames),
        (0, FRAMES as u64)
    );
    assert!(
        pictures == cpu,
        "the same 8-bit pictures as the CPU decoder's"
    );
}

/// The path an NVENC rung takes when the ladder scales on the GPU: the scaler writes into CUDA
/// frames of the rung's pool (what NVENC is opened with), which must hold exactly the
/// reference's bytes; a picture decoded in software goes up into such a frame unchanged. NVENC
/// itself is not here on the lent GPUs (no NVENC engine): opening it for CUDA frames must give
/// that reason, and a ladder with an NVENC rung falls back to x264 with it, still scaling on
/// the GPU.
#[test]
fn cuda_frames_for_nvenc_hold_the_reference_and_nvenc_falls_back_with_the_reason() {
    if !gpu_here() {
        return;
    }
    let (config, units) = h264_source();
    let (cpu, _) = decode(&config, &units, DecodeDevice::Cpu);
    let target = (320, 180);
    let frames = CudaFrames::new(0, target).expect("CUDA frames");
    let mut picture = frames.picture().expect("a frame of the pool");
    let mut scaler = CudaScaler::new(0, (WIDTH, HEIGHT), target).expect("GPU scaler");
    let mut downloaded = I420Picture::new(target.0, target.1).expect("picture");
    let mut decoder = VideoDecoder::with_device(
        &config,
        VideoDecoderSettings { threads: 1 },
        DecodeDevice::Nvdec { gpu: 0 },
    )
    .expect("NVDEC");
    let mut checked = 0;
    // A reference to the frame's buffer taken after each tenth fill, as an encoder holds one.
    let mut held: Option<*mut ffmpeg_next::ffi::AVFrame> = None;
    let buffer = |frame: *const ffmpeg_next::ffi::AVFrame| {
        // SAFETY: a valid frame (ours or its clone); reading a pointer field.
        unsafe { (*frame).data[0] as usize }
    };
    for unit in &units {
        decoder.submit(unit).expect("submit");
        while let Some(DecodedPicture::Gpu(gpu)) = decoder.poll_picture().expect("poll") {
            scaler
                .scale_into_gpu(&gpu, &mut picture)
                .expect("scale into a CUDA frame");
            if let Some(mut frame) = held.take() {
                // The fill took a fresh buffer from the pool instead of writing under the
                // held one.
                // SAFETY: the frame pointer is valid (owned by `picture`).
                assert_ne!(buffer(unsafe { picture.frame().as_ptr() }), buffer(frame));
                // SAFETY: our clone, freed once.
                unsafe { ffmpeg_next::ffi::av_frame_free(&mut frame) };
            }
            picture.download(&mut downloaded).expect("download");
            let (pts, source) = &cpu[checked];
            assert_eq!(downloaded.pts(), *pts);
            let got = packed(&downloaded.as_raw());
            let (sw, sh, tw, th) = (WIDTH as usize, HEIGHT as usize, 320, 180);
            let mut expected = vec![0; tw * th];
            box_scale_reference(&source[0], (sw, sh, sw), 1, &mut expected, (tw, th, tw));
            assert!(
                got[0] == expected,
                "picture {checked}: luma differs from the reference"
            );
            if checked % 10 == 0 {
                // SAFETY: a valid CUDA frame; av_frame_clone takes a new buffer reference.
                held = Some(unsafe { ffmpeg_next::ffi::av_frame_clone(picture.frame().as_ptr()) });
            }
            checked += 1;
        }
    }
    assert!(checked > 0);
    if let Some(mut frame) = held {
        // SAFETY: our clone, freed once.
        unsafe { ffmpeg_next::ffi::av_frame_free(&mut frame) };
    }

    // A system-memory picture goes up unchanged.
    let mut system = I420Picture::new(target.0, target.1).expect("picture");
    system.set_pts(1234);
    let mut up = frames.picture().expect("frame");
    up.upload(&system).expect("upload");
    up.download(&mut downloaded).expect("download");
    assert_eq!(packed(&downloaded.as_raw()), packed(&system.as_raw()));
    assert_eq!(downloaded.pts(), 1234);

    // NVENC for CUDA frames: not on this GPU, with the same reason as for system memory.
    let sample = frames.picture().expect("frame");
    let settings = nvenc::NvencSettings {
        width: target.0,
        height: target.1,
        ..nvenc::NvencSettings::default()
    };
    match nvenc::NvencEncoder::with_cuda_frames(nvenc::NvencCodec::H264, settings, sample.frame()) {
        Ok(_) => eprintln!("this GPU has NVENC: the CUDA-frame input opened"),
        Err(error) => {
            let reason = error.unavailable_reason().expect("Unavailable").to_owned();
            eprintln!("NVENC for CUDA frames: {reason}");
            assert!(reason.contains("has no NVENC engine"), "{reason}");
        }
    }

    // A ladder with an NVENC rung: decoded and scaled on the GPU; the rung falls back to x264
    // with the reason (or, on a GPU with NVENC, takes CUDA frames) and encodes every picture.
    let mut ladder = one_rung_ladder(
        &config,
        RungEncoder::Nvenc {
            codec: corecast_transcode::RungCodec::H264,
        },
    );
    assert!(ladder.scales_on_gpu());
    let info = ladder.rungs().next().expect("the rung");
    if let Some(reason) = info.fallback_reason {
        assert!(reason.contains("has no NVENC engine"), "{reason}");
    }
    let mut encoded = 0;
    let mut now = Duration::ZERO;
    for unit in &units {
        now += Duration::from_millis(33);
        ladder.handle_unit(unit).expect("handle_unit");
        while ladder.encode_step(now).expect("encode_step") {}
        while ladder.poll_output().is_some() {
            encoded += 1;
        }
    }
    ladder.finish().expect("finish");
    while ladder.encode_step(now).expect("encode_step") {}
    while ladder.poll_output().is_some() {
        encoded += 1;
    }
    assert_eq!(encoded, FRAMES);
}
